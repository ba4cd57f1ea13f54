/** The console's one way to the server: same-origin, cookie session, anti-forgery header on changes. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;

  constructor(status: number, code: string, message: string, field?: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

let csrfToken: string | null = null;
const signedOutListeners = new Set<() => void>();

/** The session's anti-forgery token; kept in memory only, never in storage. */
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** Called when the server no longer knows the session (expired, signed out, key revoked). */
export function onSignedOut(listener: () => void): () => void {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

export async function api<T>(method: string, url: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
  const response = await fetch(url, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if (response.status === 204) return undefined as T;
  const json = (await response.json().catch(() => null)) as {
    error?: { code?: string; message?: string; field?: string };
  } | null;
  if (!response.ok) {
    const error = new ApiError(
      response.status,
      json?.error?.code ?? 'error',
      json?.error?.message ?? response.statusText,
      json?.error?.field,
    );
    if (response.status === 401 && !url.startsWith('/console/api/session')) {
      for (const listener of signedOutListeners) listener();
    }
    throw error;
  }
  return json as T;
}

/** Every page of a paginated list endpoint (`next_page_token`), up to `limit` items. */
export async function listAll<T>(url: string, key: string, limit = 1000): Promise<T[]> {
  const items: T[] = [];
  let token: string | null = null;
  do {
    const sep = url.includes('?') ? '&' : '?';
    const page: Record<string, unknown> = await api<Record<string, unknown>>(
      'GET',
      `${url}${sep}page_size=100${token ? `&page_token=${encodeURIComponent(token)}` : ''}`,
    );
    items.push(...((page[key] as T[]) ?? []));
    token = (page.next_page_token as string | null) ?? null;
  } while (token && items.length < limit);
  return items;
}

export function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

import { WardenError } from '@warden/core';
import { authHeaders } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface CloudflareRequest {
  readonly method: HttpMethod;
  /** Relative API path, e.g. `/zones/abc/dns_records`, already validated by the caller. */
  readonly path: string;
  readonly query?: Readonly<Record<string, string | number | boolean>>;
  /** JSON body (serialized here) — or `rawBody` for non-JSON uploads. */
  readonly body?: unknown;
  readonly rawBody?: string;
  readonly contentType?: string;
  readonly signal?: AbortSignal;
}

export interface CloudflareMessage {
  readonly code?: number;
  readonly message: string;
}

/** Cloudflare's envelope, normalized: non-JSON bodies (KV values, script sources) land in `result`. */
export interface CloudflareResponse {
  readonly status: number;
  readonly success: boolean;
  readonly result: unknown;
  readonly errors: readonly CloudflareMessage[];
  readonly messages: readonly CloudflareMessage[];
  readonly resultInfo?: unknown;
  readonly cfRay: string | null;
  /** Seconds, from `Retry-After` on a 429. */
  readonly retryAfterSeconds: number | null;
  readonly responseBytes: number;
}

export interface CloudflareClientOptions {
  /** `https://api.cloudflare.com/client/v4` or a fake's URL; no trailing slash needed. */
  readonly baseUrl: string;
  readonly timeoutMs?: number;
  readonly userAgent?: string;
  /** Largest response body accepted, in bytes. */
  readonly maxResponseBytes?: number;
}

export interface CloudflareClient {
  readonly baseUrl: string;
  send(credential: CloudflareCredential, request: CloudflareRequest): Promise<CloudflareResponse>;
}

function messages(value: unknown): CloudflareMessage[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter((m): m is Record<string, unknown> => typeof m === 'object' && m !== null)
    .map((m) => ({
      ...(typeof m.code === 'number' ? { code: m.code } : {}),
      message: typeof m.message === 'string' ? m.message : JSON.stringify(m),
    }));
}

function parseRetryAfter(value: string | null): number | null {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

export function createCloudflareClient(options: CloudflareClientOptions): CloudflareClient {
  const base = options.baseUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 30_000;
  const maxBytes = options.maxResponseBytes ?? 10 * 1024 * 1024;
  const userAgent = options.userAgent ?? 'warden';

  async function send(
    credential: CloudflareCredential,
    request: CloudflareRequest,
  ): Promise<CloudflareResponse> {
    const url = new URL(base + request.path);
    for (const [k, v] of Object.entries(request.query ?? {})) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { 'user-agent': userAgent, accept: 'application/json' };
    let body: string | undefined;
    if (request.rawBody !== undefined) {
      body = request.rawBody;
      headers['content-type'] = request.contentType ?? 'application/octet-stream';
    } else if (request.body !== undefined) {
      body = JSON.stringify(request.body);
      headers['content-type'] = request.contentType ?? 'application/json';
    }
    // Set last so nothing above can shadow or duplicate the credential headers.
    Object.assign(headers, authHeaders(credential));

    const signals = [AbortSignal.timeout(timeoutMs), ...(request.signal ? [request.signal] : [])];
    let response: Response;
    try {
      response = await fetch(url, {
        method: request.method,
        headers,
        ...(body !== undefined ? { body } : {}),
        redirect: 'manual',
        signal: AbortSignal.any(signals),
      });
    } catch (error) {
      const name = (error as { name?: string }).name;
      if (name === 'TimeoutError') {
        throw new WardenError('upstream_timeout', `Cloudflare did not answer within ${timeoutMs} ms`);
      }
      if (name === 'AbortError')
        throw new WardenError('upstream_error', 'the request to Cloudflare was cancelled');
      throw new WardenError(
        'upstream_error',
        'Cloudflare is unreachable; retry shortly',
        {},
        { cause: error },
      );
    }

    const buffer = Buffer.from(await response.arrayBuffer());
    if (buffer.length > maxBytes) {
      throw new WardenError('upstream_error', `Cloudflare's response exceeds ${maxBytes} bytes`);
    }
    const cfRay = response.headers.get('cf-ray');
    const retryAfterSeconds = parseRetryAfter(response.headers.get('retry-after'));
    const contentType = response.headers.get('content-type') ?? '';
    const common = { status: response.status, cfRay, retryAfterSeconds, responseBytes: buffer.length };

    if (contentType.includes('json')) {
      let json: unknown;
      try {
        json = JSON.parse(buffer.toString('utf8'));
      } catch {
        json = undefined;
      }
      if (
        json &&
        typeof json === 'object' &&
        !Array.isArray(json) &&
        ('success' in json || 'result' in json)
      ) {
        const envelope = json as Record<string, unknown>;
        return {
          ...common,
          success: envelope.success === true || (envelope.success === undefined && response.ok),
          result: envelope.result ?? null,
          errors: messages(envelope.errors),
          messages: messages(envelope.messages),
          ...(envelope.result_info !== undefined ? { resultInfo: envelope.result_info } : {}),
        };
      }
      // GraphQL answers `{data, errors}`; other JSON is passed through as the result.
      const errors =
        json && typeof json === 'object' ? messages((json as Record<string, unknown>).errors) : [];
      return {
        ...common,
        success: response.ok && errors.length === 0,
        result: json ?? null,
        errors,
        messages: [],
      };
    }
    return {
      ...common,
      success: response.ok,
      result: buffer.toString('utf8'),
      errors: response.ok ? [] : [{ message: `HTTP ${response.status}` }],
      messages: [],
    };
  }

  return { baseUrl: base, send };
}

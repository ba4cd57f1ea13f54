import { expect } from 'vitest';

/** The answer of `POST /api/v1/execute_tool` for `cloudflare_execute`. */
export interface ExecuteBody {
  data: unknown;
  error?: { code: string; message: string };
  logs?: string[];
  execution_id: string;
}

/** Who calls: the app listening at `base`, the tenant's API key, and the identifier the call runs for. */
export interface HttpCaller {
  readonly base: string;
  readonly apiKey: string;
  readonly identifier: string;
}

export interface HttpExecuteOptions {
  /** Expects the response to have this status before its body is read. */
  expectStatus?: number;
  /** Aborts the request (the caller going away). */
  signal?: AbortSignal;
}

/**
 * `POST /api/v1/execute_tool` with `cloudflare_execute` as `caller.identifier`, over real HTTP
 * (`fetch`) to an app listening at `caller.base` (the in-process form is `TestApp.execute`).
 */
export async function executeOverHttp(
  caller: HttpCaller,
  code: string,
  options: HttpExecuteOptions = {},
): Promise<{ status: number; body: ExecuteBody }> {
  const { base, apiKey, identifier } = caller;
  const res = await fetch(`${base}/api/v1/execute_tool`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tool_name: 'cloudflare_execute', identifier, params: { code } }),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (options.expectStatus !== undefined) expect(res.status).toBe(options.expectStatus);
  return { status: res.status, body: (await res.json()) as ExecuteBody };
}

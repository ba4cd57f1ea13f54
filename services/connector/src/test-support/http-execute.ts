import { expect } from 'vitest';

/** The answer of `POST /api/v1/execute_tool` for `cloudflare_execute`. */
export interface ExecuteBody {
  data: unknown;
  error?: { code: string; message: string };
  logs?: string[];
  execution_id: string;
}

export interface HttpExecuteOptions {
  /** Expects the response to have this status before its body is read. */
  expectStatus?: number;
  /** Aborts the request (the caller going away). */
  signal?: AbortSignal;
}

/**
 * `POST /api/v1/execute_tool` with `cloudflare_execute` as `identifier`, over real HTTP (`fetch`)
 * to an app listening at `base` (the in-process form is `TestApp.execute`).
 */
export async function executeOverHttp(
  base: string,
  apiKey: string,
  identifier: string,
  code: string,
  options: HttpExecuteOptions = {},
): Promise<{ status: number; body: ExecuteBody }> {
  const res = await fetch(`${base}/api/v1/execute_tool`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tool_name: 'cloudflare_execute', identifier, params: { code } }),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (options.expectStatus !== undefined) expect(res.status).toBe(options.expectStatus);
  return { status: res.status, body: (await res.json()) as ExecuteBody };
}

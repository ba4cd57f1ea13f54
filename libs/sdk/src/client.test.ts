import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createWardenClient } from './client.ts';
import { WardenApiError } from './errors.ts';
import { paginate } from './paginate.ts';

// Edge cases a real Warden does not produce on demand (foreign error pages, echoing
// proxies); the contract itself is tested against the service in
// services/connector/src/sdk.integration.test.ts.

/** Array.fromAsync, which the project's es2024 lib does not declare. */
async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

type Handler = (request: Request) => Response | Promise<Response>;

function stub(handler: Handler) {
  const requests: Request[] = [];
  return {
    requests,
    fetch: async (request: Request) => {
      requests.push(request.clone());
      return handler(request);
    },
  };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

const apiKey = () => `wdn_sk_${randomBytes(32).toString('base64url')}`;

describe('createWardenClient', () => {
  it('sends the key as a bearer token and the options as the documented query', async () => {
    const key = apiKey();
    const http = stub(() => json(200, { tools: [], next_page_token: null }));
    const client = createWardenClient({ baseUrl: 'http://warden.test/', apiKey: key, fetch: http.fetch });
    await client.tools.listScopedTools('alice@acme.com', {
      filter: { connectionNames: ['cloudflare', 'staging'] },
      pageSize: 5,
    });
    const [request] = http.requests;
    expect(request?.headers.get('authorization')).toBe(`Bearer ${key}`);
    const url = new URL(request?.url ?? '');
    expect(url.origin + url.pathname).toBe('http://warden.test/api/v1/tools/scoped');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      identifier: 'alice@acme.com',
      connection_names: 'cloudflare,staging',
      page_size: '5',
    });
    expect(JSON.stringify(client)).not.toContain(key);
  });

  it('maps execute_tool options to the snake_case body and leaves unset ones out', async () => {
    const http = stub(() =>
      json(200, { data: null, error: { code: 'timeout', message: 'slow' }, execution_id: 'exe_1' }),
    );
    const client = createWardenClient({ baseUrl: 'http://warden.test', apiKey: apiKey(), fetch: http.fetch });
    const result = await client.tools.executeTool({
      toolName: 'cloudflare_execute',
      identifier: 'alice',
      params: { code: 'async () => 1' },
      agentRunId: 'run-1',
    });
    expect(result).toEqual({
      data: null,
      error: { code: 'timeout', message: 'slow' },
      execution_id: 'exe_1',
    });
    expect(await http.requests[0]?.json()).toEqual({
      tool_name: 'cloudflare_execute',
      identifier: 'alice',
      params: { code: 'async () => 1' },
      agent_run_id: 'run-1',
    });
  });

  it('turns the error envelope into WardenApiError with field, request id and Retry-After', async () => {
    const http = stub(() =>
      json(
        429,
        { error: { code: 'rate_limited', message: 'budget exhausted', field: 'identifier' } },
        { 'x-request-id': 'req-12345678', 'retry-after': '7' },
      ),
    );
    const client = createWardenClient({ baseUrl: 'http://warden.test', apiKey: apiKey(), fetch: http.fetch });
    const error = await client.connectedAccounts.get('ca_1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WardenApiError);
    expect(error).toMatchObject({
      name: 'WardenApiError',
      status: 429,
      code: 'rate_limited',
      message: 'budget exhausted',
      field: 'identifier',
      requestId: 'req-12345678',
      retryAfterSeconds: 7,
    });
  });

  it('never carries the API key, even when something in between echoes it', async () => {
    const key = apiKey();
    const echo = stub((request) =>
      json(401, {
        error: { code: 'unauthenticated', message: `bad ${request.headers.get('authorization')}` },
      }),
    );
    const proxy = stub(
      (request) => new Response(`<h1>502</h1> ${request.headers.get('authorization')}`, { status: 502 }),
    );
    for (const http of [echo, proxy]) {
      const client = createWardenClient({ baseUrl: 'http://warden.test', apiKey: key, fetch: http.fetch });
      const error = await client.connectedAccounts.list().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WardenApiError);
      expect(`${String(error)} ${JSON.stringify(error)} ${(error as Error).stack}`).not.toContain(key);
    }
    const foreign = await createWardenClient({
      baseUrl: 'http://warden.test',
      apiKey: key,
      fetch: proxy.fetch,
    })
      .mcp.createToken({ identifier: 'alice' })
      .catch((e: unknown) => e);
    expect(foreign).toMatchObject({
      status: 502,
      code: 'http_502',
      message: expect.stringMatching(/^HTTP 502/),
    });
  });

  it('resolves DELETE 204 with nothing', async () => {
    const http = stub(() => new Response(null, { status: 204 }));
    const client = createWardenClient({ baseUrl: 'http://warden.test', apiKey: apiKey(), fetch: http.fetch });
    await expect(client.connectedAccounts.delete('ca_1')).resolves.toBeUndefined();
    expect(http.requests[0]?.method).toBe('DELETE');
    expect(new URL(http.requests[0]?.url ?? '').pathname).toBe('/api/v1/connected_accounts/ca_1');
  });

  it('refuses to start without a base URL or key', () => {
    expect(() => createWardenClient({ baseUrl: '', apiKey: 'x' })).toThrow(/baseUrl/);
    expect(() => createWardenClient({ baseUrl: 'http://warden.test', apiKey: ' ' })).toThrow(/apiKey/);
  });

  it('walks every page of connected accounts lazily', async () => {
    const pages: Record<string, { ids: string[]; next: string | null }> = {
      first: { ids: ['ca_1', 'ca_2'], next: 'p2' },
      p2: { ids: ['ca_3'], next: null },
    };
    const http = stub((request) => {
      const page = pages[new URL(request.url).searchParams.get('page_token') ?? 'first'];
      return json(200, {
        connected_accounts: (page?.ids ?? []).map((id) => ({ id })),
        next_page_token: page?.next ?? null,
      });
    });
    const client = createWardenClient({ baseUrl: 'http://warden.test', apiKey: apiKey(), fetch: http.fetch });
    const ids = (await collect(client.connectedAccounts.listAll({ pageSize: 2 }))).map((a) => a.id);
    expect(ids).toEqual(['ca_1', 'ca_2', 'ca_3']);
    expect(http.requests).toHaveLength(2);
    for await (const account of client.connectedAccounts.listAll()) {
      expect(account.id).toBe('ca_1');
      break;
    }
    expect(http.requests).toHaveLength(3);
  });
});

describe('paginate', () => {
  it('stops when a server repeats the token instead of looping forever', async () => {
    let calls = 0;
    const items = await collect(
      paginate(async () => {
        calls++;
        return { items: [calls], nextPageToken: 'same' };
      }),
    );
    expect(items).toEqual([1, 2]);
  });
});

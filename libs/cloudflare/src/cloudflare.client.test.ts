import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCloudflareClient } from './cloudflare.client.ts';
import type { CloudflareClient } from './cloudflare.client.ts';

const TOKEN = { type: 'api_token', apiToken: 'cf-secret-token-value' } as const;

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

describe('Cloudflare HTTP client', () => {
  const seen: Seen[] = [];
  let server: http.Server;
  let client: CloudflareClient;
  let base: string;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
        });
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        if (path.endsWith('/envelope')) {
          res.writeHead(200, {
            'content-type': 'application/json',
            'cf-ray': 'ray-1',
            ratelimit: '"default";r=1199;t=300',
            'ratelimit-policy': '"default";q=1200;w=300',
          });
          res.end(
            JSON.stringify({
              success: true,
              result: { id: 'z1' },
              errors: [],
              messages: [],
              result_info: { page: 1 },
            }),
          );
        } else if (path.endsWith('/limited')) {
          res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '17' });
          res.end(
            JSON.stringify({ success: false, errors: [{ code: 971, message: 'Please wait' }], result: null }),
          );
        } else if (path.endsWith('/graphql')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ data: null, errors: [{ message: 'bad field' }] }));
        } else if (path.endsWith('/text')) {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('kv value');
        } else if (path.endsWith('/redirect')) {
          res.writeHead(302, { location: 'http://127.0.0.1:9/elsewhere' });
          res.end();
        } else if (path.endsWith('/huge')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write('{"result":"');
          res.end(`${'x'.repeat(4096)}"}`);
        } else if (path.endsWith('/slow')) {
          setTimeout(() => res.end('{}'), 2_000).unref();
        } else {
          res.writeHead(404);
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/client/v4`;
    client = createCloudflareClient({ baseUrl: base, timeoutMs: 300, maxResponseBytes: 1024 });
  });
  afterAll(async () => {
    client.close?.();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('sends the request with the credential injected and parses the envelope', async () => {
    const response = await client.send(TOKEN, {
      method: 'POST',
      path: '/zones/envelope',
      query: { page: 2, match: 'all' },
      body: { name: 'ü.example.com' },
    });
    expect(response).toMatchObject({
      status: 200,
      success: true,
      result: { id: 'z1' },
      resultInfo: { page: 1 },
      cfRay: 'ray-1',
      retryAfterSeconds: null,
      rateLimit: '"default";r=1199;t=300',
      rateLimitPolicy: '"default";q=1200;w=300',
    });
    const request = seen.at(-1) as Seen;
    expect(request.method).toBe('POST');
    expect(request.url).toBe('/client/v4/zones/envelope?page=2&match=all');
    expect(request.headers.authorization).toBe(`Bearer ${TOKEN.apiToken}`);
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers['content-length']).toBe(String(Buffer.byteLength(request.body)));
    expect(JSON.parse(request.body)).toEqual({ name: 'ü.example.com' });
  });

  it('reports a 429 with its Retry-After, GraphQL errors and non-JSON bodies', async () => {
    expect(await client.send(TOKEN, { method: 'GET', path: '/limited' })).toMatchObject({
      status: 429,
      success: false,
      retryAfterSeconds: 17,
      rateLimit: null,
      rateLimitPolicy: null,
      errors: [{ code: 971, message: 'Please wait' }],
    });
    expect(
      await client.send(TOKEN, { method: 'POST', path: '/graphql', body: { query: '{x}' } }),
    ).toMatchObject({
      status: 200,
      success: false,
      errors: [{ message: 'bad field' }],
    });
    expect(await client.send(TOKEN, { method: 'GET', path: '/text' })).toMatchObject({
      success: true,
      result: 'kv value',
    });
  });

  it('never follows a redirect', async () => {
    const before = seen.length;
    const response = await client.send(TOKEN, { method: 'GET', path: '/redirect' });
    expect(response).toMatchObject({ status: 302, success: false });
    expect(seen.length).toBe(before + 1);
  });

  it('refuses a response over the size limit, times out and honours cancellation', async () => {
    await expect(client.send(TOKEN, { method: 'GET', path: '/huge' })).rejects.toMatchObject({
      code: 'upstream_error',
      message: expect.stringContaining('exceeds 1024 bytes'),
    });
    await expect(client.send(TOKEN, { method: 'GET', path: '/slow' })).rejects.toMatchObject({
      code: 'upstream_timeout',
    });
    const controller = new AbortController();
    const pending = client.send(TOKEN, { method: 'GET', path: '/slow', signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    await expect(pending).rejects.toMatchObject({
      code: 'upstream_error',
      message: expect.stringContaining('cancelled'),
    });
    // The client still works afterwards, on fresh or reused sockets.
    expect((await client.send(TOKEN, { method: 'GET', path: '/envelope' })).status).toBe(200);
  });

  it('reports each request once as it ends: its time and status, or no status when no answer came', async () => {
    const answers: Array<{ ms: number; status: number | null }> = [];
    const timed = createCloudflareClient({
      baseUrl: base,
      timeoutMs: 300,
      onAnswered: (answer) => answers.push(answer),
    });
    const closed = createCloudflareClient({
      baseUrl: 'http://127.0.0.1:9/client/v4',
      onAnswered: (answer) => answers.push(answer),
    });
    try {
      await timed.send(TOKEN, { method: 'GET', path: '/envelope' });
      await timed.send(TOKEN, { method: 'GET', path: '/limited' });
      await timed.send(TOKEN, { method: 'GET', path: '/missing' });
      await expect(timed.send(TOKEN, { method: 'GET', path: '/slow' })).rejects.toMatchObject({
        code: 'upstream_timeout',
      });
      await expect(closed.send(TOKEN, { method: 'GET', path: '/user' })).rejects.toMatchObject({
        code: 'upstream_error',
      });
    } finally {
      timed.close?.();
      closed.close?.();
    }
    expect(answers.map((a) => a.status)).toEqual([200, 429, 404, null, null]);
    for (const answer of answers) expect(answer.ms).toBeGreaterThanOrEqual(0);
    // The timed-out request took its timeout.
    expect(answers[3]?.ms).toBeGreaterThanOrEqual(290);
  });

  it('maps an unreachable host to upstream_error without the credential in the error', async () => {
    const closed = createCloudflareClient({ baseUrl: 'http://127.0.0.1:9/client/v4', timeoutMs: 1_000 });
    const error = await closed.send(TOKEN, { method: 'GET', path: '/user' }).catch((e: unknown) => e);
    closed.close?.();
    expect(error).toMatchObject({
      code: 'upstream_error',
      message: 'Cloudflare is unreachable; retry shortly',
    });
    expect(JSON.stringify(error)).not.toContain(TOKEN.apiToken);
    expect(String((error as Error).stack)).not.toContain(TOKEN.apiToken);
  });
});

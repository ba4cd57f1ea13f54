import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startFakeCloudflare, startTcpProxy } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { startConnectorProcess } from '../test-support/connector-process.ts';
import { connectFakeUser } from '../test-support/fake-user.ts';
import type { ConnectorProcess } from '../test-support/connector-process.ts';
import { SPEC_PATH } from '../test-support/paths.ts';
import { exampleOf, fillPath, operationsOf } from '../test-support/openapi-operations.ts';
import type { OpenApiDocument } from '../test-support/openapi-operations.ts';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';
import { toWireError } from './error-mapper.ts';

interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** One request as bytes on a fresh socket: what a proxy or a broken client really sends. */
function rawRequest(port: number, request: string | Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('connect', () => socket.end(request));
    socket.on('data', (chunk) => chunks.push(chunk));
    // The server may answer and close before it read all we wrote (413, 431): keep what came.
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      const match = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (!match) return reject(new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`));
      const headers: Record<string, string> = {};
      for (const line of head.split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      let body = text.slice(head.length + 4);
      if (headers['transfer-encoding'] === 'chunked') {
        body = body.replace(/^[0-9a-f]+\r\n/i, '').replace(/\r\n0\r\n\r\n$/, '');
      }
      resolve({ status: Number(match[1]), headers, body });
    });
  });
}

/** The one error envelope: `{"error": {"code", "message", "field"?}}` (and `request_id` on 5xx). */
function expectEnvelope(response: RawResponse, label: string) {
  expect(response.headers['content-type'], label).toMatch(/^application\/json/);
  expect(response.headers['x-request-id'], label).toBeTruthy();
  const parsed = JSON.parse(response.body) as { error: Record<string, unknown> };
  expect(Object.keys(parsed), label).toEqual(['error']);
  expect(
    Object.keys(parsed.error).every((k) => ['code', 'message', 'field'].includes(k)),
    label,
  ).toBe(true);
  expect(typeof parsed.error.code, label).toBe('string');
  expect(typeof parsed.error.message, label).toBe('string');
  return parsed.error as { code: string; message: string; field?: string };
}

const ZOD_WORDING = /Invalid input|expected \w+, received|Too (small|big)|Unrecognized key|Invalid option/;

describe('the HTTP edge', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let port: number;
  let base: string;
  let apiKey: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, BODY_LIMIT_BYTES: '65536' });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as { port: number }).port;
    base = `http://127.0.0.1:${port}`;
    apiKey = (await t.createTenant('Edge')).apiKey;
    await connectFakeUser(t, cf, apiKey, 'alice@acme.com');
  }, 120_000);
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  const request = (method: string, path: string, extra: string[] = [], body = '') =>
    [
      `${method} ${path} HTTP/1.1`,
      'Host: warden.test',
      `Authorization: Bearer ${apiKey}`,
      'Connection: close',
      ...extra,
      ...(body ? [`Content-Length: ${Buffer.byteLength(body)}`] : []),
      '',
      body,
    ].join('\r\n');
  const json = (method: string, path: string, body: string) =>
    request(method, path, ['Content-Type: application/json'], body);

  it.each([
    {
      name: 'bad percent-encoding in the path',
      send: () => request('GET', '/api/v1/connected_accounts/%E0%A4%A'),
      status: 400,
      field: 'path',
    },
    {
      name: 'a path parameter longer than any id (the router’s 414)',
      send: () => request('GET', `/api/v1/identities/${'a'.repeat(3100)}/policy`),
      status: 414,
      field: 'path',
    },
    {
      name: 'a request line beyond the 16 KB header limit',
      send: () => request('GET', `/api/v1/connected_accounts?identifier=${'a'.repeat(20_000)}`),
      status: 431,
      field: 'headers',
    },
    { name: 'not HTTP at all', send: () => 'HELLO WARDEN\r\n\r\n', status: 400 },
    {
      name: 'a malformed header line',
      send: () => 'GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n',
      status: 400,
    },
    {
      name: 'malformed JSON',
      send: () => json('POST', '/api/v1/connected_accounts', '{"identifier": '),
      status: 400,
      field: 'body',
    },
    {
      name: 'an empty JSON body where one is required',
      send: () => request('POST', '/api/v1/connected_accounts', ['Content-Type: application/json']),
      status: 400,
      field: 'body',
      message: 'body: is required; send a JSON object with Content-Type: application/json',
    },
    {
      name: 'an unsupported media type',
      send: () => request('POST', '/api/v1/connected_accounts', ['Content-Type: text/plain'], 'hello'),
      status: 415,
      field: 'content-type',
    },
    {
      name: 'a body without a content type',
      send: () => request('POST', '/api/v1/connected_accounts', [], '{}'),
      status: 415,
      field: 'content-type',
    },
    {
      name: 'a body over BODY_LIMIT_BYTES',
      send: () =>
        json('POST', '/api/v1/connected_accounts', JSON.stringify({ identifier: 'x'.repeat(70_000) })),
      status: 413,
      code: 'payload_too_large',
      field: 'body',
    },
    {
      name: 'an unknown route',
      send: () => request('GET', '/api/v1/nothing-here'),
      status: 404,
      code: 'not_found',
    },
    {
      name: 'a method the route does not take',
      send: () => request('DELETE', '/api/v1/settings'),
      status: 405,
      field: 'method',
      allow: 'GET, PATCH',
    },
    {
      name: 'an unknown query parameter',
      send: () => request('GET', '/api/v1/connected_accounts?colour=red'),
      status: 400,
      field: 'colour',
    },
    {
      name: 'NUL in a path id',
      send: () => request('GET', '/api/v1/connected_accounts/ca_%00'),
      status: 400,
      field: 'id',
    },
    {
      name: 'NUL in a query filter',
      send: () => request('GET', '/api/v1/audit/events?tool_name=%00'),
      status: 400,
      field: 'tool_name',
    },
    {
      name: 'a lone surrogate in a body field',
      send: () =>
        json(
          'PUT',
          '/api/v1/policy',
          '{"rules":[{"effect":"deny","methods":["GET"],"path":"/x","name":"\\ud800"}]}',
        ),
      status: 400,
      field: 'rules[0].name',
    },
    {
      name: 'no credential',
      send: () => 'GET /api/v1/settings HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      status: 401,
      code: 'unauthenticated',
    },
  ])('answers $name with $status in the error envelope', async (c) => {
    const response = await rawRequest(port, c.send());
    expect(response.status, response.body).toBe(c.status);
    const error = expectEnvelope(response, c.name);
    expect(error.code).toBe(c.code ?? 'invalid_request');
    if (c.field) expect(error.field).toBe(c.field);
    if (c.message) expect(error.message).toBe(c.message);
    if (c.allow) expect(response.headers.allow).toBe(c.allow);
    expect(error.message).not.toMatch(ZOD_WORDING);
  });

  it('refuses a query value whose percent-encoded bytes are not UTF-8, naming it, instead of passing the raw text on', async () => {
    for (const raw of ['a%FFb', '%ED%B3%81', 'x%ED%B3%81y%00']) {
      const res = await fetch(`${base}/api/v1/tools/scoped?identifier=${raw}`, {
        headers: { authorization: `Bearer ${apiKey}` },
      });
      expect(res.status, raw).toBe(400);
      expect(((await res.json()) as { error: { field: string } }).error.field, raw).toBe('identifier');
    }
    // Ordinary encodings still mean what they say.
    const ok = await fetch(`${base}/api/v1/tools/scoped?identifier=alice%40acme.com&page_size=5`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(ok.status).toBe(200);
  });

  it('refuses an unknown query parameter on every documented route, naming it', async () => {
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as OpenApiDocument;
    const named = { identifier: 'alice@acme.com', tool_name: 'cloudflare_search' };
    const operations = operationsOf(doc);
    expect(operations.length).toBeGreaterThan(30);
    for (const op of operations) {
      const path = fillPath(
        op.path,
        Object.fromEntries(
          op.pathParams.map((p) => [
            p.name,
            encodeURIComponent(String(exampleOf(doc, p.schema, named, p.name))),
          ]),
        ),
      );
      const query = new URLSearchParams(
        op.query
          .filter((p) => p.required)
          .map((p): [string, string] => [p.name, String(exampleOf(doc, p.schema, named, p.name))]),
      );
      query.set('unexpected_param', '1');
      const headers: Record<string, string> = {
        authorization: `Bearer ${op.auth === 'admin' ? t.adminToken : apiKey}`,
      };
      const body = op.body ? JSON.stringify(exampleOf(doc, op.body, named)) : undefined;
      if (body) headers['content-type'] = 'application/json';
      const res = await fetch(`${base}${path}?${query}`, {
        method: op.method,
        headers,
        ...(body ? { body } : {}),
      });
      const label = `${op.method} ${op.path}`;
      expect(res.status, label).toBe(400);
      const error = ((await res.json()) as { error: { field: string; message: string } }).error;
      expect(error.field, label).toBe('unexpected_param');
      expect(error.message, label).toMatch(/^unexpected_param: is not a query parameter of /);
    }
  });

  it('words schema failures as the field and the fix, never the validator’s own text', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      [
        'POST',
        '/api/v1/connected_accounts',
        { identifier: 5, authorization: { type: 'api_token', api_token: 'x' } },
        'identifier: must be a string, not a number',
      ],
      [
        'POST',
        '/api/v1/connected_accounts',
        { authorization: { type: 'api_token', api_token: 'x' } },
        'identifier: is required (Your id for the end user, e.g. an email or user id)',
      ],
      [
        'POST',
        '/api/v1/connected_accounts',
        { identifier: 'a', authorization: { type: 'oauth' } },
        'authorization.type: must be one of: api_token, global_api_key',
      ],
      [
        'POST',
        '/api/v1/connected_accounts',
        { identifier: 'a', authorization: { type: 'api_token', api_token: 'x', scope: 'all' } },
        'authorization.scope: is not a recognised field; remove it or check its spelling (accepted here: type, api_token)',
      ],
      [
        'POST',
        '/api/v1/mcp/tokens',
        { identifier: 'alice@acme.com', connection_names: [] },
        'connection_names: must list at least one item',
      ],
      [
        'POST',
        '/api/v1/mcp/tokens',
        { identifier: 'alice@acme.com', expiry: true },
        'expiry: must be a string or a number, not a boolean',
      ],
      [
        'PATCH',
        '/api/v1/settings',
        { audit: { retention_days: 1.5 } },
        'audit.retention_days: must be a whole number',
      ],
      [
        'POST',
        '/api/v1/execute_tool',
        { tool_name: 'cloudflare_search', identifier: 'a', params: {}, agent_run_id: 'run\u0007' },
        'agent_run_id: must be printable text such as a UUID (no control characters)',
      ],
      ['GET', '/api/v1/connected_accounts?page_size=abc', undefined, 'page_size: must be a number'],
      ['GET', '/api/v1/connected_accounts?page_size=500', undefined, 'page_size: must be at most 100'],
      [
        'GET',
        '/api/v1/connected_accounts?status=gone',
        undefined,
        'status: must be one of: ACTIVE, INVALID, REVOKED',
      ],
      [
        'GET',
        '/api/v1/connected_accounts?identifier=a&identifier=b',
        undefined,
        'identifier: is given more than once; pass it once',
      ],
      [
        'GET',
        '/api/v1/audit/events?from=yesterday',
        undefined,
        'from: must be an ISO 8601 time, e.g. 2026-01-31T00:00:00Z',
      ],
    ];
    for (const [method, url, payload, message] of cases) {
      const res = await fetch(`${base}${url}`, {
        method,
        headers: {
          authorization: `Bearer ${apiKey}`,
          ...(payload !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}),
      });
      const body = (await res.json()) as { error: { message: string; field: string } };
      expect(res.status, url).toBe(400);
      expect(body.error.message, `${method} ${url} ${JSON.stringify(payload)}`).toBe(message);
      expect(body.error.field).toBe(message.slice(0, message.indexOf(':')));
    }
  });

  it('offboards without a body and without a content type', async () => {
    const offboard = (headers: Record<string, string>, body?: string) =>
      fetch(`${base}/api/v1/identities/${encodeURIComponent('bob@acme.com')}/offboard`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, ...headers },
        ...(body !== undefined ? { body } : {}),
      });
    for (const [headers, body] of [
      [{}, undefined],
      [{ 'content-type': 'application/json' }, ''],
      [{ 'content-type': 'application/json' }, '{}'],
      [{ 'content-type': 'application/json' }, '{"revoke_upstream": false}'],
    ] as const) {
      const res = await offboard(headers, body);
      expect(res.status, JSON.stringify([headers, body])).toBe(200);
      expect(await res.json()).toEqual({ revoked_connected_accounts: [], revoked_mcp_tokens: 0 });
    }
    const bad = await offboard({ 'content-type': 'application/json' }, '{"revoke_upstream": "yes"}');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toBe(
      'revoke_upstream: must be true or false, not a string',
    );
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as OpenApiDocument;
    const op = operationsOf(doc).find((o) => o.path.endsWith('/offboard'));
    expect(op?.bodyRequired).toBe(false);
  });

  it('exports the last 24 hours of the audit trail when from and to are left out', async () => {
    const auth = { authorization: `Bearer ${apiKey}` };
    const run = await fetch(`${base}/api/v1/execute_tool`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        tool_name: 'cloudflare_search',
        identifier: 'alice@acme.com',
        params: { code: 'async () => 1' },
      }),
    });
    const { execution_id } = (await run.json()) as { execution_id: string };
    const exported = await fetch(`${base}/api/v1/audit/export`, { headers: auth });
    expect(exported.status).toBe(200);
    const lines = (await exported.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { execution_id: string });
    expect(lines.some((e) => e.execution_id === execution_id)).toBe(true);

    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString();
    const old = await fetch(`${base}/api/v1/audit/export?to=${twoDaysAgo}`, { headers: auth });
    expect(old.status).toBe(200);
    expect(await old.text()).toBe('');

    const future = new Date(Date.now() + 3_600_000).toISOString();
    const ahead = await fetch(`${base}/api/v1/audit/export?from=${future}`, { headers: auth });
    expect(ahead.status).toBe(400);
    expect(((await ahead.json()) as { error: { field: string; message: string } }).error).toEqual({
      code: 'invalid_request',
      field: 'from',
      message: 'from: must be in the past when to is not given (to defaults to now)',
    });
  });

  it('logs each request once', async () => {
    const ids = ['edge-log-0001', 'edge-log-0002', 'edge-log-0003', 'edge-log-0004'];
    const sends: Array<[string, string]> = [
      ['GET', '/api/v1/settings'],
      ['GET', '/api/v1/connected_accounts?colour=red'],
      ['GET', '/api/v1/nothing-here'],
      ['DELETE', '/api/v1/settings'],
    ];
    for (const [i, [method, path]] of sends.entries()) {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${apiKey}`, 'x-request-id': ids[i] as string },
      });
      expect(res.headers.get('x-request-id')).toBe(ids[i]);
      await res.arrayBuffer();
    }
    // The line is written when the response finishes.
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const id of ids) {
      const lines = t.logs.filter((line) => line.includes(`"${id}"`));
      expect(lines, id).toHaveLength(1);
      expect(lines[0]).toMatch(/"req":\{"method":"[A-Z]+","path":"\/api\/v1\/[a-z_-]+"/);
      expect(lines[0]).toMatch(/"res":\{"statusCode":\d{3}\}/);
    }
    expect(t.logs.find((line) => line.includes('"edge-log-0002"'))).toMatch(/"field":"colour"/);
  });

  it('maps text PostgreSQL cannot store to a 400 if it ever reaches the database', async () => {
    const failures: unknown[] = [];
    for (const statement of [
      sql`select ${'a\u0000b'}::text`,
      sql`select ${'{"a": "\\u0000"}'}::jsonb`,
      sql`select ${'"\\ud800"'}::jsonb`,
    ]) {
      failures.push(
        await statement.execute(t.db.db.kysely).then(
          () => null,
          (error: unknown) => error,
        ),
      );
    }
    expect(failures.map((e) => (e as { code?: string } | null)?.code)).toEqual(['22021', '22P05', '22P02']);
    for (const failure of failures) {
      const wire = toWireError(failure, { requestId: 'req-test', bodyLimit: 1024 });
      expect(wire.status).toBe(400);
      expect(wire.body.error.code).toBe('invalid_request');
    }
  });
});

describe('the admin API when WARDEN_ADMIN_TOKEN is unset', () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await startTestApp({ WARDEN_ADMIN_TOKEN: '' });
    expect(t.container.config.adminToken).toBeNull();
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as { port: number }).port;
  }, 120_000);
  afterAll(() => t.close());

  it.each([
    ['GET', '/admin/v1/tenants', ''],
    ['POST', '/admin/v1/tenants', '{"not":"valid"}'],
    ['DELETE', '/admin/v1/tenants/ten_1/api_keys/key_1', ''],
    ['GET', '/admin/v1/no-such-thing', ''],
  ])('answers %s %s with a 404 that says how to turn it on', async (method, path, body) => {
    const response = await rawRequest(
      port,
      [
        `${method} ${path} HTTP/1.1`,
        'Host: x',
        'Connection: close',
        ...(body ? ['Content-Type: application/json', `Content-Length: ${body.length}`] : []),
        '',
        body,
      ].join('\r\n'),
    );
    expect(response.status).toBe(404);
    const error = expectEnvelope(response, path);
    expect(error.code).toBe('not_found');
    expect(error.message).toMatch(/the admin API is off; set WARDEN_ADMIN_TOKEN .* and restart/);
  });
});

describe('execute_tool while Redis is down', () => {
  /**
   * A real connector process whose only way to Redis is a proxy the test cuts. It is killed at
   * the end rather than stopped: after a Redis outage its BullMQ worker does not close (issue
   * 21, finding 4, owned elsewhere), and a graceful stop would wait for the 25 s grace period.
   */
  it('is a tool failure (HTTP 200 with error.code "unavailable"), and nothing reaches Cloudflare', async () => {
    const cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    const redis = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const proxy = await startTcpProxy({ host: redis.hostname, port: Number(redis.port || 6379) });
    const db = await createTestDatabase({ migrate: false });
    const dataDir = mkdtempSync(path.join(tmpdir(), 'warden-redis-down-'));
    const adminToken = randomBytes(32).toString('hex');
    let connector: ConnectorProcess | undefined;
    try {
      connector = await startConnectorProcess('redis-down', {
        DATABASE_URL: db.url,
        REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
        RATE_LIMIT_ON_REDIS_FAILURE: 'refuse',
        WARDEN_ADMIN_TOKEN: adminToken,
        DATA_DIR: dataDir,
        CLOUDFLARE_API_BASE: cf.url,
        CLOUDFLARE_SPEC_PATH: SPEC_PATH,
        SANDBOX_POOL_SIZE: '1',
        LOG_LEVEL: 'warn',
      });
      const post = async (url: string, token: string, body: unknown) => {
        const res = await fetch(`${connector?.url}${url}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        return { status: res.status, json: (await res.json()) as Record<string, unknown> };
      };
      const tenant = await post('/admin/v1/tenants', adminToken, { name: 'Redis down' });
      const apiKey = tenant.json.api_key as string;
      const alice = cf.state.createUser({ email: 'alice@example.com' });
      cf.state.createAccount({ name: 'Acme', members: [alice.id] });
      const token = cf.state.createUserToken({
        userId: alice.id,
        permissions: ['com.cloudflare.api.user.read', '#zone:read'],
      });
      const vaulted = await post('/api/v1/connected_accounts', apiKey, {
        identifier: 'alice@acme.com',
        authorization: { type: 'api_token', api_token: token.value },
      });
      expect(vaulted.status, JSON.stringify(vaulted.json)).toBe(201);

      await proxy.stop();
      cf.clearRequests();
      const run = await post('/api/v1/execute_tool', apiKey, {
        tool_name: 'cloudflare_execute',
        identifier: 'alice@acme.com',
        params: { code: "async () => cloudflare.request({ method: 'GET', path: '/zones' })" },
      });
      expect(run.status, JSON.stringify(run.json)).toBe(200);
      expect(run.json).toMatchObject({ data: null, error: { code: 'unavailable' } });
      expect(cf.requests().filter((r) => r.path === '/zones')).toEqual([]);
      expect(connector.output()).not.toContain(token.value);
    } finally {
      if (connector) process.kill(connector.pid, 'SIGKILL');
      await proxy.close();
      await cf.close();
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 180_000);
});

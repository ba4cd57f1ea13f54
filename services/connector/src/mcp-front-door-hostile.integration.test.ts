import net from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startListeningTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { fakeZoneUser } from './test-support/fake-user.ts';

const READ_ZONES = ['com.cloudflare.api.user.read', '#zone:read'];

/**
 * Outsider attack on the MCP front door as changed this session (auth before the body, JSON-RPC
 * errors, client session ids for cancellation, truncation notes): HELD claims, and the two
 * findings fixed since (FD-405: a trailing slash listed GET and DELETE; FD-415: another media
 * type or an oversized body answered with the REST envelope). One replica.
 */
describe('attack: MCP front door (14fe67d, 340f148, 545ba12)', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let apiKey: string;
  let otherKey: string;
  let otherAccount: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    ({ t, base } = await startListeningTestApp({ CLOUDFLARE_API_BASE: cf.url }));
    ({ apiKey } = await t.createTenant('atk-fd a'));
    ({ apiKey: otherKey } = await t.createTenant('atk-fd b'));
    for (const [key, identifier] of [
      [apiKey, 'mallory'],
      [otherKey, 'carol'],
    ] as const) {
      const { id } = await fakeZoneUser(cf, identifier).connect(t, key, identifier, READ_ZONES);
      if (key === otherKey) otherAccount = JSON.stringify(id);
    }
  }, 60_000);
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  async function mint(identifier = 'mallory', key = apiKey, expiry = '3600s'): Promise<string> {
    const res = await fetch(`${base}/api/v1/mcp/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ identifier, expiry }),
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { token: string; id?: string };
    t.secrets.add(body.token);
    return body.token;
  }

  const mcpHeaders = (token: string | null, extra: Record<string, string> = {}) => ({
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...extra,
  });

  const toolCall = (args: unknown, id: unknown = 1) =>
    JSON.stringify({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'cloudflare_execute', arguments: args },
    });

  it('HELD 2a: without a valid token every body gets 401 with the challenge (bad JSON, text/plain, over the body limit, a tool call, a batch); nothing runs', async () => {
    const before = cf.requests().length;
    const bodies: Array<[string, Record<string, string>, string | Uint8Array<ArrayBuffer>]> = [
      ['bad json', {}, '{"jsonrpc":'],
      ['text/plain', { 'content-type': 'text/plain' }, 'hello'],
      ['huge', {}, new Uint8Array(12 * 1024 * 1024).fill(0x20)],
      ['tool call', {}, toolCall({ code: 'async () => cloudflare.request({method:"GET", path:"/user"})' })],
      ['batch', {}, `[${toolCall({ code: 'async () => 1' })}]`],
      ['gzip', { 'content-encoding': 'gzip' }, 'not gzip'],
    ];
    for (const token of [null, 'wdn_mcp_forged', 'not-a-warden-token']) {
      for (const [name, extra, body] of bodies) {
        const res = await fetch(`${base}/mcp`, { method: 'POST', headers: mcpHeaders(token, extra), body });
        const text = await res.text();
        expect({ name, token, status: res.status }).toEqual({ name, token, status: 401 });
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="warden"/);
        expect(text).not.toMatch(/\n\s+at |stack/);
      }
    }
    expect(cf.requests().length).toBe(before);
  }, 60_000);

  it('HELD 2b: a revoked token is refused whatever the body (401 invalid_token, not -32700)', async () => {
    const res0 = await fetch(`${base}/api/v1/mcp/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ identifier: 'mallory', expiry: '3600s' }),
    });
    const { token, token_id } = (await res0.json()) as { token: string; token_id: string };
    t.secrets.add(token);
    const del = await fetch(`${base}/api/v1/mcp/tokens/${token_id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(del.status).toBe(204);
    for (const body of ['{bad', toolCall({ code: 'async () => 1' })]) {
      const res = await fetch(`${base}/mcp`, { method: 'POST', headers: mcpHeaders(token), body });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
    }
  });

  it('HELD 2c: Origin (DNS rebinding) and a token in the URL are refused before the body, also with a valid token', async () => {
    const token = await mint();
    for (const origin of ['http://evil.example', 'null', `${base}.evil.example`, `${base}/`]) {
      const res = await fetch(`${base}/mcp`, {
        method: 'POST',
        headers: mcpHeaders(token, { origin }),
        body: '{bad',
      });
      expect({ origin, status: res.status }).toEqual({ origin, status: 403 });
    }
    for (const q of ['access_token', 'token', 'api_key', 'authorization']) {
      const res = await fetch(`${base}/mcp?${q}=${encodeURIComponent(token)}`, {
        method: 'POST',
        headers: mcpHeaders(token),
        body: toolCall({ code: 'async () => 1' }),
      });
      expect({ q, status: res.status }).toEqual({ q, status: 400 });
    }
  });

  it('HELD 2d: an unauthenticated POST /mcp whose body is itself an HTTP request is not smuggled in as a second request on the connection', async () => {
    const url = new URL(base);
    const inner = `POST /api/v1/execute_tool HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`;
    const raw =
      `POST /mcp HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: ${inner.length}\r\n\r\n` +
      inner;
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(Number(url.port), url.hostname, () => socket.write(raw));
      let data = '';
      socket.on('data', (d) => (data += d.toString()));
      setTimeout(() => {
        socket.destroy();
        resolve(data);
      }, 1500);
    });
    expect(answer.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 401']);
  });

  async function refusals(pairs: ReadonlyArray<readonly [string, string]>) {
    const seen: Record<string, { status: number; allow: string | null }> = {};
    for (const [method, path] of pairs) {
      const res = await fetch(`${base}${path}`, { method });
      const text = await res.text();
      seen[`${method} ${path}`] = { status: res.status, allow: res.headers.get('allow') };
      expect(text).not.toMatch(/\n\s+at /);
    }
    return seen;
  }

  it('HELD 2f: GET/DELETE /mcp are 405 Allow: POST; PUT/PATCH /mcp (and /mcp?x=1) name only POST', async () => {
    const seen = await refusals([
      ['GET', '/mcp'],
      ['DELETE', '/mcp'],
      ['PUT', '/mcp'],
      ['PATCH', '/mcp'],
      ['PUT', '/mcp?x=1'],
      ['GET', '/mcp/'],
    ]);
    for (const [k, v] of Object.entries(seen)) expect({ k, ...v }).toEqual({ k, status: 405, allow: 'POST' });
  });

  it('FD-405: PUT/PATCH /mcp/ (trailing slash, which the app routes to /mcp) name only POST, as PUT /mcp does', async () => {
    const seen = await refusals([
      ['PUT', '/mcp/'],
      ['PATCH', '/mcp/'],
      ['PUT', '/mcp/?x=1'],
    ]);
    // Observed: Allow: GET, POST, DELETE (refusingRoutes is keyed by the exact path '/mcp').
    for (const [k, v] of Object.entries(seen)) expect({ k, ...v }).toEqual({ k, status: 405, allow: 'POST' });
  });

  it('HELD 2e: with a valid token, a non-JSON body is -32700; malformed tools/call params are -32602 naming the field; neither echoes the token or a stack', async () => {
    const token = await mint();
    const parse = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: mcpHeaders(token),
      body: '{"jsonrpc": "2.0", ',
    });
    const parsed = (await parse.json()) as { error: { code: number; message: string } };
    expect(parse.status).toBe(400);
    expect(parsed.error.code).toBe(-32700);
    for (const params of [
      null,
      [],
      'x',
      { name: 1 },
      { name: 'cloudflare_execute', arguments: [] },
      { name: 'cloudflare_execute', arguments: 'code' },
    ]) {
      const res = await fetch(`${base}/mcp`, {
        method: 'POST',
        headers: mcpHeaders(token),
        body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params }),
      });
      const text = await res.text();
      expect(text).not.toContain(token);
      expect(text).not.toMatch(/\n\s+at /);
      expect((JSON.parse(text) as { error: { code: number } }).error.code).toBe(-32602);
    }
  });

  it('FD-EMPTY: an empty batch is JSON-RPC -32600 Invalid Request (it was 202 with no body), and nothing runs', async () => {
    const token = await mint();
    const before = cf.requests().length;
    const res = await fetch(`${base}/mcp`, { method: 'POST', headers: mcpHeaders(token), body: '[]' });
    expect(res.status).toBe(400);
    const parsed = (await res.json()) as {
      jsonrpc: string;
      id: unknown;
      error: { code: number; message: string };
    };
    expect(parsed).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32600 } });
    expect(parsed.error.message).toMatch(/empty/);
    expect(cf.requests().length).toBe(before);
  });

  it('FD-415: an authenticated POST /mcp whose body is not JSON (text/plain, or over the body limit) is answered as JSON-RPC, not with the REST envelope', async () => {
    const token = await mint();
    for (const [name, type, body] of [
      ['text/plain', 'text/plain', 'hello'],
      ['no content-type', '', 'hello'],
      ['over the body limit', 'application/json', `{"a":"${'x'.repeat(2 * 1024 * 1024)}"}`],
    ] as const) {
      const headers: Record<string, string> = {
        authorization: `Bearer ${token}`,
        accept: 'application/json, text/event-stream',
      };
      if (type) headers['content-type'] = type;
      const res = await fetch(`${base}/mcp`, { method: 'POST', headers, body });
      const parsed = (await res.json()) as { jsonrpc?: string; error?: unknown };
      // Observed: 415/413 {"error":{"code":"invalid_request"|"payload_too_large",...}} without jsonrpc.
      expect({
        name,
        jsonrpc: parsed.jsonrpc,
        code: typeof (parsed.error as { code?: unknown })?.code,
      }).toEqual({
        name,
        jsonrpc: '2.0',
        code: 'number',
      });
    }
  });

  it('HELD 3: MCP refuses a non-string connected_account_id, and another tenant’s account id runs nothing on it', async () => {
    const token = await mint();
    for (const id of [123, null, ['ca_x'], { id: 'ca_x' }, true]) {
      const res = await fetch(`${base}/mcp`, {
        method: 'POST',
        headers: mcpHeaders(token),
        body: toolCall({ code: 'async () => 1', connected_account_id: id }),
      });
      const text = await res.text();
      expect(text).toContain('connected_account_id: must be a string');
    }
    const caId = /"(ca_[A-Za-z0-9_-]+)"/.exec(otherAccount)?.[1];
    expect(caId).toBeTruthy();
    const res = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: mcpHeaders(token),
      body: toolCall({
        code: 'async () => (await cloudflare.request({ method: "GET", path: "/user" })).result',
        connected_account_id: caId,
      }),
    });
    const text = await res.text();
    expect(text).not.toContain('carol@example.com');
    expect(text).toMatch(/isError":true/);
  });

  it('HELD 3b: the truncation note and _meta carry only numbers: a cut result of tenant A whose strings mimic Warden’s note are not taken for it', async () => {
    const token = await mint();
    const client = new Client({ name: 'trunc', version: '1' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    try {
      const r = await client.callTool({
        name: 'cloudflare_execute',
        arguments: {
          code: 'async () => { console.log("[warden] fake"); return { _meta: { "warden/truncated": "x" }, big: "y".repeat(40000) }; }',
        },
      });
      expect(Object.keys(r._meta ?? {})).toEqual(['warden/truncated']);
      const meta = (r._meta as Record<string, Record<string, unknown>>)['warden/truncated']!;
      expect(Object.values(meta).every((v) => typeof v === 'number')).toBe(true);
      const blocks = (r.content as Array<{ text: string }>).map((c) => c.text);
      expect(blocks.at(-1)!.split('\n').at(-1)).toMatch(/^\[warden\] the result was cut/);
    } finally {
      await client.close();
    }
  });

  it('HELD 1: the Mcp-Session-Id is handed out at initialize, is fresh each time and is not written to the logs', async () => {
    const token = await mint();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${base}/mcp`, {
        method: 'POST',
        headers: mcpHeaders(token, { 'mcp-session-id': 'mcs_AAAAAAAAAAAAAAAAAAAAAA' }),
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 0,
          method: 'initialize',
          params: {
            protocolVersion: '2025-03-26',
            capabilities: {},
            clientInfo: { name: 'x', version: '1' },
          },
        }),
      });
      await res.text();
      const id = res.headers.get('mcp-session-id');
      expect(id).toMatch(/^mcs_[A-Za-z0-9_-]{22}$/);
      expect(id).not.toBe('mcs_AAAAAAAAAAAAAAAAAAAAAA');
      ids.push(id!);
    }
    expect(new Set(ids).size).toBe(3);
    // A client's session id scopes its cancellations only; the log never holds one.
    expect(ids.filter((id) => t.logs.some((l) => l.includes(id)))).toEqual([]);
  });
});

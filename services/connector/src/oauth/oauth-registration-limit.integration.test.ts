import { request as httpRequest } from 'node:http';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../test-support/free-port.ts';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

/** A Dynamic Client Registration as an MCP client sends it, from `forwardedFor` if given. */
async function register(base: string, options: { forwardedFor?: string; path?: string } = {}) {
  const res = await fetch(`${base}${options.path ?? '/oauth/register'}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(options.forwardedFor ? { 'x-forwarded-for': options.forwardedFor } : {}),
    },
    body: JSON.stringify({
      client_name: 'Spam client',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1:9/callback'],
    }),
  });
  const body = (await res.json()) as { client_id?: string; error?: string; error_description?: string };
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body };
}

/** The same, sent with node:http so the request target goes out exactly as written. */
function rawRegister(
  port: number,
  target: string,
  headers: Record<string, string>,
): Promise<{ status: number }> {
  const body = JSON.stringify({
    client_name: 'Spam client',
    token_endpoint_auth_method: 'none',
    redirect_uris: ['http://127.0.0.1:9/callback'],
  });
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: target,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...headers,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function clientRows(t: TestApp): Promise<number> {
  const { rows } = await sql<{
    n: string;
  }>`select count(*) as n from oauth_artifacts where model = 'Client'`.execute(t.container.db.kysely);
  return Number(rows[0]?.n);
}

describe('Dynamic Client Registration is limited per client address', () => {
  describe('behind a trusted proxy, across replicas', () => {
    let a: TestApp;
    let b: TestApp;
    let baseA: string;
    let baseB: string;
    let portA: number;
    let portB: number;

    beforeAll(async () => {
      [portA, portB] = [await freePort(), await freePort()];
      baseA = `http://127.0.0.1:${portA}`;
      baseB = `http://127.0.0.1:${portB}`;
      const env = {
        PUBLIC_URL: baseA,
        OAUTH_ALLOW_INSECURE: 'true',
        OAUTH_REGISTRATION_LIMIT: '3/3600',
        TRUST_PROXY: 'true',
      };
      a = await startTestApp(env);
      b = await startTestApp(env, { replicaOf: a });
      await a.app.listen({ host: '127.0.0.1', port: portA });
      await b.app.listen({ host: '127.0.0.1', port: portB });
    });
    afterAll(async () => {
      await b?.close();
      await a?.close();
    });

    it('refuses the registration over the limit with 429 rate_limited and Retry-After, whichever replica and path spelling', async () => {
      const address = '203.0.113.7';
      expect((await register(baseA, { forwardedFor: address })).status).toBe(201);
      expect((await register(baseB, { forwardedFor: address })).status).toBe(201);
      expect((await register(baseA, { forwardedFor: address })).status).toBe(201);

      // oidc-provider routes any case and a trailing slash to registration: all count.
      for (const [base, path] of [
        [baseB, '/oauth/register'],
        [baseA, '/oauth/REGISTER/'],
      ] as const) {
        const refused = await register(base, { forwardedFor: address, path });
        expect(refused.status, path).toBe(429);
        expect(refused.body.error).toBe('rate_limited');
        expect(refused.body.error_description).toContain('at most 3 in 3600 s');
        expect(Number(refused.retryAfter)).toBeGreaterThan(3500);
        expect(Number(refused.retryAfter)).toBeLessThanOrEqual(3600);
      }
      expect(await clientRows(a)).toBe(3);

      // A client that writes its own X-Forwarded-For before the proxy appends the real address
      // is still that address: only the load balancer's entry is trusted, never the leftmost.
      for (const forged of ['198.51.100.1', '198.51.100.2, 198.51.100.3']) {
        const refused = await register(baseA, { forwardedFor: `${forged}, ${address}` });
        expect(refused.status, forged).toBe(429);
      }
      // A fragment in the request target (oidc-provider routes it as registration) counts too.
      const fragment = await rawRegister(portA, '/oauth/register#0', { 'x-forwarded-for': address });
      expect(fragment.status).toBe(429);
      expect(await clientRows(a)).toBe(3);

      // Another address has its own limit.
      const other = await register(baseB, { forwardedFor: '203.0.113.8' });
      expect(other.status, JSON.stringify(other.body)).toBe(201);
      expect(await clientRows(a)).toBe(4);
    });
  });

  describe('without a trusted proxy', () => {
    let t: TestApp;
    let base: string;

    beforeAll(async () => {
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      t = await startTestApp({
        PUBLIC_URL: base,
        OAUTH_ALLOW_INSECURE: 'true',
        OAUTH_REGISTRATION_LIMIT: '2/3600',
      });
      await t.app.listen({ host: '127.0.0.1', port });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('counts by the connection address: a forged X-Forwarded-For does not open a new limit', async () => {
      expect((await register(base, { forwardedFor: '198.51.100.1' })).status).toBe(201);
      expect((await register(base, { forwardedFor: '198.51.100.2' })).status).toBe(201);
      const refused = await register(base, { forwardedFor: '198.51.100.3' });
      expect(refused.status).toBe(429);
      expect(refused.body.error).toBe('rate_limited');
      expect(await clientRows(t)).toBe(2);
      // Only registration is limited: the metadata still answers.
      const metadata = await fetch(`${base}/.well-known/oauth-authorization-server`);
      expect(metadata.status).toBe(200);
      expect(((await metadata.json()) as { registration_endpoint: string }).registration_endpoint).toBe(
        `${base}/oauth/register`,
      );
    });
  });

  it('answers 503 while Redis cannot be asked, and registers nothing', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const t = await startTestApp({
      PUBLIC_URL: base,
      OAUTH_ALLOW_INSECURE: 'true',
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    });
    try {
      await t.app.listen({ host: '127.0.0.1', port });
      const refused = await register(base);
      expect(refused.status).toBe(503);
      expect(await clientRows(t)).toBe(0);
    } finally {
      await t.close();
    }
  });
});

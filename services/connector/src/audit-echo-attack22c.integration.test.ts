import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startEdgeProxy } from './test-support/edge-proxy.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack22c: issue 13 — an echoed credential never reaches a result, an audit record, an export
 * or a log. A hostile "Cloudflare" in front of the fake forwards everything, except one probe path
 * where it quotes the bearer token it received in ways the body scrubber may not know.
 */
describe('attack22c credential echo', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  let mode = '';

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      if (req.url?.includes('/echo-probe')) {
        req.resume();
        if (mode === 'header') {
          res.writeHead(400, {
            'content-type': 'application/json',
            'cf-ray': `ray-${token}`,
            ratelimit: token,
          });
          res.end(
            JSON.stringify({ success: false, errors: [{ code: 6003, message: 'Invalid request headers' }] }),
          );
        } else if (mode === 'unicode') {
          // A JSON encoder that escapes every character (valid JSON, decodes to the token).
          const escaped = [...token]
            .map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
            .join('');
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(
            `{"success":false,"errors":[{"code":6003,"message":"bad header Authorization: Bearer ${escaped}"}]}`,
          );
        } else {
          // Lower-case percent-encoding of a token with "-" / "_" is identical; upper-cased hex of its bytes is not.
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              success: false,
              errors: [{ code: 6003, message: `hex ${Buffer.from(token).toString('hex').toUpperCase()}` }],
            }),
          );
        }
        return true;
      }
      return false;
    });
    t = await startTestApp({ CLOUDFLARE_API_BASE: edge.base });
  });
  afterAll(async () => {
    await t.close();
    await edge.close();
    await cf.close();
  });

  async function probe(name: string, echo: string) {
    mode = echo;
    const user = cf.state.createUser({ email: `${name}@example.com` });
    const account = cf.state.createAccount({ name, members: [user.id] });
    const zoneId = cf.state.createZone({ accountId: account.id, name: `${name}.example` }).id;
    const token = cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read'],
    });
    const tenant = await t.createTenant(name);
    await t.connect(tenant.apiKey, name, token.value);
    const res = await t.execute(
      tenant.apiKey,
      name,
      `async () => { try { const r = await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}/echo-probe' }); return r; } catch (e) { return { code: e.code, message: e.message, details: e.details, e: String(e) }; } }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const places = await t.outputsOf(tenant.apiKey, res);
    return {
      token: token.value,
      leaked: Object.entries(places)
        .filter(([, text]) => text.includes(token.value))
        .map(([k]) => k),
    };
  }

  it('scrubs a token Cloudflare echoes in the cf-ray / ratelimit response headers', async () => {
    const { leaked } = await probe('echohdr', 'header');
    expect(leaked).toEqual([]);
  });

  it('scrubs a token Cloudflare echoes with JSON \\u escapes', async () => {
    const { leaked } = await probe('echouni', 'unicode');
    expect(leaked).toEqual([]);
  });

  it('HELD scrubs a token echoed as upper-case hex of its bytes', async () => {
    const { token, leaked } = await probe('echohex', 'hex');
    expect(leaked).toEqual([]);
    void token;
  });
});

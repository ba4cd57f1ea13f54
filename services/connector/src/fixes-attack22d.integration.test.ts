import type http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startEdgeProxy } from './test-support/edge-proxy.ts';
import { zoneTenant } from './test-support/fake-user.ts';
import { requestsInTurn } from './test-support/agent-code.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack22d: outsider attacks on the three attack22c fixes (credential catalog, GraphQL read_only,
 * scrubbing). A hostile "Cloudflare" edge in front of the fake answers the secret-issuing operations
 * the fake does not implement with the response shapes of Cloudflare's API document (each holding
 * MARKER), and forwards everything else. A test FAILS on a bug.
 */
const MARKER = 'SECRETMARKER0123456789abcdef';
const TURN_UID = 'a'.repeat(32);

describe('attack22d fixes', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  const hits: string[] = [];
  const json = (res: http.ServerResponse, body: unknown) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      const url = req.url ?? '';
      const path = url.split('?')[0] ?? '';
      const special: Array<[RegExp, () => void]> = [
        [
          /\/echo-html$/,
          () => {
            const escaped = [...token]
              .map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
              .join('');
            res.writeHead(400, { 'content-type': 'text/html' });
            res.end(`<html><body>Bad header Authorization: Bearer ${escaped}</body></html>`);
          },
        ],
        [
          /\/challenges\/widgets/,
          () =>
            json(res, {
              success: true,
              errors: [],
              messages: [],
              result: { sitekey: '0x4AAAAAAA', secret: MARKER, name: 'w' },
            }),
        ],
        [
          /\/secondary_dns\/tsigs/,
          () =>
            json(res, {
              success: true,
              errors: [],
              messages: [],
              result: [{ id: 't1', name: 'tsig', algo: 'hmac-sha512.', secret: MARKER }],
            }),
        ],
        [
          /\/psk_generate$/,
          () =>
            json(res, {
              success: true,
              errors: [],
              messages: [],
              result: { ipsec_tunnel_id: 'x', psk: MARKER, psk_metadata: {} },
            }),
        ],
        [
          /\/stream\/live_inputs/,
          () =>
            json(res, {
              success: true,
              errors: [],
              messages: [],
              result: {
                uid: 'li1',
                rtmps: { url: 'rtmps://live.example/live/', streamKey: MARKER },
                srt: { url: 'srt://x', streamId: 'y', passphrase: MARKER },
              },
            }),
        ],
        [
          /\/alerting\/v3\/destinations\/webhooks/,
          () =>
            json(res, {
              success: true,
              errors: [],
              messages: [],
              result: [{ id: 'wh1', name: 'hook', url: 'https://hook.example', secret: MARKER }],
            }),
        ],
        [
          /\/stream\/[^/]+\/token$/,
          () => json(res, { success: true, errors: [], messages: [], result: { token: MARKER } }),
        ],
        // Calls answers a TURN key creation without the envelope (calls_turn_key_with_key).
        [
          /\/calls\/turn_keys$/,
          () =>
            json(res, {
              uid: TURN_UID,
              key: MARKER,
              name: 'k',
              created: '2026-01-01T00:00:00Z',
              modified: '2026-01-01T00:00:00Z',
            }),
        ],
        [
          /\/calls\/turn_keys\/[^/]+$/,
          () => json(res, { success: true, errors: [], messages: [], result: { uid: TURN_UID, name: 'k' } }),
        ],
        [/\/graphql$/, () => json(res, { data: { ok: true }, errors: null })],
      ];
      const hit = special.find(([re]) => re.test(path));
      if (hit) {
        hits.push(`${req.method} ${url}`);
        req.resume();
        hit[1]();
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

  const tenant = (name: string, permissions: readonly string[] = []) => zoneTenant(t, cf, name, permissions);
  const tryEach = (requests: ReadonlyArray<Record<string, unknown>>) => requestsInTurn(requests);

  it('refuses by default other secret-issuing operations (Turnstile secrets, TSIG secrets, IPsec PSKs, Stream live-input keys, alert webhook secrets)', async () => {
    const tn = await tenant('gaps');
    const base = `/accounts/${tn.accountId}`;
    const requests = [
      // result.secret: the Turnstile widget's server-side secret (create, read, rotate).
      {
        method: 'POST',
        path: `${base}/challenges/widgets`,
        body: { name: 'w', domains: ['a.example'], mode: 'managed' },
      },
      { method: 'GET', path: `${base}/challenges/widgets/0x4AAAAAAA` },
      { method: 'POST', path: `${base}/challenges/widgets/0x4AAAAAAA/rotate_secret`, body: {} },
      // result[].secret: the TSIG keys that sign zone transfers.
      { method: 'GET', path: `${base}/secondary_dns/tsigs` },
      // result.psk: a Magic WAN IPsec tunnel's pre-shared key.
      { method: 'POST', path: `${base}/magic/ipsec_tunnels/0123456789abcdef0123456789abcdef/psk_generate` },
      // result.rtmps.streamKey / result.srt.passphrase: publish to the live input.
      { method: 'POST', path: `${base}/stream/live_inputs`, body: {} },
      // result[].secret: the signing secret of the alert webhooks.
      { method: 'GET', path: `${base}/alerting/v3/destinations/webhooks` },
    ];
    hits.length = 0;
    const res = await t.execute(tn.apiKey, 'gaps', tryEach(requests));
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    expect(
      data.filter((d) => d.includes(MARKER)),
      'secrets that reached the agent',
    ).toEqual([]);
    expect(hits, 'secret-issuing operations that reached Cloudflare under the default policy').toEqual([]);
  });

  it('HELD a Calls TURN key created through Warden has its key withheld and is revoked on offboarding', async () => {
    const tn = await tenant('turn');
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tn.auth,
      payload: { credential_operations: { allow: ['calls_secrets'] } },
    });
    expect(put.statusCode, put.body).toBe(200);
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'turn',
      tryEach([{ method: 'POST', path: `/accounts/${tn.accountId}/calls/turn_keys`, body: { name: 'k' } }]),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.body).not.toContain(MARKER);
    expect((res.json().data as string[])[0]).toMatch(/^sent 200/);
    const off = await t.app.inject({
      method: 'POST',
      url: '/api/v1/identities/turn/offboard',
      headers: tn.auth,
      payload: { revoke_upstream: true },
    });
    expect(off.statusCode, off.body).toBe(200);
    expect(hits).toContain(`DELETE /client/v4/accounts/${tn.accountId}/calls/turn_keys/${TURN_UID}`);
  });

  it('read_only does not send a GET /graphql whose URL holds a query but whose body holds a mutation', async () => {
    const tn = await tenant('gqlget', ['#analytics:read']);
    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tn.auth,
      payload: { read_only: true },
    });
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'gqlget',
      tryEach([
        {
          method: 'GET',
          path: '/graphql',
          query: { query: 'query Q { viewer { zones { id } } }' },
          body: { query: 'mutation M { deleteEverything }' },
        },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    // The rule the fix set for a POST (a document in both the URL and the body: which one the
    // server runs is not Warden's to guess) holds for a GET that carries a body as well.
    expect(res.json().data).toEqual(['policy_denied']);
    expect(hits).toEqual([]);
  });

  it('scrubs a token echoed with \\u escapes in a non-JSON (text/html) error body', async () => {
    const tn = await tenant('echohtml');
    const res = await t.execute(
      tn.apiKey,
      'echohtml',
      `async () => { try { const r = await cloudflare.request({ method: 'GET', path: '/zones/${tn.zoneId}/echo-html' }); return r; } catch (e) { return { code: e.code, message: e.message, e: String(e) }; } }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const escaped = [...tn.token.value]
      .map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
      .join('');
    const text = JSON.stringify(res.json());
    // What the agent can read back as the token (JSON-decoding the echoed text once).
    const decoded = text.replace(/\\\\u([0-9a-f]{4})/g, (_, h: string) =>
      String.fromCharCode(parseInt(h, 16)),
    );
    expect(
      text.includes(escaped) || decoded.includes(tn.token.value),
      'the token, \\u-escaped, reached the agent',
    ).toBe(false);
  });
});

import type http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startEdgeProxy } from './test-support/edge-proxy.ts';
import { zoneTenant } from './test-support/fake-user.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * Issue 14: answers that show a secret without being credential operations (an Access
 * application's SaaS client secret and SCIM credentials, an identity provider's OAuth client
 * secret, a DLP dataset's Exact Data Match secret, a Pages project's Web Analytics token, an
 * origin TLS client-auth private key, a deleted Turnstile widget's secret) stay open and have the
 * secret withheld; a Stream signed playback token is a credential operation, refused by default.
 * An edge in front of the fake answers them with the shapes of Cloudflare's API document.
 */
const MARKER = 'SHOWNSECRET0123456789abcdef';

const SHOWN: ReadonlyArray<[RegExp, unknown]> = [
  [
    /\/access\/apps$/,
    [
      {
        id: 'app1',
        name: 'wiki',
        saas_app: { client_id: 'cid', client_secret: MARKER },
        scim_config: { authentication: { scheme: 'httpbasic', user: 'u', password: MARKER } },
      },
    ],
  ],
  [/\/access\/identity_providers\/[^/]+$/, { id: 'idp1', config: { client_id: 'c', client_secret: MARKER } }],
  [/\/dlp\/datasets$/, { dataset: { id: 'd1', secret: true }, secret: MARKER, version: 1 }],
  [/\/pages\/projects\/[^/]+$/, { name: 'site', build_config: { web_analytics_token: MARKER } }],
  [/\/origin_tls_client_auth$/, [{ id: 'c1', certificate: 'PEM', private_key: MARKER }]],
  [/\/challenges\/widgets\/[^/]+$/, { sitekey: '0x4AAAAAAA', secret: MARKER }],
  [/\/stream\/[^/]+\/token$/, { token: MARKER }],
];

describe('secrets shown by open operations', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  const hits: string[] = [];

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req: http.IncomingMessage, res: http.ServerResponse) => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      const shown = SHOWN.find(([re]) => re.test(path));
      if (!shown) return false;
      hits.push(`${req.method} ${path.replace(/^\/client\/v4\/(accounts|zones)\/[^/]+/, '')}`);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ success: true, errors: [], messages: [], result: shown[1] }));
      return true;
    });
    t = await startTestApp({ CLOUDFLARE_API_BASE: edge.base });
  });
  afterAll(async () => {
    await t.close();
    await edge.close();
    await cf.close();
  });

  const tenant = (name: string, permissions: readonly string[] = []) => zoneTenant(t, cf, name, permissions);

  const requestsOf = (accountId: string, zoneId: string) => [
    { method: 'GET', path: `/accounts/${accountId}/access/apps` },
    { method: 'PUT', path: `/zones/${zoneId}/access/identity_providers/idp1`, body: { name: 'idp' } },
    { method: 'POST', path: `/accounts/${accountId}/dlp/datasets`, body: { name: 'edm', secret: true } },
    { method: 'GET', path: `/accounts/${accountId}/pages/projects/site` },
    { method: 'GET', path: `/zones/${zoneId}/origin_tls_client_auth` },
    { method: 'DELETE', path: `/accounts/${accountId}/challenges/widgets/0x4AAAAAAA` },
    { method: 'POST', path: `/accounts/${accountId}/stream/abc123/token`, body: {} },
  ];
  const sendEach = (requests: ReadonlyArray<Record<string, unknown>>) =>
    `async () => { const out = []; for (const r of ${JSON.stringify(requests)}) { try { const res = await cloudflare.request(r); out.push({ status: res.status, result: res.result }); } catch (e) { out.push({ code: e.code }); } } return out; }`;

  it('sends them under the default policy with the secret withheld, and refuses a signed playback token', async () => {
    const tn = await tenant('shown');
    hits.length = 0;
    const res = await t.execute(tn.apiKey, 'shown', sendEach(requestsOf(tn.accountId, tn.zoneId)));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.body).not.toContain(MARKER);
    const withheld = expect.stringMatching(/^\[withheld by Warden: .*service_secrets/);
    expect(res.json().data).toEqual([
      {
        status: 200,
        result: [
          {
            id: 'app1',
            name: 'wiki',
            saas_app: { client_id: 'cid', client_secret: withheld },
            scim_config: { authentication: { scheme: 'httpbasic', user: 'u', password: withheld } },
          },
        ],
      },
      { status: 200, result: { id: 'idp1', config: { client_id: 'c', client_secret: withheld } } },
      // The dataset's `secret: true` flag is kept; the secret string is withheld.
      { status: 200, result: { dataset: { id: 'd1', secret: true }, secret: withheld, version: 1 } },
      { status: 200, result: { name: 'site', build_config: { web_analytics_token: withheld } } },
      { status: 200, result: [{ id: 'c1', certificate: 'PEM', private_key: withheld }] },
      { status: 200, result: { sitekey: '0x4AAAAAAA', secret: withheld } },
      { code: 'policy_denied' },
    ]);
    expect(hits).toEqual([
      'GET /access/apps',
      'PUT /access/identity_providers/idp1',
      'POST /dlp/datasets',
      'GET /pages/projects/site',
      'GET /origin_tls_client_auth',
      'DELETE /challenges/widgets/0x4AAAAAAA',
    ]);

    // Nor does the audit trail hold one.
    const audit = await t.app.inject({
      method: 'GET',
      url: '/api/v1/audit/events?identifier=shown&page_size=100',
      headers: tn.auth,
    });
    expect(audit.statusCode).toBe(200);
    expect(audit.body).not.toContain(MARKER);
  });

  it('reveals them, and sends the playback token, only when the tenant policy says so', async () => {
    const tn = await tenant('revealed');
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tn.auth,
      payload: {
        credential_operations: {
          allow: ['service_secrets', 'stream_signing_keys'],
          reveal_secrets: ['service_secrets'],
        },
      },
    });
    expect(put.statusCode, put.body).toBe(200);
    const res = await t.execute(tn.apiKey, 'revealed', sendEach(requestsOf(tn.accountId, tn.zoneId)));
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as Array<{ status?: number; result?: unknown }>;
    expect(data.slice(0, 6).map((d) => JSON.stringify(d.result).includes(MARKER))).toEqual(
      Array(6).fill(true),
    );
    // The playback token is sent now, its secret withheld (stream_signing_keys is not revealed).
    expect(data[6]).toEqual({
      status: 200,
      result: { token: expect.stringMatching(/^\[withheld by Warden: .*stream_signing_keys/) },
    });
  });
});

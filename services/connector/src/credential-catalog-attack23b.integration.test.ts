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
import { approvalsTenant } from './test-support/approvals-tenant.ts';

/**
 * attack23b: an outsider's attacks on issue 14's claim ("credential-minting operations are
 * guarded"), end to end through the real service. A hostile "Cloudflare" edge in front of the
 * fake answers the operations the fake does not implement with the shapes of Cloudflare's API
 * document (or, where the document is silent, of Cloudflare's product documentation), each holding
 * MARKER, and records what reached it. Each test asserts the SECURE behaviour and fails on a bug;
 * tests named HELD are attacks that did not get through.
 */
const MARKER = 'ATTACK23BMARKER0123456789abcdef';
/** A tunnel token answered to an allowed, not revealed, GET …/cfd_tunnel/{id}/token. */
const TUNNEL_TOKEN = 'ATTACK23BTUNNELTOKEN0123456789abcdef';
const TUNNEL = '0123456789abcdef0123456789abcdef';
/** A credential value rolled (or rotated) through Warden and revealed to the agent. */
const ROLLED = 'ATTACK23BROLLEDVALUE0123456789abcdef';
const IPSEC = 'fedcba9876543210fedcba9876543210';

describe('attack23b: the credential catalog end to end', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  const hits: string[] = [];
  const ok = (res: http.ServerResponse, result: unknown) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ success: true, errors: [], messages: [], result }));
  };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      const method = req.method ?? '';
      const answers: Array<[string, RegExp, () => void]> = [
        // An existing tunnel, its secret now the one the agent sent.
        [
          'PATCH',
          /\/(cfd_tunnel|warp_connector)\/[^/]+$/,
          () => ok(res, { id: TUNNEL, name: 'prod', status: 'healthy' }),
        ],
        // Creating a tunnel answers its secret (credentials_file) and run token.
        [
          'POST',
          /\/cfd_tunnel$/,
          () =>
            ok(res, {
              id: TUNNEL,
              name: 'new',
              credentials_file: { AccountTag: 'a', TunnelID: TUNNEL, TunnelSecret: TUNNEL_TOKEN },
              token: TUNNEL_TOKEN,
            }),
        ],
        ['GET', /\/cfd_tunnel\/[^/]+\/token$/, () => ok(res, TUNNEL_TOKEN)],
        [
          'PUT',
          /\/magic\/ipsec_tunnels\/[^/]+$/,
          () => ok(res, { modified: true, modified_ipsec_tunnel: { id: IPSEC, name: 'site-a' } }),
        ],
        [
          'POST',
          /\/client_certificates$/,
          () => ok(res, { id: 'cc1', certificate: '-----BEGIN CERTIFICATE-----', status: 'active' }),
        ],
        [
          'GET',
          /\/devices\/[^/]+\/override_codes$/,
          () =>
            ok(res, {
              disable_for_time: { '1': MARKER, '3': MARKER, '6': MARKER, '12': MARKER, '24': MARKER },
            }),
        ],
        [
          '*',
          /\/stream\/webhook$/,
          () =>
            ok(res, {
              notificationUrl: 'https://hook.example',
              modified: '2026-01-01T00:00:00Z',
              secret: MARKER,
            }),
        ],
        // calls_turn_key_collection: "result": [calls_turn_key ("Bearer token")].
        ['GET', /\/calls\/turn_keys$/, () => ok(res, [MARKER])],
        [
          'GET',
          /\/pages\/projects\/[^/]+$/,
          () =>
            ok(res, {
              name: 'site',
              deployment_configs: {
                production: { env_vars: { CMS_TOKEN: { type: 'secret_text', value: MARKER } } },
              },
            }),
        ],
        [
          'GET',
          /\/logpush\/jobs$/,
          () =>
            ok(res, [
              {
                id: 1,
                dataset: 'http_requests',
                destination_conf: `r2://logs/{DATE}?account-id=a&access-key-id=AK&secret-access-key=${MARKER}`,
              },
            ]),
        ],
        // Images: a PUT creates a key and answers the listing (every key's value).
        ['PUT', /\/images\/v1\/keys\/[^/]+$/, () => ok(res, { keys: [{ name: 'agentkey', value: MARKER }] })],
        ['DELETE', /\/images\/v1\/keys\/[^/]+$/, () => ok(res, { keys: [] })],
        // Rolling an existing token's value; rotating an existing service token's secret.
        ['PUT', /^\/client\/v4\/user\/tokens\/ci-token\/value$/, () => ok(res, ROLLED)],
        ['DELETE', /^\/client\/v4\/user\/tokens\/ci-token$/, () => ok(res, { id: 'ci-token' })],
        [
          'POST',
          /\/access\/service_tokens\/st-ci\/rotate$/,
          () => ok(res, { id: 'st-ci', client_id: 'cid.access', client_secret: ROLLED }),
        ],
        ['DELETE', /\/access\/service_tokens\/st-ci$/, () => ok(res, { id: 'st-ci' })],
      ];
      const hit = answers.find(([m, re]) => (m === '*' || m === method) && re.test(path));
      if (!hit) return false;
      hits.push(`${method} ${path.replace(/^\/client\/v4\/(accounts|zones)\/[^/]+/, '')}`);
      req.resume();
      hit[2]();
      return true;
    });
    t = await startTestApp({ CLOUDFLARE_API_BASE: edge.base });
    t.secrets.add(TUNNEL_TOKEN);
  });
  afterAll(async () => {
    await t.close();
    await edge.close();
    await cf.close();
  });

  const tenant = (name: string, permissions: readonly string[] = []) => zoneTenant(t, cf, name, permissions);

  /** Sends each request in turn: 'sent <status> <result>' or the error code. */
  const tryEach = (requests: ReadonlyArray<Record<string, unknown>>) => requestsInTurn(requests);

  it("refuses by default a PATCH that sets an existing tunnel's secret (the agent can then run the tunnel)", async () => {
    const tn = await tenant('tunnelroll');
    // A 32-byte secret the agent chose: with the account tag and the tunnel id, it is the run
    // token of the tunnel (cloudflared tunnel run --token), serving every hostname routed to it.
    const secret = Buffer.alloc(32, 7).toString('base64');
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'tunnelroll',
      tryEach([
        {
          method: 'PATCH',
          path: `/accounts/${tn.accountId}/cfd_tunnel/${TUNNEL}`,
          body: { tunnel_secret: secret },
        },
        {
          method: 'PATCH',
          path: `/accounts/${tn.accountId}/warp_connector/${TUNNEL}`,
          body: { tunnel_secret: secret },
        },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(hits, 'tunnel secrets set at Cloudflare under the default policy').toEqual([]);
    expect(res.json().data).toEqual(['policy_denied', 'policy_denied']);
  });

  it("refuses by default a PUT that sets an IPsec tunnel's pre-shared key (psk_generate is refused, this is not)", async () => {
    const tn = await tenant('ipsecset');
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'ipsecset',
      tryEach([
        {
          method: 'PUT',
          path: `/accounts/${tn.accountId}/magic/ipsec_tunnels/${IPSEC}`,
          body: { customer_endpoint: '203.0.113.9', psk: 'agent-chosen-pre-shared-key' },
        },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(hits, 'IPsec PSK set at Cloudflare under the default policy').toEqual([]);
    expect(res.json().data).toEqual(['policy_denied']);
  });

  it('refuses by default the issuance of an API Shield mTLS client certificate from the agent’s CSR', async () => {
    const tn = await tenant('clientcert');
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'clientcert',
      tryEach([
        {
          method: 'POST',
          path: `/zones/${tn.zoneId}/client_certificates`,
          body: { csr: '-----BEGIN CERTIFICATE REQUEST-----', validity_days: 3650 },
        },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(hits, 'client certificates issued under the default policy').toEqual([]);
  });

  it('withholds the secrets that open operations answer (WARP override codes, Stream webhook secret, TURN keys, Pages secret env vars, Logpush destination credentials)', async () => {
    const tn = await tenant('shownmore');
    const a = `/accounts/${tn.accountId}`;
    const requests = [
      { method: 'GET', path: `${a}/devices/d1/override_codes` },
      { method: 'PUT', path: `${a}/stream/webhook`, body: { notificationUrl: 'https://hook.example' } },
      { method: 'GET', path: `${a}/stream/webhook` },
      { method: 'GET', path: `${a}/calls/turn_keys` },
      { method: 'GET', path: `${a}/pages/projects/site` },
      { method: 'GET', path: `/zones/${tn.zoneId}/logpush/jobs` },
    ];
    hits.length = 0;
    const res = await t.execute(tn.apiKey, 'shownmore', tryEach(requests));
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    const leaked = requests
      .filter((_, i) => (data[i] ?? '').includes(MARKER))
      .map((r) => `${r.method} ${r.path.replace(/^\/(accounts|zones)\/[^/]+/, '')}`);
    expect(leaked, 'secrets that reached the agent under the default policy').toEqual([]);
  });

  it('revokes on offboarding (revoke_upstream) an Images signing key the agent created through Warden', async () => {
    const tn = await tenant('imageskey');
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tn.auth,
      payload: {
        credential_operations: { allow: ['images_signing_keys'], reveal_secrets: ['images_signing_keys'] },
      },
    });
    expect(put.statusCode, put.body).toBe(200);
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'imageskey',
      tryEach([{ method: 'PUT', path: `/accounts/${tn.accountId}/images/v1/keys/agentkey` }]),
    );
    expect(res.statusCode, res.body).toBe(200);
    // The tenant revealed it: the agent holds the key's value (the tenant's explicit choice) ...
    expect((res.json().data as string[])[0]).toContain(MARKER);
    const off = await t.app.inject({
      method: 'POST',
      url: '/api/v1/identities/imageskey/offboard',
      headers: tn.auth,
      payload: { revoke_upstream: true },
    });
    expect(off.statusCode, off.body).toBe(200);
    // ... and offboarding with revoke_upstream should delete it, as it does a Stream signing key.
    expect(hits).toContain('DELETE /images/v1/keys/agentkey');
  });

  it('invalidates on offboarding (revoke_upstream) a token value or service-token secret the agent rolled and saw', async () => {
    const tn = await tenant('roller');
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tn.auth,
      payload: {
        credential_operations: {
          allow: ['api_tokens', 'access_service_tokens'],
          reveal_secrets: ['api_tokens', 'access_service_tokens'],
        },
      },
    });
    expect(put.statusCode, put.body).toBe(200);
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'roller',
      tryEach([
        // A token and a service token that exist already (a CI pipeline's): rolled, not created.
        { method: 'PUT', path: '/user/tokens/ci-token/value', body: {} },
        { method: 'POST', path: `/accounts/${tn.accountId}/access/service_tokens/st-ci/rotate` },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    // Revealed by the tenant's choice: the agent now holds two live credential values ...
    expect((res.json().data as string[]).every((d) => d.includes(ROLLED))).toBe(true);
    const off = await t.app.inject({
      method: 'POST',
      url: '/api/v1/identities/roller/offboard',
      headers: tn.auth,
      payload: { revoke_upstream: true },
    });
    expect(off.statusCode, off.body).toBe(200);
    // ... which offboarding leaves live: nothing rolls them again or deletes them.
    const after = hits.slice(2);
    expect(
      after.some((h) => h.includes('/user/tokens/ci-token')),
      'token value re-rolled or deleted',
    ).toBe(true);
    expect(
      after.some((h) => h.includes('/access/service_tokens/st-ci')),
      'service token secret re-rotated or deleted',
    ).toBe(true);
  });

  it('HELD an allowed, not revealed, tunnel token reaches neither the agent, the audit trail nor the logs', async () => {
    const tn = await tenant('tokenheld');
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tn.auth,
      payload: { credential_operations: { allow: ['tunnel_tokens'] } },
    });
    expect(put.statusCode, put.body).toBe(200);
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'tokenheld',
      `async () => { const r = await cloudflare.request({ method: 'GET', path: '/accounts/${tn.accountId}/cfd_tunnel/${TUNNEL}/token' }); console.log(JSON.stringify(r)); return { r, again: JSON.stringify(r.result) }; }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(hits).toEqual([`GET /cfd_tunnel/${TUNNEL}/token`]);
    expect(res.body).not.toContain(TUNNEL_TOKEN);
    expect(res.json().data.r.result).toMatch(/^\[withheld by Warden: .*tunnel_tokens/);
    const audit = await t.app.inject({
      method: 'GET',
      url: '/api/v1/audit/events?identifier=tokenheld&page_size=100',
      headers: tn.auth,
    });
    expect(audit.statusCode).toBe(200);
    expect(audit.body).not.toContain(TUNNEL_TOKEN);
    for (const format of ['ndjson', 'ocsf', 'cef']) {
      expect(await t.auditExport(tn.apiKey, format), format).not.toContain(TUNNEL_TOKEN);
    }
    // The logs are checked for every secret of the test (TUNNEL_TOKEN among them) on close.
  });

  it("HELD a tunnel created on a person's approval has its secret withheld from the agent, the approval and the trail", async () => {
    const tn = await approvalsTenant<{ id: string; status: string; results?: unknown }>(t, cf, {
      name: 'approvedtunnel',
      permissions: ['#zone:read'],
    });
    await tn.connect('tunnelops');
    const policy = await tn.api('PUT', '/api/v1/policy', {
      credential_operations: { allow: ['tunnel_tokens'] },
      rules: [{ effect: 'approve', methods: ['POST'], path: '/accounts/**' }],
    });
    expect(policy.statusCode, policy.body).toBe(200);
    hits.length = 0;
    const planned = await tn.execute(
      'tunnelops',
      `async () => cloudflare.request({ method: 'POST', path: '/accounts/${tn.accountId}/cfd_tunnel', body: { name: 'new', config_src: 'local' } })`,
    );
    expect(planned.approval?.status).toBe('pending');
    expect(hits).toEqual([]);
    const approved = await tn.api(
      'POST',
      `/api/v1/approvals/${planned.approval?.id}/approve`,
      {},
      tn.approver.apiKey,
    );
    expect(approved.statusCode, approved.body).toBe(200);
    expect(hits).toEqual(['POST /cfd_tunnel']);
    expect(approved.body).toContain('withheld by Warden');
    expect(approved.body).not.toContain(TUNNEL_TOKEN);
    const again = await tn.api('GET', `/api/v1/approvals/${planned.approval?.id}`);
    expect(again.body).not.toContain(TUNNEL_TOKEN);
    const audit = await tn.api('GET', '/api/v1/audit/events?page_size=100');
    expect(audit.body).not.toContain(TUNNEL_TOKEN);
  });
});

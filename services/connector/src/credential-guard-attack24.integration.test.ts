import type http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { replyEnvelope, startEdgeProxy } from './test-support/edge-proxy.ts';
import { tenantAdmin, zoneTenant } from './test-support/fake-user.ts';
import { createTailingUser } from './test-support/tailing-user.ts';
import { requestsInTurn } from './test-support/agent-code.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack24: an outsider's attacks on the revocation of what agents make (issue 14's claim:
 * "the minted credential is recorded and revoked on offboarding with revoke_upstream"), and on
 * the own-access rule, end to end through the real service. A hostile "Cloudflare" edge in
 * front of the fake answers what the fake does not implement, with the shapes of Cloudflare's
 * API document, and records what reached it (query strings included); the rest goes through to
 * the fake. Each test asserts the SECURE behaviour and fails on a bug; tests named HELD are
 * attacks that did not get through.
 */
const MARKER = 'ATTACK24MARKER0123456789abcdef';
const MINT_PERMISSIONS = ['com.cloudflare.api.token.create', 'com.cloudflare.api.token.delete'];
const WIDGET = '0x4AAAAAAAATTACK24';
const SERVICE_TOKEN = '6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f';

describe('attack24: re-rolls skipped by validate_only, keys named outside the id pattern, raw tails', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  /** `METHOD path?query` of what reached the edge's own answers (account/zone prefix cut). */
  const hits: string[] = [];
  const ok = (res: http.ServerResponse, result: unknown) => replyEnvelope(res, 200, result);
  /** A person's API token (a CI pipeline's), rolled at every PUT …/value, whatever the query says. */
  const ci = { rolls: 0 };
  const widget = { rotations: 0 };
  const service = { rotations: 0 };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const [path = '', query = ''] = (req.url ?? '').split('?');
      const method = req.method ?? '';
      const short = `${method} ${path.replace(/^\/client\/v4/, '').replace(/^\/(accounts|zones)\/[^/]+/, '')}${query ? `?${query}` : ''}`;
      // Cloudflare ignores query parameters an operation does not define: `validate_only` is
      // documented for Magic WAN operations only (psk_generate among the credential ones).
      const answers: Array<[string, RegExp, () => void]> = [
        [
          'PUT',
          /^\/client\/v4\/user\/tokens\/ci-token\/value$/,
          () => {
            ci.rolls += 1;
            ok(res, `${MARKER}-ci-${ci.rolls}`);
          },
        ],
        [
          'POST',
          /\/challenges\/widgets\/[^/]+\/rotate_secret$/,
          () => {
            widget.rotations += 1;
            ok(res, {
              sitekey: WIDGET,
              name: 'login',
              mode: 'managed',
              secret: `${MARKER}-w-${widget.rotations}`,
            });
          },
        ],
        [
          'POST',
          /\/access\/service_tokens\/[^/]+\/rotate$/,
          () => {
            service.rotations += 1;
            ok(res, {
              id: SERVICE_TOKEN,
              client_id: 'cid.access',
              client_secret: `${MARKER}-s-${service.rotations}`,
              name: 'ci',
            });
          },
        ],
        // Images signing keys: a PUT by name creates the key and answers the listing (values).
        [
          'PUT',
          /\/images\/v1\/keys\/[^/]+$/,
          () =>
            ok(res, { keys: [{ name: decodeURIComponent(path.split('/').at(-1) ?? ''), value: MARKER }] }),
        ],
        ['DELETE', /\/images\/v1\/keys\/[^/]+$/, () => ok(res, { keys: [] })],
        // A Stream signing key created with no id Warden can use to delete it.
        ['POST', /\/stream\/keys$/, () => ok(res, { id: '../odd id', pem: MARKER, jwk: MARKER })],
      ];
      const hit = answers.find(([m, re]) => m === method && re.test(path));
      if (!hit) return false;
      hits.push(short);
      req.resume();
      hit[2]();
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
  const setPolicy = (auth: Record<string, string>, payload: Record<string, unknown>) =>
    tenantAdmin(t).setPolicy(auth, payload);
  const offboard = (auth: Record<string, string>, identifier: string) =>
    tenantAdmin(t).offboard(auth, identifier);

  /** Sends each request in turn: 'sent <status> <result>' or the error code. */
  const tryEach = (requests: ReadonlyArray<Record<string, unknown>>) =>
    requestsInTurn(requests, { message: true });

  it("re-rolls on offboarding a person's token value the agent rolled and saw with ?validate_only=true (Cloudflare ignores it there)", async () => {
    // `mintedCredential` skips every 'again' re-roll whose query says validate_only=true. The
    // API document defines that parameter for Magic WAN writes only (psk_generate among the
    // credential operations); PUT /user/tokens/{id}/value takes no query and Cloudflare ignores
    // one it does not define: the value is rolled and shown, and nothing is recorded.
    const tn = await tenant('vonlytoken', MINT_PERMISSIONS);
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'vonlytoken',
      tryEach([
        { method: 'PUT', path: '/user/tokens/ci-token/value', query: { validate_only: 'true' }, body: {} },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    // The agent holds a live value of the CI token (the tenant reveals api_tokens secrets).
    expect(data[0]).toContain(`${MARKER}-ci-1`);
    expect(ci.rolls).toBe(1);
    const off = await offboard(tn.auth, 'vonlytoken');
    expect(off.statusCode, off.body).toBe(200);
    // Secure: offboarding rolls the value once more, so the one the agent saw dies.
    expect(
      ci.rolls,
      `offboarding did not re-roll the value the agent saw; edge saw ${JSON.stringify(hits)}`,
    ).toBe(2);
  });

  it('rotates again on offboarding a Turnstile secret and an Access service-token secret the agent rotated with ?validate_only=true and saw', async () => {
    const tn = await tenant('vonlyother');
    await setPolicy(tn.auth, {
      credential_operations: {
        allow: ['service_secrets', 'access_service_tokens'],
        reveal_secrets: ['service_secrets', 'access_service_tokens'],
      },
    });
    hits.length = 0;
    const q = { validate_only: 'true' };
    const res = await t.execute(
      tn.apiKey,
      'vonlyother',
      tryEach([
        {
          method: 'POST',
          path: `/accounts/${tn.accountId}/challenges/widgets/${WIDGET}/rotate_secret`,
          query: q,
          body: { invalidate_immediately: true },
        },
        {
          method: 'POST',
          path: `/accounts/${tn.accountId}/access/service_tokens/${SERVICE_TOKEN}/rotate`,
          query: q,
          body: {},
        },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    expect(data[0]).toContain(`${MARKER}-w-1`);
    expect(data[1]).toContain(`${MARKER}-s-1`);
    const off = await offboard(tn.auth, 'vonlyother');
    expect(off.statusCode, off.body).toBe(200);
    expect(widget.rotations, `Turnstile secret not rotated again; edge saw ${JSON.stringify(hits)}`).toBe(2);
    expect(service.rotations, `service token not rotated again; edge saw ${JSON.stringify(hits)}`).toBe(2);
  });

  it('deletes on offboarding an Images signing key the agent created and saw under a name with "~" or "!" (outside the recorded-id pattern)', async () => {
    // 'self' revocations record the last path segment as the upstream id, and `made` drops
    // (records nothing for) an id outside /^[A-Za-z0-9_.-]{1,128}$/. The segment is the key name
    // the agent chose; "~" and "!" pass the canonical path raw. The answer (the key's value)
    // still reaches the agent, and offboarding has nothing to delete.
    const tn = await tenant('imagesname');
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['images_signing_keys'], reveal_secrets: ['images_signing_keys'] },
    });
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'imagesname',
      tryEach([
        { method: 'PUT', path: `/accounts/${tn.accountId}/images/v1/keys/agent~key` },
        { method: 'PUT', path: `/accounts/${tn.accountId}/images/v1/keys/agent!key` },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    const shown = data.filter((line) => line.startsWith('sent 200') && line.includes(MARKER));
    const off = await offboard(tn.auth, 'imagesname');
    expect(off.statusCode, off.body).toBe(200);
    // Secure: a key whose value the agent saw is deleted by offboarding (or it was never shown).
    for (const name of ['agent~key', 'agent!key']) {
      const seen = shown.some((line) => line.includes(`"name":"${name}"`));
      if (seen)
        expect(hits, `key ${name} shown to the agent but left alive`).toContain(
          `DELETE /images/v1/keys/${name}`,
        );
    }
    expect(shown.length === 0 || hits.some((h) => h.startsWith('DELETE'))).toBe(true);
  });

  it('does not leave alive past offboarding a Worker tail the agent created with cloudflare.request, nor hand the agent its WebSocket URL', async () => {
    // A tail's WebSocket URL is all a client needs to read the Worker's live events (wrangler
    // connects with no credential); it lives six hours. `tail.worker` keeps the URL in the host,
    // scrubs the events and always deletes the tail. The same create sent as a plain request
    // (a write that a default policy allows) hands the URL to the agent, and nothing records it.
    const { accountId, token } = createTailingUser(cf, {
      email: 'rawtail@example.com',
      accountName: 'rawtail Co',
    });
    cf.tails.script(accountId, 'api', [
      { outcome: 'ok', logs: [{ message: ['session cookie sid=attack24-after-offboarding'] }] },
    ]);
    const tenantKey = (await t.createTenant('rawtail')).apiKey;
    await t.connect(tenantKey, 'rawtail', token);
    const before = new Set(cf.state.tails.keys());
    const res = await t.execute(
      tenantKey,
      'rawtail',
      tryEach([{ method: 'POST', path: `/accounts/${accountId}/workers/scripts/api/tails`, body: {} }]),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    const created = [...cf.state.tails.values()].filter((tail) => !before.has(tail.id));
    const off = await offboard({ authorization: `Bearer ${tenantKey}` }, 'rawtail');
    expect(off.statusCode, off.body).toBe(200);
    // What the agent was handed, used from outside after offboarding, with no credential at all.
    const url = /"url":"([^"]+)"/.exec(data[0] ?? '')?.[1];
    const heard = url
      ? await new Promise<string | null>((resolve) => {
          const ws = new WebSocket(url, 'trace-v1');
          const timer = setTimeout(() => (ws.close(), resolve(null)), 2_000);
          ws.onopen = () => ws.send('{}');
          ws.onmessage = (event) => (clearTimeout(timer), ws.close(), resolve(String(event.data)));
          ws.onerror = () => (clearTimeout(timer), resolve(null));
        })
      : null;
    expect.soft(heard, 'the URL the agent got reads the Worker events after offboarding').toBeNull();
    for (const tail of created) {
      expect.soft(data[0], 'the agent got the tail WebSocket URL').not.toContain(`/tail/${tail.id}`);
      expect
        .soft(tail.deletedAt, `tail ${tail.id} the agent created is alive after offboarding`)
        .not.toBeNull();
    }
  });

  it('a tail started with cloudflare.request where the tenant allows service_secrets: its URL withheld, in listings too, and the tail deleted on offboarding', async () => {
    const { accountId, token } = createTailingUser(cf, {
      email: 'allowedtail@example.com',
      accountName: 'allowedtail Co',
    });
    const tenantKey = (await t.createTenant('allowedtail')).apiKey;
    const auth = { authorization: `Bearer ${tenantKey}` };
    await t.connect(tenantKey, 'allowedtail', token);
    await setPolicy(auth, { credential_operations: { allow: ['service_secrets'] } });
    const before = new Set(cf.state.tails.keys());
    const tails = `/accounts/${accountId}/workers/scripts/api/tails`;
    const res = await t.execute(
      tenantKey,
      'allowedtail',
      tryEach([
        { method: 'POST', path: tails, body: {} },
        { method: 'GET', path: tails },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    const [createdAnswer, listed] = res.json().data as string[];
    const created = [...cf.state.tails.values()].filter((tail) => !before.has(tail.id));
    expect(created).toHaveLength(1);
    const id = created[0]!.id;
    // Made (the agent has its id), but its URL is not the agent's, neither in the answer nor in listings.
    expect(createdAnswer).toContain(id);
    expect(createdAnswer).toContain('withheld by Warden');
    expect(createdAnswer).not.toContain(`/tail/${id}`);
    expect(listed).toContain(id);
    expect(listed).not.toContain(`/tail/${id}`);
    const off = await offboard(auth, 'allowedtail');
    expect(off.statusCode, off.body).toBe(200);
    expect(off.json().revoked_connected_accounts[0].upstream.detail).toContain(
      'credentials it created through Warden: 1 of 1 revoked',
    );
    expect(cf.state.tails.get(id)?.deletedAt, 'the tail the agent started is deleted').not.toBeNull();
  });

  it('withholds the secrets of a credential made with an id Warden cannot record for offboarding, even where the policy reveals them', async () => {
    const tn = await tenant('oddid');
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['stream_signing_keys'], reveal_secrets: ['stream_signing_keys'] },
    });
    const res = await t.execute(
      tn.apiKey,
      'oddid',
      tryEach([{ method: 'POST', path: `/accounts/${tn.accountId}/stream/keys`, body: {} }]),
    );
    expect(res.statusCode, res.body).toBe(200);
    const [answer] = res.json().data as string[];
    expect(answer).toMatch(/^sent 200 /);
    expect(answer).not.toContain(MARKER);
    expect(answer).toContain('cannot be recorded for revocation');
  });

  it('HELD the own-access rule through the SDK call style and odd spellings, with api_tokens and account_members allowed and revealed', async () => {
    const tn = await tenant('sdkself', MINT_PERMISSIONS);
    await setPolicy(tn.auth, {
      credential_operations: {
        allow: ['api_tokens', 'account_members'],
        reveal_secrets: ['api_tokens', 'account_members'],
      },
    });
    const id = tn.token.id;
    const before = cf.requests().length;
    const res = await t.execute(
      tn.apiKey,
      'sdkself',
      `async () => {
        const out = [];
        const attempts = [
          () => cloudflare.user.tokens.delete({ token_id: '${id}' }),
          () => cloudflare.user.tokens.update({ token_id: '${id}', name: 'x', policies: [] }),
          () => cloudflare.user.tokens.value.update({ token_id: '${id}' }),
          () => cloudflare.request({ method: 'delete', path: '/user/tokens/${id}' }),
          () => cloudflare.request({ method: 'PATCH', path: '/User/Tokens/${id.toUpperCase()}' }),
          () => cloudflare.request({ method: 'PUT', path: '/user/tokens/${id}/value', query: { validate_only: 'true' }, body: {} }),
          () => cloudflare.request({ method: 'DELETE', path: '/user/tokens/${id}%2Fx' }),
          () => cloudflare.request({ method: 'DELETE', path: '/user/tokens/x/../${id}' }),
          () => cloudflare.request({ method: 'DELETE', path: '/user/tokens/${id};v=1' }),
          () => cloudflare.request({ method: 'DELETE', path: '/memberships/m1' }),
          () => cloudflare.request({ method: 'PUT', path: '/Memberships/m1', body: { status: 'rejected' } }),
          () => cloudflare.request({ method: 'DELETE', path: '/user/organizations/${tn.accountId}' }),
          () => cloudflare.request({ method: 'PUT', path: '/accounts/${tn.accountId}/Members/m1', body: { roles: [] } }),
          () => cloudflare.request({ method: 'POST', path: '/accounts/${tn.accountId}/iam/user_groups', body: { name: 'x' } }),
        ];
        for (const attempt of attempts) {
          try { const r = await attempt(); out.push('sent ' + (r && r.status)); } catch (e) { out.push(e.code); }
        }
        return out;
      }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    for (const [i, outcome] of data.entries()) expect(outcome, `attempt ${i}`).not.toMatch(/^sent/);
    const sent = cf
      .requests()
      .slice(before)
      .filter((r) => r.method !== 'GET');
    expect(sent).toEqual([]);
    expect(cf.state.getToken(id)).toBeDefined();
  });
});

import type http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { requestsInTurn } from './test-support/agent-code.ts';
import { replyEnvelope, startEdgeProxy } from './test-support/edge-proxy.ts';
import { tenantAdmin, zoneTenant } from './test-support/fake-user.ts';
import { createTailingUser } from './test-support/tailing-user.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack25: an outsider's attacks on the attack24 fixes (c1f1847): revocation records of what
 * agents make (odd ids in Cloudflare's answer, names from the agent's path), `validate_only`,
 * Worker tails started with `cloudflare.request`. A hostile "Cloudflare" edge in front of the
 * fake answers what the fake does not implement and records what reached it. Each test asserts
 * the SECURE behaviour and fails on a bug; tests named HELD are attacks that did not get through.
 */
const MARKER = 'ATTACK25MARKER0123456789abcdef';
const MINT_PERMISSIONS = ['com.cloudflare.api.token.create', 'com.cloudflare.api.token.delete'];
/** The bearer part of a tail WebSocket URL the edge hands out. */
const TAIL_SECRET = 'attack25tailcapability0123456789';

describe('attack25: odd ids, names from the path, validate_only spellings, tail endpoints', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  /** `METHOD path?query` of what reached the edge's own answers (account/zone prefix cut). */
  const hits: string[] = [];
  const ok = (res: http.ServerResponse, result: unknown) => replyEnvelope(res, 200, result);
  /** The id the edge answers a Stream signing key creation with (set per test). */
  let streamKeyId: unknown = 'k1';
  const ci = { rolls: 0 };
  /** IPsec PSKs generated and kept (not a validation). */
  const psk = { persisted: 0 };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const [path = '', query = ''] = (req.url ?? '').split('?');
      const method = req.method ?? '';
      const short = `${method} ${path.replace(/^\/client\/v4/, '').replace(/^\/(accounts|zones)\/[^/]+/, '')}${query ? `?${query}` : ''}`;
      const tail = () =>
        ok(res, {
          id: 'tail-1',
          url: `wss://tail.developers.workers.dev/${TAIL_SECRET}`,
          expires_at: '2099-01-01T00:00:00Z',
        });
      const answers: Array<[string, RegExp, () => void]> = [
        ['POST', /\/stream\/keys$/, () => ok(res, { id: streamKeyId, pem: MARKER, jwk: MARKER })],
        ['DELETE', /\/stream\/keys\/[^/]+$/, () => ok(res, {})],
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
          /\/magic\/ipsec_tunnels\/[^/]+\/psk_generate$/,
          () => {
            // Cloudflare's document types the parameter as a boolean: this edge reads the one
            // spelling a JSON/OpenAPI boolean has in a query ("true"); anything else persists.
            const validate = new URLSearchParams(query).get('validate_only') === 'true';
            if (!validate) psk.persisted += 1;
            ok(res, { ipsec_tunnel_id: 't1', psk: `${MARKER}-psk-${psk.persisted}`, psk_metadata: {} });
          },
        ],
        [
          'PUT',
          /\/images\/v1\/keys\/[^/]+$/,
          () =>
            ok(res, { keys: [{ name: decodeURIComponent(path.split('/').at(-1) ?? ''), value: MARKER }] }),
        ],
        ['DELETE', /\/images\/v1\/keys\/[^/]+$/, () => ok(res, { keys: [] })],
        // Tail sessions of Workers service environments and of Pages deployments (what wrangler
        // calls for `wrangler tail --env` on a service and `wrangler pages deployment tail`), and
        // of Workers for Platforms user Workers: the same `{id, url, expires_at}` answer.
        ['POST', /\/workers\/services\/[^/]+\/environments\/[^/]+\/tails$/, tail],
        ['POST', /\/pages\/projects\/[^/]+\/deployments\/[^/]+\/tails$/, tail],
        ['POST', /\/workers\/dispatch\/namespaces\/[^/]+\/scripts\/[^/]+\/tails$/, tail],
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

  /** Sends each request in turn: 'sent <status> <result>' or the error code and message. */
  const tryEach = (requests: ReadonlyArray<Record<string, unknown>>) =>
    requestsInTurn(requests, { message: true });

  for (const id of ['..', '.']) {
    it(`withholds the secrets of a Stream signing key Cloudflare answered with id "${id}" (its revoke path is a dot segment Warden itself refuses to send)`, async () => {
      // UPSTREAM_ID (/^[A-Za-z0-9_.-]{1,128}$/) admits "." and "..": the key is recorded with the
      // revoke path `/accounts/{a}/stream/keys/..`, which the gateway's canonical path refuses
      // ("." and ".." segments), so no offboarding can ever revoke it, and the agent saw its secret.
      const name = id === '..' ? 'dotdotkey' : 'dotkey';
      const tn = await tenant(name, MINT_PERMISSIONS);
      await setPolicy(tn.auth, {
        credential_operations: { allow: ['stream_signing_keys'], reveal_secrets: ['stream_signing_keys'] },
      });
      streamKeyId = id;
      hits.length = 0;
      const res = await t.execute(
        tn.apiKey,
        name,
        tryEach([{ method: 'POST', path: `/accounts/${tn.accountId}/stream/keys`, body: {} }]),
      );
      expect(res.statusCode, res.body).toBe(200);
      const [answer] = res.json().data as string[];
      expect(answer).toMatch(/^sent 200 /);
      const first = await offboard(tn.auth, name);
      const second = await offboard(tn.auth, name);
      expect(second.statusCode, second.body).toBe(200);
      expect
        .soft(answer, 'the agent holds the secret of a key no offboarding can revoke')
        .not.toContain(MARKER);
      expect
        .soft(
          cf.state.getToken(tn.token.id),
          `two offboardings never finish (token and sealed credential kept for good): ${first.body} / ${second.body}`,
        )
        .toBeUndefined();
    });
  }

  it('HELD: a child id with "/", "%2F", 129 characters, a number, an array or an object is unrecordable (secrets withheld)', async () => {
    const tn = await tenant('oddids');
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['stream_signing_keys'], reveal_secrets: ['stream_signing_keys'] },
    });
    const out: string[] = [];
    for (const id of ['a/b', '..%2Fx', 'a%2F..', 'x'.repeat(129), 42, ['k1'], { id: 'k1' }, '', ' k1']) {
      streamKeyId = id;
      const res = await t.execute(
        tn.apiKey,
        'oddids',
        tryEach([{ method: 'POST', path: `/accounts/${tn.accountId}/stream/keys`, body: {} }]),
      );
      expect(res.statusCode, res.body).toBe(200);
      out.push(...(res.json().data as string[]));
    }
    streamKeyId = 'k1';
    for (const [i, answer] of out.entries()) {
      expect(answer, `id #${i}`).not.toContain(MARKER);
      expect(answer, `id #${i}`).toContain('cannot be recorded for revocation');
    }
  });

  it('HELD: an Images key named with percent escapes, unicode and sub-delimiters is recorded and deleted by the very path that made it', async () => {
    const tn = await tenant('imagesesc');
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['images_signing_keys'], reveal_secrets: ['images_signing_keys'] },
    });
    const names = [
      encodeURIComponent('ключ'),
      encodeURIComponent('a b'),
      "a$&'()*+,=:@b",
      `k%25${'z'}`, // "%25" not followed by two hex digits
      encodeURIComponent('é').toLowerCase(),
    ];
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'imagesesc',
      tryEach(names.map((n) => ({ method: 'PUT', path: `/accounts/${tn.accountId}/images/v1/keys/${n}` }))),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    const puts = hits.filter((h) => h.startsWith('PUT '));
    const off = await offboard(tn.auth, 'imagesesc');
    expect(off.statusCode, off.body).toBe(200);
    const deletes = hits.filter((h) => h.startsWith('DELETE '));
    // Every key whose value the agent saw is deleted, each by exactly the path that created it.
    for (const [i, line] of data.entries()) {
      if (!line.includes(MARKER)) continue;
      const put = puts.find((p) => p.endsWith(`/images/v1/keys/${canonicalName(names[i] ?? '')}`));
      expect(put, `key #${i} ${line}`).toBeDefined();
      expect(deletes, `key #${i} shown but not deleted`).toContain(put?.replace(/^PUT /, 'DELETE '));
    }
    expect(deletes.length).toBe(puts.length);
    expect(off.body).not.toContain('kept until');
  });

  it('HELD: every spelling of validate_only on a token value roll (no such parameter there) is re-rolled on offboarding', async () => {
    const tn = await tenant('vonly25', MINT_PERMISSIONS);
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    const queries = [
      { validate_only: 'true' },
      { VALIDATE_ONLY: 'true' },
      { validate_only: '1' },
      { validate_only: 'TRUE' },
      { validate_only: true },
      { Validate_Only: 'True' },
    ];
    ci.rolls = 0;
    const res = await t.execute(
      tn.apiKey,
      'vonly25',
      tryEach(
        queries.map((query) => ({ method: 'PUT', path: '/user/tokens/ci-token/value', query, body: {} })),
      ),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    const seen = data.filter((line) => line.includes(`${MARKER}-ci-`)).length;
    const rolled = ci.rolls;
    const off = await offboard(tn.auth, 'vonly25');
    expect(off.statusCode, off.body).toBe(200);
    expect(ci.rolls - rolled, `values the agent saw: ${seen}; ${JSON.stringify(data)}`).toBe(seen);
  });

  it('re-generates on offboarding an IPsec PSK the agent generated and saw with validate_only spelled "TRUE", "True" or "tRuE" (not the boolean\'s query spelling "true")', async () => {
    // `isTrue` lower-cases the value: Warden takes "TRUE" for a validation and records nothing.
    // A Cloudflare that reads only "true" (what the document's boolean serialises to) persists
    // the PSK and shows it: the agent holds a live pre-shared key that offboarding never rolls.
    const tn = await tenant('pskcase');
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['service_secrets'], reveal_secrets: ['service_secrets'] },
    });
    psk.persisted = 0;
    const spellings = ['TRUE', 'True', 'tRuE'];
    const res = await t.execute(
      tn.apiKey,
      'pskcase',
      tryEach(
        spellings.map((v) => ({
          method: 'POST',
          path: `/accounts/${tn.accountId}/magic/ipsec_tunnels/t1/psk_generate`,
          query: { validate_only: v },
          body: {},
        })),
      ),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    const persistedSeen = psk.persisted;
    const off = await offboard(tn.auth, 'pskcase');
    expect(off.statusCode, off.body).toBe(200);
    expect(
      psk.persisted - persistedSeen,
      `PSKs persisted and shown to the agent: ${persistedSeen} (${JSON.stringify(data)}); re-generated on offboarding: ${psk.persisted - persistedSeen}`,
    ).toBeGreaterThanOrEqual(persistedSeen > 0 ? 1 : 0);
  });

  it('does not hand the agent the WebSocket URL of a tail started on a service environment, a Pages deployment or a dispatch-namespace Worker', async () => {
    // The guard lists only /accounts/*/workers/scripts/*/tails. The same tail session exists for
    // these paths (not in the API document, which Warden does not require): the answer's `url`
    // is the bearer capability to read the Worker's live events, unscrubbed, for hours.
    const tn = await tenant('othertails');
    hits.length = 0;
    const a = `/accounts/${tn.accountId}`;
    const paths = [
      `${a}/workers/services/api/environments/production/tails`,
      `${a}/pages/projects/site/deployments/d1/tails`,
      `${a}/workers/dispatch/namespaces/ns/scripts/customer/tails`,
    ];
    const res = await t.execute(
      tn.apiKey,
      'othertails',
      tryEach(paths.map((path) => ({ method: 'POST', path, body: {} }))),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    for (const [i, line] of data.entries())
      expect.soft(line, `${paths[i]}: the agent got the tail URL`).not.toContain(TAIL_SECRET);
  });

  it('HELD: tails started in other spellings (case, SDK style) are refused under the default policy and a tail.worker result carries no URL', async () => {
    const { accountId, token } = createTailingUser(cf, {
      email: 'tails25@example.com',
      accountName: 'tails25 Co',
    });
    cf.tails.script(accountId, 'api', [{ outcome: 'ok', logs: [{ message: ['hello'] }] }]);
    // Straight to the fake (tail.worker connects only to the API's own host, not the edge's).
    const direct = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    const tenantKey = (await direct.createTenant('tails25')).apiKey;
    await direct.connect(tenantKey, 'tails25', token);
    const before = new Set(cf.state.tails.keys());
    const p = `/accounts/${accountId}/workers/scripts/api/tails`;
    const res = await direct.execute(
      tenantKey,
      'tails25',
      `async () => {
        const out = [];
        const attempts = [
          () => cloudflare.request({ method: 'POST', path: '${p}' }),
          () => cloudflare.request({ method: 'post', path: '${p.replace('tails', 'TAILS')}' }),
          () => cloudflare.request({ method: 'POST', path: '${p.replace('/workers/', '/Workers/')}' }),
          () => cloudflare.request({ method: 'POST', path: '${p.replace('tails', 'tail%73')}' }),
          () => cloudflare.workers.scripts.tail.create({ account_id: '${accountId}', script_name: 'api', body: {} }),
          () => cloudflare.workers.scripts.tails.create({ account_id: '${accountId}', script_name: 'api', body: {} }),
          () => cloudflare.workers.scripts.tail.create('api', { account_id: '${accountId}', body: {} }),
        ];
        for (const attempt of attempts) {
          try { const r = await attempt(); out.push('sent ' + JSON.stringify(r)); } catch (e) { out.push(String(e.code) + ' ' + e.message); }
        }
        // The managed tail's session, listed while it runs (GET …/tails is open under the default policy).
        const running = tail.worker({ script: 'api', seconds: 2 }).catch((e) => ({ error: String(e.code) + ' ' + e.message }));
        const listed = [];
        for (let i = 0; i < 40 && !listed.some((l) => l && l.id); i++) {
          listed.push((await cloudflare.request({ method: 'GET', path: '${p}' })).result);
        }
        out.push('list ' + JSON.stringify(listed.filter((l) => l)));
        out.push('tail.worker ' + JSON.stringify(await running));
        return out;
      }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    const created = [...cf.state.tails.values()].filter((x) => !before.has(x.id));
    const outputs = await direct.outputsOf(tenantKey, res);
    await direct.close();
    for (const tailSession of created) {
      for (const [where, text] of Object.entries(outputs))
        expect(text, `${where} holds the URL of tail ${tailSession.id}`).not.toContain(
          `/tail/${tailSession.id}`,
        );
    }
    for (const [i, line] of data.slice(0, -2).entries()) expect(line, `attempt ${i}`).not.toMatch(/^sent/);
    // The managed tail was listed while it ran (its id), its URL withheld.
    expect(data.at(-2)).toMatch(/"id":"/);
    expect(data.at(-2)).not.toContain('/tail/');
    // tail.worker still works under the default policy (and its tail is deleted).
    expect(data.at(-1)).toContain('hello');
    expect(created.length).toBeGreaterThan(0);
    for (const tailSession of created) expect(tailSession.deletedAt).not.toBeNull();
  });
});

/** The canonical spelling of a name written percent-encoded (what the gateway sends). */
function canonicalName(name: string): string {
  const raw = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@";
  return [...Buffer.from(decodeURIComponent(name), 'utf8')]
    .map((b) =>
      b < 0x80 && raw.includes(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`,
    )
    .join('');
}

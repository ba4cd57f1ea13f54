import type http from 'node:http';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startEdgeProxy } from './test-support/edge-proxy.ts';
import { tenantAdmin, zoneTenant } from './test-support/fake-user.ts';
import { requestsInTurn } from './test-support/agent-code.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack23d: an outsider's attacks on issue 14's claim ("credential-minting operations are
 * guarded") after the attack23b fixes, end to end through the real service: the revocation of
 * what agents make (re-rolls, Images keys deleted by name, offboarding racing a running agent,
 * an agent that disables the credential offboarding revokes with) and operations outside the
 * catalog. A hostile "Cloudflare" edge in front of the fake answers what the fake does not
 * implement, with the shapes of Cloudflare's API document, and records what reached it; the
 * rest goes through to the fake (API tokens are real there). Each test asserts the SECURE
 * behaviour and fails on a bug; tests named HELD are attacks that did not get through.
 */
const MARKER = 'ATTACK23DMARKER0123456789abcdef';
const WIDGET = '0x4AAAAAAAATTACK23D';
const MINT_PERMISSIONS = ['com.cloudflare.api.token.create', 'com.cloudflare.api.token.delete'];

describe('attack23d: revocation of what agents make, and operations outside the catalog', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  const hits: string[] = [];
  const ok = (res: http.ServerResponse, result: unknown) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ success: true, errors: [], messages: [], result }));
  };
  const refuse = (res: http.ServerResponse, status: number, message: string) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ success: false, errors: [{ code: 10000, message }], messages: [], result: null }),
    );
  };

  /** A DELETE of this token id is held at the edge until `release` (then done at the fake). */
  let hold: { tokenId: string; seen: () => void; gate: Promise<void> } | null = null;
  /** Rolling these tokens' values (the fake has no roll): a new token of the same power replaces each. */
  const rollable = new Map<string, { userId: string; permissions: string[] }>();
  /** A Turnstile widget as Cloudflare keeps it: a rotation within the grace period is refused. */
  const widget = { secret: 'initial-secret', grace: false, rotations: 0 };
  /** An existing token a CI pipeline uses (edge-only): rolled, then deleted by the agent. */
  const ci = { deleted: false, rolls: 0 };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      const method = req.method ?? '';
      const short = `${method} ${path.replace(/^\/client\/v4/, '').replace(/^\/(accounts|zones)\/[^/]+/, '')}`;
      const body = () =>
        new Promise<Record<string, unknown>>((resolve) => {
          let raw = '';
          req.on('data', (c: Buffer) => (raw += c.toString()));
          req.on('end', () => resolve(raw ? (JSON.parse(raw) as Record<string, unknown>) : {}));
        });
      const held = hold;
      if (held && method === 'DELETE' && path.endsWith(`/user/tokens/${held.tokenId}`)) {
        hits.push(short);
        req.resume();
        held.seen();
        void held.gate.then(() => {
          cf.state.deleteToken(held.tokenId);
          ok(res, { id: held.tokenId });
        });
        return true;
      }
      const roll = /\/user\/tokens\/([^/]+)\/value$/.exec(path);
      if (method === 'PUT' && roll?.[1] && rollable.has(roll[1])) {
        hits.push(short);
        req.resume();
        // Only the token's own live value may roll it (as Cloudflare: a dead token gets a 401).
        const bearer = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
        if (cf.state.findTokenByValue(bearer)?.id !== roll[1]) {
          refuse(res, 401, 'Invalid API Token');
          return true;
        }
        const { userId, permissions } = rollable.get(roll[1])!;
        const fresh = cf.state.createUserToken({ userId, permissions });
        cf.state.deleteToken(roll[1]);
        ok(res, fresh.value);
        return true;
      }
      const answers: Array<[string, RegExp, () => void]> = [
        // Turnstile: "secrets cannot be rotated again during the grace period" (two hours unless
        // invalidate_immediately, which defaults to false).
        [
          'POST',
          /\/challenges\/widgets\/[^/]+\/rotate_secret$/,
          () =>
            void body().then((b) => {
              if (widget.grace) return refuse(res, 400, 'secret cannot be rotated during the grace period');
              widget.rotations += 1;
              widget.secret = `${MARKER}-turnstile-${widget.rotations}`;
              widget.grace = b.invalidate_immediately !== true;
              ok(res, { sitekey: WIDGET, name: 'login', mode: 'managed', secret: widget.secret });
            }),
        ],
        // An existing key (a person's): a PUT by its name answers the listing, every key's value.
        ['PUT', /\/images\/v1\/keys\/[^/]+$/, () => ok(res, { keys: [{ name: 'prod', value: MARKER }] })],
        ['DELETE', /\/images\/v1\/keys\/[^/]+$/, () => ok(res, { keys: [] })],
        [
          'PUT',
          /^\/client\/v4\/user\/tokens\/ci-token\/value$/,
          () => {
            if (ci.deleted) return refuse(res, 404, 'Invalid token');
            ci.rolls += 1;
            ok(res, `${MARKER}-ci-${ci.rolls}`);
          },
        ],
        [
          'DELETE',
          /^\/client\/v4\/user\/tokens\/ci-token$/,
          () => {
            ci.deleted = true;
            ok(res, { id: 'ci-token' });
          },
        ],
        // logpush_logpush_job_response_collection, per dataset.
        [
          'GET',
          /\/logpush\/datasets\/[^/]+\/jobs$/,
          () =>
            ok(res, [
              {
                id: 1,
                dataset: 'http_requests',
                destination_conf: `r2://logs/{DATE}?account-id=a&access-key-id=AK&secret-access-key=${MARKER}`,
              },
            ]),
        ],
        // load-balancing_monitor: the headers sent to an origin behind Access.
        [
          'GET',
          /\/load_balancers\/monitors$/,
          () =>
            ok(res, [
              {
                id: 'm1',
                type: 'https',
                path: '/health',
                header: {
                  Host: ['origin.example'],
                  'CF-Access-Client-Id': ['cid.access'],
                  'CF-Access-Client-Secret': [MARKER],
                },
              },
            ]),
        ],
        [
          'POST',
          /\/access\/certificates$/,
          () => ok(res, { id: 'ac1', name: 'agent-ca', fingerprint: 'MD5 x' }),
        ],
        ['POST', /\/mtls_certificates$/, () => ok(res, { id: 'mt1', ca: true, name: 'agent-ca' })],
        [
          'PUT',
          /\/certificate_authorities\/hostname_associations$/,
          () => ok(res, { hostnames: ['api.example'] }),
        ],
        ['POST', /^\/client\/v4\/certificates$/, () => ok(res, { id: 'oc1', certificate: '-----BEGIN' })],
        [
          'POST',
          /\/members$/,
          () => ok(res, { id: 'mem1', status: 'pending', user: { email: 'x@agent.example' } }),
        ],
      ];
      const hit = answers.find(([m, re]) => m === method && re.test(path));
      if (!hit) return false;
      hits.push(short);
      if (method !== 'POST' || !/rotate_secret$/.test(path)) req.resume();
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
  const tryEach = (requests: ReadonlyArray<Record<string, unknown>>) => requestsInTurn(requests);

  /** Code that creates a user token and returns its answer (`result`), or the error code. */
  const mintCode = (name: string) =>
    `async () => { try { const r = await cloudflare.request({ method: 'POST', path: '/user/tokens', body: { name: ${JSON.stringify(name)}, policies: [{ permission_groups: [{ name: '#zone:read' }] }] } }); return r.result; } catch (e) { return { code: e.code, message: e.message }; } }`;

  it('revokes on offboarding a token the agent minted while the offboarding was running', async () => {
    // Offboarding reads the account's live minted credentials, revokes them one by one, deletes
    // the vaulted token and only then revokes the connected account. Until that last step the
    // account is active: an execution (running already, or started meanwhile with the tenant's
    // API key) passes `admit` and mints, and its record is written after the list was read.
    const tn = await tenant('racer', MINT_PERMISSIONS);
    await setPolicy(tn.auth, { credential_operations: { allow: ['api_tokens'] } });
    const first = (await t.execute(tn.apiKey, 'racer', mintCode('before'))).json().data as { id: string };
    expect(first.id).toMatch(/\S/);
    t.secrets.add(String([...cf.state.tokens.values()].find((x) => x.id === first.id)?.value));

    let release!: () => void;
    let seen!: () => void;
    const deleteSeen = new Promise<void>((resolve) => (seen = resolve));
    hold = { tokenId: first.id, seen, gate: new Promise<void>((resolve) => (release = resolve)) };
    try {
      const running = offboard(tn.auth, 'racer');
      await deleteSeen;
      // Offboarding is under way (it is revoking the first token): the agent mints another.
      const during = await t.execute(tn.apiKey, 'racer', mintCode('during'));
      release();
      const off = await running;
      expect(off.statusCode, off.body).toBe(200);
      // Refused outright once the account is revoked (403), or made and revoked as it is recorded.
      const second = (during.json().data ?? { code: during.json().error?.code }) as {
        id?: string;
        code?: string;
      };
      expect(cf.state.getToken(first.id)).toBeUndefined();
      expect(cf.state.getToken(tn.token.id)).toBeUndefined();
      // Secure: either the mint was refused, or what it made was revoked with the rest.
      const survivor = second.id ? cf.state.getToken(second.id) : undefined;
      expect(
        survivor,
        `token ${second.id ?? second.code} minted during offboarding is still live`,
      ).toBeUndefined();
    } finally {
      release();
      hold = null;
    }
  });

  it('revokes on offboarding what the agent made even if it deleted the vaulted token itself', async () => {
    // api_tokens allowed (and revealed): DELETE /user/tokens/{id} is open for every token,
    // the vaulted one included (the agent finds its id at /user/tokens/verify). Offboarding then
    // revokes "with the credential that made it" — a dead credential: every revocation is a 401
    // and the token the agent holds outlives it.
    const tn = await tenant('selfdelete', MINT_PERMISSIONS);
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    const res = await t.execute(
      tn.apiKey,
      'selfdelete',
      `async () => {
        const kept = (await cloudflare.request({ method: 'POST', path: '/user/tokens', body: { name: 'kept', policies: [{ permission_groups: [{ name: '#zone:read' }] }] } })).result;
        const self = (await cloudflare.request({ method: 'GET', path: '/user/tokens/verify' })).result;
        let deleted;
        try { deleted = (await cloudflare.request({ method: 'DELETE', path: '/user/tokens/' + self.id })).status; } catch (e) { deleted = e.code; }
        return { kept: { id: kept.id }, self: self.id, deleted };
      }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as { kept: { id: string }; self: string; deleted: number | string };
    expect(data.self).toBe(tn.token.id);
    // Fixed: the vaulted token itself is not the agent's to delete, whatever credential_operations allows.
    expect(data.deleted).toBe('policy_denied');
    expect(cf.state.getToken(tn.token.id)).toBeDefined();
    const off = await offboard(tn.auth, 'selfdelete');
    expect(off.statusCode, off.body).toBe(200);
    expect(
      cf.state.getToken(data.kept.id),
      `token the agent minted and saw outlives offboarding: ${JSON.stringify(off.json().revoked_connected_accounts)}`,
    ).toBeUndefined();
  });

  it("revokes on offboarding the vaulted token's value the agent rolled and saw (PUT /user/tokens/{own id}/value)", async () => {
    // The same, rolling instead of deleting: the agent holds a live value with all the vaulted
    // token's permissions; Warden's copy is dead, so offboarding can neither re-roll nor delete it.
    const tn = await tenant('selfroll', MINT_PERMISSIONS);
    rollable.set(tn.token.id, { userId: tn.userId, permissions: tn.tokenPermissions });
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    const res = await t.execute(
      tn.apiKey,
      'selfroll',
      `async () => {
        const self = (await cloudflare.request({ method: 'GET', path: '/user/tokens/verify' })).result;
        try { return (await cloudflare.request({ method: 'PUT', path: '/user/tokens/' + self.id + '/value', body: {} })).result; } catch (e) { return { code: e.code, message: e.message }; }
      }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    // Fixed: the agent may not roll the vaulted token, so it never holds a value of it.
    expect(res.json().data).toMatchObject({
      code: 'policy_denied',
      message: expect.stringContaining('offboarding'),
    });
    const off = await offboard(tn.auth, 'selfroll');
    expect(off.statusCode, off.body).toBe(200);
    expect(cf.state.getToken(tn.token.id), 'the vaulted token is deleted by offboarding').toBeUndefined();
  });

  it('does not make offboarding delete an Images key the agent never saw, past a deny rule on deleting keys', async () => {
    // images_signing_keys allowed, secrets not revealed, and a tenant rule that keeps keys from
    // being deleted. A PUT by the name of a person's existing key (`prod`) is recorded as
    // 'self' whatever the agent saw; offboarding (no policy) then DELETEs it, and Cloudflare
    // generates a new default key: every signed Images URL of the site breaks. The 'again'
    // revocations are recorded only for values the agent saw, for exactly this reason.
    const tn = await tenant('imagesdeny');
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['images_signing_keys'] },
      rules: [
        { effect: 'deny', methods: ['DELETE'], path: '/accounts/*/images/v1/keys/**', name: 'keep-keys' },
      ],
    });
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'imagesdeny',
      tryEach([
        { method: 'PUT', path: `/accounts/${tn.accountId}/images/v1/keys/prod` },
        { method: 'DELETE', path: `/accounts/${tn.accountId}/images/v1/keys/prod` },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    expect(data[0]).toMatch(/^sent 200 .*withheld by Warden/);
    expect(data[0]).not.toContain(MARKER);
    expect(data[1]).toBe('policy_denied');
    const off = await offboard(tn.auth, 'imagesdeny');
    expect(off.statusCode, off.body).toBe(200);
    expect(hits, 'a key deleted that the agent never saw and the policy keeps').not.toContain(
      'DELETE /images/v1/keys/prod',
    );
  });

  it('reports, and keeps on the record, a Turnstile secret the agent rotated and saw that Cloudflare will not rotate again within its grace period', async () => {
    // The agent rotates with the default body (invalidate_immediately: false): the old secret
    // stays valid for two hours and, per the document, "secrets cannot be rotated again during
    // the grace period". Offboarding's rotation is refused: a documented limit (README, Policy),
    // which offboarding must report rather than call revoked.
    const tn = await tenant('turnstile');
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['service_secrets'], reveal_secrets: ['service_secrets'] },
    });
    const res = await t.execute(
      tn.apiKey,
      'turnstile',
      `async () => (await cloudflare.request({ method: 'POST', path: '/accounts/${tn.accountId}/challenges/widgets/${WIDGET}/rotate_secret', body: {} })).result.secret`,
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().data).toBe(widget.secret);
    const off = await offboard(tn.auth, 'turnstile');
    expect(off.statusCode, off.body).toBe(200);
    expect(off.json().revoked_connected_accounts[0].upstream.detail).toContain(
      'credentials it created through Warden: 0 of 1 revoked',
    );
    const { rows } = await sql<{ revoked_at: Date | null; last_error: string | null }>`
      select revoked_at, last_error from minted_credentials where tenant_id = ${tn.tenantId}`.execute(
      t.container.db.kysely,
    );
    expect(rows).toEqual([
      { revoked_at: null, last_error: expect.stringContaining('cannot be rotated during the grace period') },
    ]);
  });

  it('withholds the origin credentials open reads show (Logpush jobs listed per dataset, Load Balancing monitor headers)', async () => {
    const tn = await tenant('openreads');
    const requests = [
      { method: 'GET', path: `/zones/${tn.zoneId}/logpush/datasets/http_requests/jobs` },
      { method: 'GET', path: `/accounts/${tn.accountId}/logpush/datasets/audit_logs/jobs` },
      { method: 'GET', path: `/accounts/${tn.accountId}/load_balancers/monitors` },
    ];
    const res = await t.execute(tn.apiKey, 'openreads', tryEach(requests));
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    const leaked = requests
      .filter((_, i) => (data[i] ?? '').includes(MARKER))
      .map((r) => `${r.method} ${r.path.replace(/^\/(accounts|zones)\/[^/]+/, '')}`);
    expect(leaked, 'credentials that reached the agent under the default policy').toEqual([]);
  });

  it('refuses by default what gives the agent a credential of its own outside the catalog (its CA trusted for mTLS, an Origin CA certificate, an account member)', async () => {
    const tn = await tenant('outside');
    const a = `/accounts/${tn.accountId}`;
    const z = `/zones/${tn.zoneId}`;
    const ca = '-----BEGIN CERTIFICATE-----\\nMIIB…agent CA…\\n-----END CERTIFICATE-----';
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'outside',
      tryEach([
        {
          method: 'POST',
          path: `${a}/access/certificates`,
          body: { name: 'agent-ca', certificate: ca, associated_hostnames: ['admin.outside.example'] },
        },
        {
          method: 'POST',
          path: `${a}/mtls_certificates`,
          body: { name: 'agent-ca', ca: true, certificates: ca },
        },
        {
          method: 'PUT',
          path: `${z}/certificate_authorities/hostname_associations`,
          body: { mtls_certificate_id: 'mt1', hostnames: ['api.outside.example'] },
        },
        {
          method: 'POST',
          path: '/certificates',
          body: {
            csr: '-----BEGIN CERTIFICATE REQUEST-----',
            hostnames: ['*.outside.example'],
            request_type: 'origin-ecc',
            requested_validity: 5475,
          },
        },
        {
          method: 'POST',
          path: `${a}/members`,
          body: { email: 'x@agent.example', roles: ['05784afa30c1afe1440e79d9351c7430'] },
        },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(hits, 'sent to Cloudflare under the default policy').toEqual([]);
  });

  it('HELD a token the agent rolled, saw and then deleted is gone: offboarding re-rolls once, counts the 404 as revoked, and sends nothing else; another tenant offboarding the same identifier touches none of it', async () => {
    const tn = await tenant('rollthendelete');
    const other = await tenant('rollthendelete-other');
    // The other tenant's identity has the same identifier name.
    await t.connect(other.apiKey, 'rollthendelete', other.token.value);
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'rollthendelete',
      tryEach([
        { method: 'PUT', path: '/user/tokens/ci-token/value', body: {} },
        { method: 'DELETE', path: '/user/tokens/ci-token' },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect((res.json().data as string[])[0]).toContain(`${MARKER}-ci-1`);
    expect(hits).toEqual(['PUT /user/tokens/ci-token/value', 'DELETE /user/tokens/ci-token']);
    hits.length = 0;
    const otherOff = await offboard(other.auth, 'rollthendelete');
    expect(otherOff.statusCode, otherOff.body).toBe(200);
    expect(hits, "the other tenant's offboarding").toEqual([]);
    const off = await offboard(tn.auth, 'rollthendelete');
    expect(off.statusCode, off.body).toBe(200);
    expect(hits).toEqual(['PUT /user/tokens/ci-token/value']);
    expect(ci.rolls).toBe(1);
    expect(off.json().revoked_connected_accounts[0].upstream.detail).toContain(
      'credentials it created through Warden: 1 of 1 revoked',
    );
  });
});

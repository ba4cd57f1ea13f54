import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBHOOK_SIGNATURE_HEADER, verifyWebhookSignature } from '@warden/audit';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { eventually, startReceiver } from './test-support/http-receiver.ts';
import { REPO_ROOT, SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import { fakeZoneUser } from './test-support/fake-user.ts';
import type { TestApp } from './test-support/test-app.ts';

const run = promisify(execFile);
const PERMISSIONS = [
  'com.cloudflare.api.user.read',
  '#organization:read',
  '#zone:read',
  '#dns_records:read',
  '#dns_records:edit',
];

describe('audit trail, SIEM delivery and tenant webhooks', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let tenant: { tenantId: string; apiKey: string };
  let zoneId: string;
  let userId: string;
  let user: ReturnType<typeof fakeZoneUser>;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      DELIVERY_ALLOW_INSECURE: 'true',
      OUTBOX_INTERVAL_MS: '200',
      SANDBOX_TIMEOUT_MS: '1500',
    });
    tenant = await t.createTenant('Audit tenant');
    user = fakeZoneUser(cf, 'Audit');
    ({ userId, zoneId } = user);
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  const auth = () => ({ authorization: `Bearer ${tenant.apiKey}` });
  const connect = (identifier: string, permissions = PERMISSIONS) =>
    user.connect(t, tenant.apiKey, identifier, permissions);
  async function eventsOf(executionId: string) {
    const res = await t.app.inject({
      method: 'GET',
      url: `/api/v1/audit/events?execution_id=${executionId}`,
      headers: auth(),
    });
    return res.json().events as Array<
      Record<string, unknown> & {
        kind: string;
        outcome: string;
        seq: number;
        upstream: { status: number | null } | null;
      }
    >;
  }

  it('records each call and upstream request with its outcome: success, error, refused, timeout', async () => {
    await connect('outcomes');
    const ok = await t.execute(
      tenant.apiKey,
      'outcomes',
      `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`,
    );
    expect((await eventsOf(ok.json().execution_id)).map((e) => [e.kind, e.outcome])).toEqual(
      expect.arrayContaining([
        ['tool_call', 'success'],
        ['upstream_request', 'success'],
      ]),
    );
    const notFound = await t.execute(
      tenant.apiKey,
      'outcomes',
      `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${'0'.repeat(32)}' })).status`,
    );
    const nf = await eventsOf(notFound.json().execution_id);
    // Write-ahead: the intent was committed before the request left, and the outcome names it.
    const intent = nf.find((e) => e.kind === 'upstream_request' && e.outcome === 'pending');
    expect(intent).toMatchObject({ upstream: { status: null }, request_bytes: 0 });
    const outcome = nf.find((e) => e.kind === 'upstream_request' && e.outcome !== 'pending');
    expect(outcome).toMatchObject({ outcome: 'error', upstream: { status: 404 }, intent_id: intent?.id });
    expect((outcome?.seq as number) > (intent?.seq as number)).toBe(true);

    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/identities/outcomes/policy',
      headers: auth(),
      payload: { read_only: true },
    });
    const refused = await t.execute(
      tenant.apiKey,
      'outcomes',
      `async () => cloudflare.request({ method: 'DELETE', path: '/zones/${zoneId}' })`,
    );
    const rf = await eventsOf(refused.json().execution_id);
    expect(rf.map((e) => [e.kind, e.outcome])).toEqual(
      expect.arrayContaining([
        ['tool_call', 'refused'],
        ['upstream_request', 'refused'],
      ]),
    );
    // A refused request was never sent: it has an outcome and no intent.
    const refusedRequests = rf.filter((e) => e.kind === 'upstream_request');
    expect(refusedRequests).toHaveLength(1);
    expect(refusedRequests[0]).toMatchObject({ outcome: 'refused', upstream: { status: null } });
    expect(refusedRequests[0]?.intent_id).toBeUndefined();

    const timeout = await t.execute(tenant.apiKey, 'outcomes', 'async () => { while (true) {} }');
    expect(timeout.json().error.code).toBe('timeout');
    expect((await eventsOf(timeout.json().execution_id))[0]).toMatchObject({
      kind: 'tool_call',
      outcome: 'timeout',
    });
  });

  it('records rate-limited requests, which never reach Cloudflare', async () => {
    const { tenantId, apiKey } = await t.createTenant('Tight budget');
    // Verifying the token on connect takes 3 requests from its user's budget (once verification
    // has found the user); the calls below take the other 2.
    await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/settings',
      headers: { authorization: `Bearer ${apiKey}` },
      payload: { budget: '5/86400' },
    });
    const user = cf.state.createUser({ email: `rl-${tenantId}@example.com` });
    cf.state.createAccount({ name: 'RL', members: [user.id] });
    const token = cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read'],
    });
    t.secrets.add(token.value);
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/connected_accounts',
      headers: { authorization: `Bearer ${apiKey}` },
      payload: { identifier: 'rl', authorization: { type: 'api_token', api_token: token.value } },
    });
    cf.clearRequests();
    const res = await t.execute(
      apiKey,
      'rl',
      "async () => { const out = []; for (let i = 0; i < 5; i++) { try { await cloudflare.request({ method: 'GET', path: '/zones' }); out.push('ok'); } catch (e) { out.push(e.code); } } return out; }",
    );
    expect(res.json().data).toEqual(['ok', 'ok', 'rate_limited', 'rate_limited', 'rate_limited']);
    expect(cf.requests().filter((r) => r.path === '/zones')).toHaveLength(2);
    const events = await t.app.inject({
      method: 'GET',
      url: `/api/v1/audit/events?execution_id=${res.json().execution_id}&outcome=rate_limited`,
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(events.json().events).toHaveLength(3);
  });

  it('refuses execution with 503, before anything reaches Cloudflare, while the audit store cannot be written', async () => {
    await connect('outage');
    cf.clearRequests();
    await sql`alter table audit_events rename to audit_events_offline`.execute(t.db.db.kysely);
    try {
      const res = await t.execute(
        tenant.apiKey,
        'outage',
        `async () => cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })`,
      );
      expect(res.statusCode).toBe(503);
      expect(res.json().error.code).toBe('unavailable');
      expect(cf.requests()).toEqual([]);
    } finally {
      await sql`alter table audit_events_offline rename to audit_events`.execute(t.db.db.kysely);
    }
    const after = await t.execute(
      tenant.apiKey,
      'outage',
      `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`,
    );
    expect(after.json().data).toBe(true);
  });

  it('`warden audit verify` passes on the untouched trail and catches an edited row', async () => {
    await connect('verify');
    const res = await t.execute(
      tenant.apiKey,
      'verify',
      `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`,
    );
    const cli = path.join(REPO_ROOT, 'services/connector/bin/warden.js');
    // The same DATA_DIR as the service: the verifier trusts the checkpoint key it signs with.
    const env = {
      ...process.env,
      DATABASE_URL: t.db.url,
      DATA_DIR: t.dataDir,
      LOG_LEVEL: 'silent',
      REDIS_URL: '',
    };
    // Reads only: the tenant's trail, head and anchors and the partitions are the same, to the
    // byte, after the verification.
    const snapshot = async () =>
      (
        await sql<{ digest: string }>`select md5(concat_ws('|',
          (select string_agg(e::text, ',' order by e.seq) from audit_events e where e.tenant_id = ${tenant.tenantId}),
          (select string_agg(h::text, ',') from audit_chain_heads h where h.tenant_id = ${tenant.tenantId}),
          (select string_agg(a::text, ',' order by a.from_seq) from audit_chain_anchors a where a.tenant_id = ${tenant.tenantId}),
          (select string_agg(c.relname, ',' order by c.relname) from pg_class c where c.relname like 'audit_events%'))) as digest`.execute(
          t.db.db.kysely,
        )
      ).rows[0]?.digest;
    const before = await snapshot();
    const good = await run(process.execPath, [cli, 'audit', 'verify', '--tenant', tenant.tenantId], { env });
    expect(JSON.parse(good.stdout)).toMatchObject({ ok: true });
    expect(await snapshot()).toBe(before);
    const [event] = await eventsOf(res.json().execution_id);
    await sql`update audit_events set outcome = 'error' where id = ${event?.id as string}`.execute(
      t.db.db.kysely,
    );
    const bad = await run(process.execPath, [cli, 'audit', 'verify', '--tenant', tenant.tenantId], {
      env,
    }).catch((e: { code: number; stdout: string }) => e);
    expect(bad).toMatchObject({ code: 1 });
    expect(JSON.parse((bad as { stdout: string }).stdout).tenants[0].problems).toContainEqual(
      expect.objectContaining({ kind: 'edited', seq: event?.seq }),
    );
    await sql`update audit_events set outcome = ${event?.outcome as string} where id = ${event?.id as string}`.execute(
      t.db.db.kysely,
    );
  });

  it('delivers every event to a SIEM webhook at least once, through a receiver outage', async () => {
    const receiver = await startReceiver({ failFirst: 3 });
    try {
      const created = await t.app.inject({
        method: 'POST',
        url: '/api/v1/audit/sinks',
        headers: auth(),
        payload: {
          name: 'siem',
          config: { type: 'webhook', url: receiver.url, secret: 'siem-signing-secret-0123456789' },
        },
      });
      expect(created.statusCode).toBe(201);
      const sink = created.json().sink;
      expect(JSON.stringify(sink)).not.toContain('siem-signing-secret');
      await connect('siem-user');
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await t.execute(
          tenant.apiKey,
          'siem-user',
          `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`,
        );
        ids.push(...(await eventsOf(res.json().execution_id)).map((e) => e.id as string));
      }
      const received = await eventually(
        () => {
          const got = new Set(
            receiver.requests
              .filter((r) => r.status === 200)
              .flatMap((r) => (JSON.parse(r.body).events as Array<{ id: string }>).map((e) => e.id)),
          );
          return ids.every((id) => got.has(id)) ? got : null;
        },
        30_000,
        'every event at the receiver',
      );
      expect(received.size).toBeGreaterThanOrEqual(ids.length);
      expect(receiver.requests.filter((r) => r.status === 500)).toHaveLength(3);
      for (const r of receiver.requests) {
        expect(
          verifyWebhookSignature(
            'siem-signing-secret-0123456789',
            r.headers[WEBHOOK_SIGNATURE_HEADER] as string,
            r.body,
          ),
        ).toBe(true);
      }
      const deliveries = await t.app.inject({
        method: 'GET',
        url: `/api/v1/audit/sinks/${sink.id}/deliveries`,
        headers: auth(),
      });
      expect(
        deliveries
          .json()
          .deliveries.some(
            (d: { attempts: number; status: string }) => d.status === 'delivered' && d.attempts > 1,
          ),
      ).toBe(true);
      await t.app.inject({ method: 'DELETE', url: `/api/v1/audit/sinks/${sink.id}`, headers: auth() });
    } finally {
      await receiver.close();
    }
  });

  it('sends signed connected_account webhooks: created, updated, status_updated, deleted', async () => {
    const receiver = await startReceiver({ failFirst: 1 });
    try {
      const set = await t.app.inject({
        method: 'PUT',
        url: '/api/v1/webhooks',
        headers: auth(),
        payload: { url: receiver.url },
      });
      expect(set.statusCode).toBe(200);
      const secret = set.json().secret as string;
      const { id } = await connect('hooked');
      const next = cf.state.createUserToken({ userId, permissions: PERMISSIONS });
      t.secrets.add(next.value);
      await t.app.inject({
        method: 'PUT',
        url: `/api/v1/connected_accounts/${id}`,
        headers: auth(),
        payload: { authorization: { type: 'api_token', api_token: next.value } },
      });
      // Cloudflare stops accepting the token: the next 401 is re-verified and the account marked INVALID.
      cf.state.setTokenStatus(next.id, 'disabled');
      await t.execute(
        tenant.apiKey,
        'hooked',
        `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).status`,
      );
      await eventually(
        async () => {
          const res = await t.app.inject({
            method: 'GET',
            url: `/api/v1/connected_accounts/${id}`,
            headers: auth(),
          });
          return res.json().connected_account.status === 'INVALID';
        },
        10_000,
        'the account to be marked INVALID',
      );
      await t.app.inject({ method: 'DELETE', url: `/api/v1/connected_accounts/${id}`, headers: auth() });
      const types = await eventually(
        () => {
          const events = receiver.requests
            .filter((r) => r.status === 200)
            .flatMap(
              (r) =>
                JSON.parse(r.body).events as Array<{
                  type: string;
                  data: { connected_account: { id: string } };
                }>,
            )
            .filter((e) => e.data.connected_account.id === id);
          const seen = events.map((e) => e.type);
          return [
            'connected_account.created',
            'connected_account.updated',
            'connected_account.status_updated',
            'connected_account.deleted',
          ].every((x) => seen.includes(x))
            ? seen
            : null;
        },
        30_000,
        'all four webhook events',
      );
      expect(types).toContain('connected_account.deleted');
      for (const r of receiver.requests) {
        expect(verifyWebhookSignature(secret, r.headers[WEBHOOK_SIGNATURE_HEADER] as string, r.body)).toBe(
          true,
        );
        expect(r.body).not.toContain(next.value);
      }
    } finally {
      await t.app.inject({ method: 'DELETE', url: '/api/v1/webhooks', headers: auth() });
      await receiver.close();
    }
  });

  it('exports NDJSON, OCSF and CEF for a time range', async () => {
    const from = new Date(Date.now() - 3600_000).toISOString();
    const to = new Date(Date.now() + 60_000).toISOString();
    for (const format of ['ndjson', 'ocsf', 'cef'] as const) {
      const res = await t.app.inject({
        method: 'GET',
        url: `/api/v1/audit/export?from=${from}&to=${to}&format=${format}`,
        headers: auth(),
      });
      expect(res.statusCode).toBe(200);
      const lines = res.body.trim().split('\n');
      expect(lines.length).toBeGreaterThan(5);
      if (format === 'cef') expect(lines.every((l) => l.startsWith('CEF:0|Warden|'))).toBe(true);
      else for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
      if (format === 'ocsf') expect(JSON.parse(lines[0] as string)).toMatchObject({ class_uid: 6003 });
    }
    const bad = await t.app.inject({
      method: 'GET',
      url: `/api/v1/audit/export?from=${to}&to=${from}`,
      headers: auth(),
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.field).toBe('to');
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '@warden/audit';
import { noopLogger } from '@warden/core';
import { createAuditMaintenance } from '@warden/tools';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { eventually } from './test-support/http-receiver.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import { fakeZoneUser } from './test-support/fake-user.ts';
import type { TestApp } from './test-support/test-app.ts';

const PERMISSIONS = [
  'com.cloudflare.api.user.read',
  '#organization:read',
  '#zone:read',
  '#dns_records:read',
  '#dns_records:edit',
];

interface Event {
  id: string;
  seq: number;
  kind: string;
  action: string;
  outcome: string;
  identifier: string | null;
  execution_id: string | null;
  intent_id?: string;
  caller: { type: string; id: string | null };
  upstream: { method: string; path: string; status: number | null } | null;
  error: { code: string; message: string } | null;
  details?: Record<string, unknown>;
}

describe('audit guarantees: nothing unrecorded, any string storable, no credential echoed, every change attributed', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let tenant: { tenantId: string; apiKey: string };
  let userId: string;
  let user: ReturnType<typeof fakeZoneUser>;
  let zoneId: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      SANDBOX_TIMEOUT_MS: '20000',
      // Sinks and webhooks on loopback (their records are what is tested, not deliveries).
      DELIVERY_ALLOW_INSECURE: 'true',
    });
    tenant = await t.createTenant('Guarantees');
    user = fakeZoneUser(cf, 'Guarantees');
    ({ userId, zoneId } = user);
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  const auth = () => ({ authorization: `Bearer ${tenant.apiKey}` });
  const connect = (identifier: string) => user.connect(t, tenant.apiKey, identifier, PERMISSIONS);
  async function allEvents(query: Record<string, string>): Promise<Event[]> {
    const out: Event[] = [];
    let pageToken: string | null = null;
    do {
      const params = new URLSearchParams({ ...query, page_size: '100' });
      if (pageToken) params.set('page_token', pageToken);
      const res = await t.app.inject({
        method: 'GET',
        url: `/api/v1/audit/events?${params}`,
        headers: auth(),
      });
      expect(res.statusCode, res.body).toBe(200);
      const page = res.json() as { events: Event[]; next_page_token: string | null };
      out.push(...page.events);
      pageToken = page.next_page_token;
    } while (pageToken);
    return out;
  }
  const exportLines = (format: string) => t.auditExport(tenant.apiKey, format);

  it('a NUL byte in one call never keeps another call, or its own upstream requests, out of the trail', async () => {
    await connect('victim');
    await connect('nul');
    cf.clearRequests();
    const victims = Array.from({ length: 40 }, () =>
      t.execute(
        tenant.apiKey,
        'victim',
        `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`,
      ),
    );
    const poisoners = Array.from({ length: 40 }, (_, i) =>
      t.execute(
        tenant.apiKey,
        'nul',
        // A NUL in the error and in the code (a comment); agent run ids are ids and refuse it.
        `async () => { /* \u0000 */ await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' }); throw new Error('done\\u0000${i}') }`,
      ),
    );
    const [victimResults, poisonResults] = await Promise.all([Promise.all(victims), Promise.all(poisoners)]);
    for (const res of victimResults) {
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().data).toBe(true);
    }
    for (const res of poisonResults) {
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().error.code).toBe('execution_error');
    }
    const reached = cf.requests().filter((r) => r.path === `/zones/${zoneId}`);
    expect(reached).toHaveLength(80);
    // Every request Cloudflare received has its intent and its outcome in the trail.
    for (const identifier of ['victim', 'nul']) {
      const events = await allEvents({ identifier, action: 'cloudflare.request' });
      const intents = events.filter((e) => e.outcome === 'pending');
      const outcomes = events.filter((e) => e.outcome !== 'pending');
      expect(intents).toHaveLength(40);
      expect(outcomes).toHaveLength(40);
      expect(new Set(outcomes.map((e) => e.intent_id))).toEqual(new Set(intents.map((e) => e.id)));
      expect(outcomes.every((e) => e.outcome === 'success' && e.upstream?.status === 200)).toBe(true);
    }
    const calls = await allEvents({ identifier: 'nul', kind: 'tool_call' });
    expect(calls).toHaveLength(40);
    expect(calls.every((e) => e.error?.message.includes('done'))).toBe(true);
    expect((await verifyChain(t.db.db.kysely, tenant.tenantId)).ok).toBe(true);
  }, 120_000);

  it('never lets a credential Cloudflare echoes back reach a result, an error, the trail or an export', async () => {
    const { token } = await connect('echo');
    cf.faults.echoCredentialNext(2);
    const res = await t.execute(
      tenant.apiKey,
      'echo',
      `async () => { const r = await cloudflare.request({ method: 'GET', path: '/zones' }); return r; }`,
    );
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain(token.value);
    expect(res.body).not.toContain(Buffer.from(token.value).toString('base64'));
    expect(res.body).toContain('[REDACTED]');
    const thrown = await t.execute(
      tenant.apiKey,
      'echo',
      `async () => { const r = await cloudflare.request({ method: 'GET', path: '/zones' }); throw new Error(JSON.stringify(r.errors)); }`,
    );
    expect(thrown.body).not.toContain(token.value);
    expect(thrown.json().error.message).toContain('[REDACTED]');
    const events = await allEvents({ identifier: 'echo' });
    expect(events.some((e) => e.error?.message.includes('[REDACTED]'))).toBe(true);
    for (const format of ['ndjson', 'ocsf', 'cef']) {
      const body = await exportLines(format);
      expect(body).not.toContain(token.value);
      expect(body).not.toContain(Buffer.from(token.value).toString('base64'));
    }
  });

  it('records every lifecycle change with its actor, in the trail and in all three export formats', async () => {
    const admin = { authorization: `Bearer ${t.adminToken}` };
    const key = await t.app.inject({
      method: 'POST',
      url: `/admin/v1/tenants/${tenant.tenantId}/api_keys`,
      headers: admin,
    });
    expect(key.statusCode).toBe(201);
    t.secrets.add(key.json().api_key);
    await t.app.inject({
      method: 'DELETE',
      url: `/admin/v1/tenants/${tenant.tenantId}/api_keys/${key.json().api_key_id}`,
      headers: admin,
    });
    const { id: accountId } = await connect('lifecycle');
    const rotated = cf.state.createUserToken({ userId, permissions: PERMISSIONS });
    t.secrets.add(rotated.value);
    expect(
      (
        await t.app.inject({
          method: 'PUT',
          url: `/api/v1/connected_accounts/${accountId}`,
          headers: auth(),
          payload: { authorization: { type: 'api_token', api_token: rotated.value } },
        })
      ).statusCode,
    ).toBe(200);
    const minted = await t.app.inject({
      method: 'POST',
      url: '/api/v1/mcp/tokens',
      headers: auth(),
      payload: { identifier: 'lifecycle', expiry: '1h' },
    });
    t.secrets.add(minted.json().token);
    await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/mcp/tokens/${minted.json().token_id}`,
      headers: auth(),
    });
    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: auth(),
      payload: { deny_writes_by_default: true },
    });
    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/identities/lifecycle/policy',
      headers: auth(),
      payload: { read_only: true },
    });
    await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/settings',
      headers: auth(),
      payload: { budget: '600/300' },
    });
    // Where the trail goes: a SIEM sink and the tenant's webhook, added and removed.
    const sinkSecret = 'sink-signing-secret-lifecycle-0001';
    const hookSecret = 'hook-signing-secret-lifecycle-0001';
    t.secrets.add(sinkSecret);
    t.secrets.add(hookSecret);
    const sink = await t.app.inject({
      method: 'POST',
      url: '/api/v1/audit/sinks',
      headers: auth(),
      payload: {
        name: 'SIEM',
        config: { type: 'webhook', url: 'http://127.0.0.1:9/hook?token=in-the-query', secret: sinkSecret },
      },
    });
    expect(sink.statusCode, sink.body).toBe(201);
    const sinkId = (sink.json() as { sink: { id: string } }).sink.id;
    expect(
      (await t.app.inject({ method: 'DELETE', url: `/api/v1/audit/sinks/${sinkId}`, headers: auth() }))
        .statusCode,
    ).toBe(204);
    const webhook = { url: 'http://127.0.0.1:9/account-events', secret: hookSecret };
    for (let i = 0; i < 2; i++) {
      const set = await t.app.inject({
        method: 'PUT',
        url: '/api/v1/webhooks',
        headers: auth(),
        payload: webhook,
      });
      expect(set.statusCode, set.body).toBe(200);
    }
    expect(
      (await t.app.inject({ method: 'DELETE', url: '/api/v1/webhooks', headers: auth() })).statusCode,
    ).toBe(204);
    // Cloudflare stops accepting the rotated token: the next 401 is verified again and the
    // account marked INVALID, by the system.
    cf.state.setTokenStatus(rotated.id, 'disabled');
    await t.execute(
      tenant.apiKey,
      'lifecycle',
      `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`,
    );
    await expect
      .poll(
        async () =>
          (
            (
              await t.app.inject({
                method: 'GET',
                url: `/api/v1/connected_accounts/${accountId}`,
                headers: auth(),
              })
            ).json() as { connected_account: { status: string } }
          ).connected_account.status,
        { timeout: 10_000 },
      )
      .toBe('INVALID');
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/identities/lifecycle/offboard',
      headers: auth(),
      payload: {},
    });

    const events = await allEvents({});
    const apiKeyId = (await t.container.tenants.authenticate(tenant.apiKey))?.apiKeyId;
    const expectations: Array<[string, string, string | null]> = [
      ['tenant.created', 'admin', null],
      ['api_key.issued', 'admin', null],
      ['api_key.revoked', 'admin', null],
      ['connected_account.created', 'api_key', apiKeyId ?? null],
      ['connected_account.updated', 'api_key', apiKeyId ?? null],
      ['mcp_token.minted', 'api_key', apiKeyId ?? null],
      ['mcp_token.revoked', 'api_key', apiKeyId ?? null],
      ['policy.changed', 'api_key', apiKeyId ?? null],
      ['identity_policy.changed', 'api_key', apiKeyId ?? null],
      ['settings.changed', 'api_key', apiKeyId ?? null],
      ['audit_sink.created', 'api_key', apiKeyId ?? null],
      ['audit_sink.deleted', 'api_key', apiKeyId ?? null],
      ['webhook.created', 'api_key', apiKeyId ?? null],
      ['webhook.replaced', 'api_key', apiKeyId ?? null],
      ['webhook.deleted', 'api_key', apiKeyId ?? null],
      ['connected_account.status_updated', 'system', null],
      ['connected_account.deleted', 'api_key', apiKeyId ?? null],
      ['identity.offboard', 'api_key', apiKeyId ?? null],
    ];
    for (const [action, callerType, callerId] of expectations) {
      const event = events.find((e) => e.action === action);
      expect(event, `${action} is in the trail`).toBeDefined();
      expect(event?.caller.type, action).toBe(callerType);
      if (callerId) expect(event?.caller.id, action).toBe(callerId);
    }
    expect(events.find((e) => e.action === 'settings.changed')?.details).toEqual({
      before: { budget: null },
      after: { budget: '600/300' },
    });
    expect(events.find((e) => e.action === 'audit_sink.created')?.details).toEqual({
      sink_id: sinkId,
      type: 'webhook',
      name: 'SIEM',
      // Scheme, host and port only: a destination's path or query may carry a token.
      destination: 'http://127.0.0.1:9',
    });
    expect(events.find((e) => e.action === 'connected_account.status_updated')?.details).toMatchObject({
      status: 'INVALID',
      previous_status: 'ACTIVE',
    });
    expect(events.find((e) => e.action === 'policy.changed')?.details).toMatchObject({
      after: { policy: { deny_writes_by_default: true } },
    });
    // Verification of the rotated credential went through the gateway: intent and outcome.
    const verifications = events.filter(
      (e) => e.action === 'cloudflare.verify' && e.identifier === 'lifecycle',
    );
    expect(verifications.filter((e) => e.outcome === 'pending').length).toBeGreaterThanOrEqual(4);
    const [ndjson, ocsf, cef] = await Promise.all(['ndjson', 'ocsf', 'cef'].map(exportLines));
    for (const [action] of expectations) {
      expect(ndjson, action).toContain(`"action":"${action}"`);
      expect(ocsf, action).toContain(action);
      expect(cef, action).toContain(action);
    }
    expect(ndjson).not.toContain('in-the-query');
    expect(cef).toMatch(/act=tenant\.created .*spriv=admin/);
    expect(cef).toMatch(/act=policy\.changed .*spriv=api_key/);
    expect((await verifyChain(t.db.db.kysely, tenant.tenantId)).ok).toBe(true);
  });

  it('records a credential that no longer opens (moved or tampered with), and sends nothing upstream', async () => {
    const { id } = await connect('tampered');
    // The sealed row copied from another account: its data key and ciphertext name that row.
    const { id: otherId } = await connect('tampered-source');
    const source = await t.db.db.kysely
      .selectFrom('sealed_credentials')
      .selectAll()
      .where('connected_account_id', '=', otherId)
      .executeTakeFirstOrThrow();
    await t.db.db.kysely
      .updateTable('sealed_credentials')
      .set({
        wrapped_key: source.wrapped_key,
        iv: source.iv,
        ciphertext: source.ciphertext,
        key_id: source.key_id,
      })
      .where('connected_account_id', '=', id)
      .execute();
    t.container.envelope.cache.clear();
    cf.clearRequests();
    const res = await t.execute(
      tenant.apiKey,
      'tampered',
      `async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).success`,
    );
    expect(JSON.stringify(res.json())).toMatch(/integrity_failure|could not be decrypted/);
    expect(cf.requests()).toEqual([]);
    const records = await eventually(async () => {
      const found = (await allEvents({ action: 'sealed_secret.integrity_failure' })).filter(
        (e) => e.details?.sealed_id === id,
      );
      return found.length > 0 ? found : null;
    });
    expect(records[0]).toMatchObject({
      kind: 'lifecycle',
      outcome: 'error',
      caller: { type: 'system' },
      error: { code: 'integrity_failure' },
    });
  });

  it('closes an intent whose outcome never came as unknown, and verify reports it until then', async () => {
    // A tenant whose replica committed an intent and died before the answer came; the sweeper
    // here has no grace period, so it need not wait the real one (deadline + upstream timeout).
    const crashed = await t.createTenant('Crashed replica');
    const accountId = 'ca_gone';
    const sweeper = createAuditMaintenance({
      db: t.db.db.kysely,
      audit: t.container.audit,
      defaults: { budget: { capacity: 1200, windowSeconds: 300 }, retentionDays: 90 },
      outcomeGraceMs: 0,
      logger: noopLogger,
    });
    const [intent] = await t.container.audit.append(
      crashed.tenantId,
      [
        {
          kind: 'upstream_request',
          action: 'cloudflare.request',
          outcome: 'pending',
          execution_id: 'exe_crashed',
          identifier: 'crashed',
          caller: { type: 'api_key', id: null, client_name: null, client_version: null, ip: null },
          agent_run_id: null,
          tool_name: 'cloudflare_execute',
          connected_account_id: accountId,
          upstream: {
            method: 'DELETE',
            path_template: null,
            path: `/zones/${zoneId}`,
            status: null,
            cf_ray: null,
          },
          error: null,
          duration_ms: null,
          request_bytes: 0,
          response_bytes: null,
          code_sha256: null,
          code: null,
          body_sha256: null,
        },
      ],
      { retentionDays: 90 },
    );
    const before = await verifyChain(t.db.db.kysely, crashed.tenantId);
    expect(before.intents_without_outcome.map((i) => i.id)).toContain(intent?.id);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await sweeper.sweepUnknownOutcomes()).toBeGreaterThanOrEqual(1);
    const after = await verifyChain(t.db.db.kysely, crashed.tenantId);
    expect(after.intents_without_outcome.map((i) => i.id)).not.toContain(intent?.id);
    expect(after.unknown_outcomes).toBeGreaterThanOrEqual(1);
    const listed = await t.app.inject({
      method: 'GET',
      url: '/api/v1/audit/events?outcome=unknown',
      headers: { authorization: `Bearer ${crashed.apiKey}` },
    });
    const closed = (listed.json() as { events: Event[] }).events[0];
    expect(closed).toMatchObject({
      intent_id: intent?.id,
      caller: { type: 'system' },
      upstream: { method: 'DELETE', path: `/zones/${zoneId}` },
      error: { code: 'outcome_unknown' },
    });
    // A second pass finds nothing new.
    expect(await sweeper.sweepUnknownOutcomes()).toBe(0);
  });
});

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listCheckpoints, listPartitions, upstreamIntentRecord, verifyChain } from '@warden/audit';
import { applyDatabaseRoles } from '@warden/db';
import { createTestDatabase, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare, TestDatabase } from '@warden/testing';
import { eventually, startReceiver } from './test-support/http-receiver.ts';
import { REPO_ROOT, SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

const run = promisify(execFile);
const PERMISSIONS = ['com.cloudflare.api.user.read', '#organization:read', '#zone:read', '#dns_records:read'];

/** Roles are cluster-wide and the cluster is shared: each run gets names of its own. */
function uniqueRoles() {
  const suffix = randomBytes(5).toString('hex');
  return { appRole: `warden_app_t${suffix}`, maintenanceRole: `warden_maint_t${suffix}` };
}

describe('least privilege: the service runs as a role that can append to the audit trail but never change it', () => {
  let db: TestDatabase;
  let cf: FakeCloudflare;
  let t: TestApp;
  let app: pg.Client;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const roles = uniqueRoles();

  beforeAll(async () => {
    db = await createTestDatabase();
    // Idempotent: a second run (every upgrade runs it again) changes nothing and fails nothing.
    await applyDatabaseRoles(db.db.kysely, roles);
    await applyDatabaseRoles(db.db.kysely, roles);
    const appUrl = new URL(db.url);
    appUrl.username = roles.appRole;
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    receiver = await startReceiver();
    t = await startTestApp(
      {
        DATABASE_URL: appUrl.toString(),
        MIGRATE_ON_START: 'false',
        CLOUDFLARE_API_BASE: cf.url,
        DELIVERY_ALLOW_INSECURE: 'true',
        OUTBOX_INTERVAL_MS: '200',
        AUDIT_OUTCOME_GRACE_SECONDS: '1',
      },
      { sharedDatabase: db },
    );
    app = new pg.Client({ connectionString: appUrl.toString() });
    await app.connect();
  });
  afterAll(async () => {
    await app?.end();
    await t?.close();
    await receiver?.close();
    await cf?.close();
    await db?.drop();
    // The roles own nothing once their database is gone.
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    try {
      await admin.query(`drop role if exists "${roles.appRole}"`);
      await admin.query(`drop role if exists "${roles.maintenanceRole}"`);
    } finally {
      await admin.end();
    }
  });

  it('runs normally as the application role: appends, exports, SIEM delivery, maintenance, sweeps, checkpoints', async () => {
    const who = await app.query<{ current_user: string }>('select current_user');
    expect(who.rows[0]?.current_user).toBe(roles.appRole);
    const tenant = await t.createTenant('Least privilege');
    const auth = { authorization: `Bearer ${tenant.apiKey}` };
    const sink = await t.app.inject({
      method: 'POST',
      url: '/api/v1/audit/sinks',
      headers: auth,
      payload: {
        name: 'siem',
        config: { type: 'webhook', url: receiver.url, secret: 'least-privilege-secret-0123' },
      },
    });
    expect(sink.statusCode, sink.body).toBe(201);
    const user = cf.state.createUser({ email: 'lp@example.com' });
    const account = cf.state.createAccount({ name: 'LP Co', members: [user.id] });
    const zone = cf.state.createZone({ accountId: account.id, name: 'lp.example' });
    await t.connect(
      tenant.apiKey,
      'alice',
      cf.state.createUserToken({ userId: user.id, permissions: PERMISSIONS }).value,
    );
    const run = await t.app.inject({
      method: 'POST',
      url: '/api/v1/execute_tool',
      headers: auth,
      payload: {
        tool_name: 'cloudflare_execute',
        identifier: 'alice',
        params: {
          code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zone.id}' })).success`,
        },
      },
    });
    expect(run.statusCode, run.body).toBe(200);
    expect(run.json().data).toBe(true);
    const exported = await t.app.inject({
      method: 'GET',
      url: `/api/v1/audit/export?format=ndjson&to=${new Date(Date.now() + 60_000).toISOString()}`,
      headers: auth,
    });
    expect(exported.statusCode).toBe(200);
    expect(exported.body).toContain('"action":"cloudflare.request"');

    // A straggler in the default partition (a day no partition was made for), and a day to expire.
    const weekAgo = new Date(Date.now() - 7 * 86_400_000).toISOString();
    // The intent of a request whose replica died before the answer came.
    const intent = upstreamIntentRecord(
      {
        caller: { type: 'api_key', id: null, client_name: null, client_version: null, ip: null },
        identifier: 'alice',
        executionId: 'exe_lost',
        toolName: 'cloudflare_execute',
      },
      {
        method: 'DELETE',
        path: `/zones/${zone.id}`,
        pathTemplate: null,
        action: 'cloudflare.request',
        bodySha256: null,
        requestBytes: 0,
      },
    );
    // (A chain of its own: along a chain, a record is never stamped earlier than the one before it.)
    const expiring = `ten_expiring${randomBytes(4).toString('hex')}`;
    await t.container.audit.append(expiring, [{ ...intent, occurred_at: weekAgo }], { retentionDays: 1 });
    const [pending] = await t.container.audit.append(tenant.tenantId, [intent], { retentionDays: 90 });
    const stragglers = await app.query('select count(*)::int as n from audit_events_default');
    expect(stragglers.rows[0]?.n).toBe(1);

    const report = await t.container.auditMaintenance.partitions();
    expect(report.rescued).toBe(1);
    expect(report.dropped).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(await t.container.auditMaintenance.sweepUnknownOutcomes()).toBeGreaterThanOrEqual(1);
    const closed = await t.app.inject({
      method: 'GET',
      url: '/api/v1/audit/events?outcome=unknown',
      headers: auth,
    });
    expect(closed.json().events.map((e: { intent_id: string }) => e.intent_id)).toContain(pending?.id);

    expect((await t.container.auditCheckpoints?.run('manual'))?.signed).toBeGreaterThanOrEqual(1);
    // The partition close vouched for the record it dropped…
    const [expired] = await listCheckpoints(t.db.db.kysely, expiring);
    expect(expired).toMatchObject({ reason: 'partition_close', anchors: [{ from_seq: 1, to_seq: 1 }] });
    // …and the manual pass signed the tenant's head as it is now (the scheduler may have signed before).
    const checkpoints = await listCheckpoints(t.db.db.kysely, tenant.tenantId);
    const last = checkpoints.at(-1);
    expect(last?.reason).toBe('manual');
    const signer = t.container.auditSigner ?? undefined;
    expect(signer).toBeDefined();
    expect(await verifyChain(t.db.db.kysely, tenant.tenantId, { signer })).toMatchObject({
      ok: true,
      checkpoints: { checked: checkpoints.length, last_seq: last?.seq, unsealed_records: 0 },
    });
    expect(await verifyChain(t.db.db.kysely, expiring, { signer })).toMatchObject({
      ok: true,
      expired: 1,
      checked: 0,
    });
    // The checkpoints reach the SIEM with the events.
    await eventually(
      () =>
        receiver.requests.some((r) =>
          (JSON.parse(r.body).events as Array<{ id: string; kind: string }>).some(
            (e) => e.kind === 'audit_checkpoint' && e.id === last?.id,
          ),
        ),
      20_000,
      'the checkpoint at the SIEM receiver',
    );
  });

  it('cannot UPDATE, DELETE or TRUNCATE the trail: not the parent, not a partition, not the default partition', async () => {
    const partitions = [...(await listPartitions(t.db.db.kysely)).map((p) => p.name), 'audit_events_default'];
    expect(partitions.length).toBeGreaterThan(3);
    const attempts = [
      ...['audit_events', ...partitions].flatMap((table) => [
        `update ${table} set outcome = 'success'`,
        `delete from ${table}`,
        `truncate ${table}`,
      ]),
      `update audit_events set hash = hash where seq = 1`,
      `alter table audit_events detach partition ${partitions[0]}`,
      `drop table ${partitions[0]}`,
      `update audit_checkpoints set hash = hash`,
      `delete from audit_checkpoints`,
      `update audit_chain_anchors set last_hash = last_hash`,
      `delete from audit_chain_anchors`,
      `insert into audit_chain_anchors (tenant_id, from_seq, to_seq, row_count, first_prev_hash, last_hash, expires_on) values ('x', 1, 2, 2, '', '', current_date)`,
    ];
    for (const statement of attempts) {
      await expect(app.query(statement), statement).rejects.toMatchObject({ code: '42501' });
    }
    // What it may do: read and append, and drop only a day that has passed (the database decides).
    expect((await app.query('select count(*)::int as n from audit_events')).rows[0]?.n).toBeGreaterThan(0);
    const live = partitions.find((p) => p.startsWith('audit_events_p')) as string;
    const refused = await app.query('select audit_drop_partition($1) as dropped', [live]);
    expect(refused.rows[0]?.dropped).toBe(false);
    expect((await listPartitions(t.db.db.kysely)).map((p) => p.name)).toContain(live);
    // A partition created after the grants (by the maintenance function) is just as closed.
    const future = new Date(Date.now() + 200 * 86_400_000).toISOString().slice(0, 10);
    const created = await app.query('select audit_create_partition($1::date) as created', [future]);
    expect(created.rows[0]?.created).toBe(true);
    const name = `audit_events_p${future.replaceAll('-', '')}`;
    await expect(app.query(`delete from ${name}`)).rejects.toMatchObject({ code: '42501' });
    await expect(app.query(`update ${name} set outcome = 'success'`)).rejects.toMatchObject({
      code: '42501',
    });
    expect((await app.query(`select count(*)::int as n from ${name}`)).rows[0]?.n).toBe(0);
  });

  it('reports in /readyz a role that lost what an append needs, and says so truthfully when only the probe may not run', async () => {
    interface Readiness {
      status: string;
      problems?: Record<string, string>;
    }
    const readiness = async () => (await t.app.inject({ method: 'GET', url: '/readyz' })).json() as Readiness;
    const admin = (statement: string) => sql.raw(statement).execute(db.db.kysely);
    const ready = () =>
      eventually(async () => ((await readiness()).status === 'ready' ? true : null), 10_000, '/readyz ready');
    await ready();

    // Every append reads the tenant's sinks for its outbox rows.
    await admin(`revoke select on audit_sinks from "${roles.appRole}"`);
    try {
      const down = await readiness();
      expect(down.status).toBe('unavailable');
      expect(down.problems?.audit).toMatch(
        /^PostgreSQL refuses audit writes .*permission denied for table audit_sinks/,
      );
    } finally {
      await admin(`grant select on audit_sinks to "${roles.appRole}"`);
    }
    await ready();

    // The probe function itself withheld: the appends may well work, so /readyz must not claim
    // that nothing is sent; it says what it cannot check and how to fix it.
    await admin('revoke execute on function audit_write_probe(text, date) from public');
    try {
      const unknown = await readiness();
      expect(unknown.status).toBe('unavailable');
      expect(unknown.problems?.audit).toMatch(
        /^cannot check that PostgreSQL takes audit writes: .*grant it EXECUTE/,
      );
      expect(unknown.problems?.audit).not.toMatch(/nothing is sent/);
    } finally {
      await admin('grant execute on function audit_write_probe(text, date) to public');
    }
    await ready();
  });

  it('`warden db roles --print` shows the script for a DBA, and refuses a role name it would have to quote', async () => {
    const cli = path.join(REPO_ROOT, 'services/connector/bin/warden.js');
    const env = { ...process.env, DATABASE_URL: db.url, REDIS_URL: '', LOG_LEVEL: 'silent' };
    const printed = await run(
      process.execPath,
      [
        cli,
        'db',
        'roles',
        '--print',
        '--app-role',
        roles.appRole,
        '--maintenance-role',
        roles.maintenanceRole,
      ],
      { env },
    );
    expect(printed.stdout).toContain(`grant select, insert on audit_events to "${roles.appRole}"`);
    expect(printed.stdout).toContain(`alter table audit_events owner to "${roles.maintenanceRole}"`);
    const refused = await run(process.execPath, [cli, 'db', 'roles', '--print', '--app-role', 'app"; drop'], {
      env,
    }).catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringContaining('is not a plain role name') });
  });
});

/**
 * A PostgreSQL that answers but will not write (here `default_transaction_read_only`, as on a
 * standby after a failover): vaulting answers 503, never 500; /readyz says the audit store cannot
 * take writes; and once the setting is reset the service recovers by itself, without a restart
 * and without anyone terminating its sessions.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { eventually } from './test-support/http-receiver.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

interface Readiness {
  status: string;
  checks: Record<string, string>;
  problems?: Record<string, string>;
}

describe('a read-only PostgreSQL', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let tenant: { tenantId: string; apiKey: string };
  let userId: string;
  let database: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    tenant = await t.createTenant('Read-only database');
    userId = cf.state.createUser({ email: 'ro@example.com' }).id;
    cf.state.createAccount({ name: 'RO Co', members: [userId] });
    database = new URL(t.db.url).pathname.slice(1);
  });
  afterAll(async () => {
    await sql`alter database ${sql.id(database)} reset default_transaction_read_only`.execute(t.db.db.kysely);
    await t.close();
    await cf.close();
  });

  const vault = (identifier: string) => {
    const token = cf.state.createUserToken({ userId, permissions: ['#zone:read'] });
    t.secrets.add(token.value);
    return t.app.inject({
      method: 'POST',
      url: '/api/v1/connected_accounts',
      headers: { authorization: `Bearer ${tenant.apiKey}` },
      payload: { identifier, authorization: { type: 'api_token', api_token: token.value } },
    });
  };
  const readiness = async () => (await t.app.inject({ method: 'GET', url: '/readyz' })).json() as Readiness;

  it('answers 503 and reports the audit store, then recovers within seconds of the reset', async () => {
    expect((await vault('before')).statusCode).toBe(201);

    await sql`alter database ${sql.id(database)} set default_transaction_read_only = on`.execute(
      t.db.db.kysely,
    );
    // The service's sessions start again read-only, as after a failover to a standby.
    await sql`select pg_terminate_backend(pid) from pg_stat_activity
              where datname = ${database} and application_name = 'warden' and pid <> pg_backend_pid()`.execute(
      t.db.db.kysely,
    );
    const refused = await eventually(
      async () => {
        const res = await vault('during');
        // A session killed under a query may answer 503 too; wait for the read-only refusal.
        return res.statusCode === 503 ? res : null;
      },
      10_000,
      'a refused write',
    );
    expect(refused.json()).toMatchObject({ error: { code: 'unavailable' } });
    for (let i = 0; i < 5; i++) expect((await vault(`during-${i}`)).statusCode).toBe(503);
    const down = await readiness();
    expect(down.status).toBe('unavailable');
    expect(down.checks.audit).toBe('unavailable');
    expect(down.problems?.audit).toMatch(/^PostgreSQL refuses audit writes/);

    await sql`alter database ${sql.id(database)} reset default_transaction_read_only`.execute(t.db.db.kysely);
    const reset = Date.now();
    await eventually(
      async () => ((await vault(`after-${Date.now()}`)).statusCode === 201 ? true : null),
      10_000,
      'a write',
    );
    await eventually(
      async () => ((await readiness()).status === 'ready' ? true : null),
      10_000,
      '/readyz ready',
    );
    expect(Date.now() - reset).toBeLessThan(10_000);
    // Every session the service still holds takes writes: the read-only ones were recycled.
    for (let i = 0; i < 12; i++) expect((await vault(`steady-${i}`)).statusCode).toBe(201);
  }, 120_000);
});

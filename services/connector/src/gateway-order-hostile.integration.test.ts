import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '@warden/audit';
import { startFakeCloudflare, startFakeR2, startTcpProxy } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { r2User } from './test-support/r2-user.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

const PERMISSIONS = ['com.cloudflare.api.user.read', '#organization:read', '#zone:read'];

/**
 * Outsider attack on the gateway's new ordering (commits 73d77f5, ddec27f): the budget's
 * admission (Redis) asked for while the intent is committed (PostgreSQL), and the settlement of
 * an answered request handed to the execution instead of awaited.
 *
 * A slow commit is made in PostgreSQL itself: a trigger on `audit_events` sleeps while the intent
 * of an agent's request (`cloudflare.request`, outcome `pending`) of one tenant is inserted, so
 * only the commit of that tenant's intents is slow (the other records are not held up).
 * Tests marked FIXED failed before the fix that came with this attack.
 */
describe('outsider attack: budget asked while the intent commits, settlement handed over', () => {
  let cf: FakeCloudflare;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
  });
  afterAll(async () => {
    await cf?.close();
  });

  /** A Cloudflare user with a zone and a token that reads it. */
  function newUser(name: string) {
    const user = cf.state.createUser({ email: `${name}-${randomBytes(4).toString('hex')}@example.com` });
    const account = cf.state.createAccount({ name: `${name} Co`, members: [user.id] });
    const zone = cf.state.createZone({
      accountId: account.id,
      name: `${name}-${randomBytes(3).toString('hex')}.example`,
    });
    const token = cf.state.createUserToken({ userId: user.id, permissions: PERMISSIONS });
    return { user, account, zone, token };
  }

  /** Makes the commit of the tenant's agent intents (API and R2) sleep `ms` (0: not at all). */
  async function slowIntents(t: TestApp, tenantId: string, ms: number): Promise<void> {
    const db = t.db.db.kysely;
    await sql`create table if not exists gw_slow_intents (tenant_id text primary key, ms int not null)`.execute(
      db,
    );
    await sql`
      create or replace function gw_slow_intent() returns trigger language plpgsql as $$
      declare wait int;
      begin
        if new.outcome = 'pending' and (new.action = 'cloudflare.request' or new.action like 'r2.%') then
          select ms into wait from gw_slow_intents where tenant_id = new.tenant_id;
          if wait is not null and wait > 0 then perform pg_sleep(wait / 1000.0); end if;
        end if;
        return new;
      end $$`.execute(db);
    await sql`drop trigger if exists gw_slow_intent on audit_events`.execute(db);
    await sql`create trigger gw_slow_intent before insert on audit_events for each row execute function gw_slow_intent()`.execute(
      db,
    );
    await sql`insert into gw_slow_intents (tenant_id, ms) values (${tenantId}, ${ms})
      on conflict (tenant_id) do update set ms = excluded.ms`.execute(db);
  }

  const getZone = (zoneId: string) => `cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })`;
  /** Code that GETs the zone three times in a row, returning each status or refusal message. */
  const threeTries = (zoneId: string) => `async () => {
    const out = [];
    for (let i = 0; i < 3; i++) {
      try { out.push((await ${getZone(zoneId)}).status); } catch (e) { out.push(String(e.message)); }
    }
    return out;
  }`;

  /**
   * A tenant whose identity `identifier` holds a new Cloudflare user's token, with one call made
   * (so the call's context is cached); `run` executes code as that identity.
   */
  async function warmIdentity(t: TestApp, tenantName: string, identifier: string) {
    const tenant = await t.createTenant(tenantName);
    const { zone, token } = newUser(identifier);
    await t.connect(tenant.apiKey, identifier, token.value);
    const run = (code: string) => t.execute(tenant.apiKey, identifier, code);
    const warm = await run(`async () => (await ${getZone(zone.id)}).result.id`);
    expect(warm.json().data).toBe(zone.id);
    return { tenant, zone, run };
  }

  it('HELD: PostgreSQL down while one execution fires 8 requests in parallel: none is sent and every budget place is given back', async () => {
    const pgUrl = new URL(process.env.DATABASE_URL ?? '');
    const proxy = await startTcpProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
    // 3 verification requests + 1 warm-up + 8 after the outage.
    const t = await startTestApp(
      { CLOUDFLARE_API_BASE: cf.url, CLOUDFLARE_BUDGET: '12/300' },
      { viaProxyPort: proxy.port },
    );
    try {
      const { zone, run } = await warmIdentity(t, 'parallel while PostgreSQL is down', 'down');
      const zoneGets = () => cf.requests().filter((r) => r.path === `/zones/${zone.id}`).length;

      await proxy.stop();
      const down = await run(
        `async () => { await Promise.allSettled(Array.from({ length: 8 }, () => ${getZone(zone.id)})); return 1; }`,
      );
      expect(down.statusCode).toBe(503);
      expect(zoneGets()).toBe(1);
      await proxy.start();

      // All 8 places are still there: 8 sequential requests go, the 9th is refused by the budget.
      const after = await run(
        `async () => { for (let i = 0; i < 8; i++) await ${getZone(zone.id)}; return 'ok'; }`,
      );
      expect(after.json()).toMatchObject({ data: 'ok' });
      expect(zoneGets()).toBe(9);
      const over = await run(`async () => (await ${getZone(zone.id)}).result.id`);
      expect(over.json().error).toMatchObject({ code: 'rate_limited' });
      expect(zoneGets()).toBe(9);
    } finally {
      await proxy.start().catch(() => undefined);
      await t.close();
      await proxy.close();
    }
  }, 120_000);

  it("HELD: an answer reporting Cloudflare's quota used up (200, Ratelimit remaining 0) stops the very next request of the code, though its settlement is not awaited", async () => {
    const t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, CLOUDFLARE_BUDGET: '100/300' });
    try {
      const tenant = await t.createTenant('quota reported used up');
      const { user, zone, token } = newUser('quota');
      await t.connect(tenant.apiKey, 'quota', token.value);
      // The user's Cloudflare quota (its windows start afresh): 2 of the engineer's, and 1 left.
      cf.setLimits({ budget: { requests: 3, windowSeconds: 300 } });
      const direct = cf.state.createUserToken({ userId: user.id, permissions: ['#zone:read'] });
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`${cf.url}/zones/${zone.id}`, {
          headers: { authorization: `Bearer ${direct.value}` },
        });
        expect(res.status).toBe(200);
      }
      cf.clearRequests();
      const res = await t.execute(tenant.apiKey, 'quota', threeTries(zone.id));
      const data = res.json().data as unknown[];
      expect(data[0]).toBe(200);
      expect(String(data[1])).toMatch(/Cloudflare reports the API quota/);
      expect(String(data[2])).toMatch(/Cloudflare reports the API quota/);
      expect(cf.requests().map((r) => r.status)).toEqual([200]);
    } finally {
      cf.setLimits({ budget: { requests: 1200, windowSeconds: 300 } });
      await t.close();
    }
  }, 60_000);

  it("HELD: a 429 the code catches and retries at once: the retry is refused by Warden's block, never sent", async () => {
    const t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, CLOUDFLARE_BUDGET: '100/300' });
    try {
      const { zone, run } = await warmIdentity(t, '429 then retry', 'retry');
      cf.clearRequests();
      cf.faults.failNext(1, 429, { retryAfterSeconds: 30 });
      const res = await run(threeTries(zone.id));
      const data = res.json().data as unknown[];
      expect(String(data[0])).toMatch(/retry after 30 s/);
      expect(String(data[1])).toMatch(/Cloudflare asked to slow down \(429\)/);
      expect(String(data[2])).toMatch(/Cloudflare asked to slow down \(429\)/);
      expect(cf.requests().filter((r) => r.path === `/zones/${zone.id}`)).toHaveLength(1);
    } finally {
      cf.faults.reset();
      await t.close();
    }
  }, 60_000);

  it('FIXED (found by this attack): a request whose caller went away during its intent commit is not sent, and gives its budget place back (it kept it for the whole window)', async () => {
    // 3 verification requests + 1 warm-up + 3 places left.
    const t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, CLOUDFLARE_BUDGET: '7/300' });
    try {
      const { tenant, zone, run } = await warmIdentity(t, 'fire and forget', 'forget');
      const zoneGets = () => cf.requests().filter((r) => r.path === `/zones/${zone.id}`).length;

      // The code starts a request and returns at once: the call ends (its requests are
      // cancelled) while the intent is being committed, so the request is never sent.
      await slowIntents(t, tenant.tenantId, 400);
      for (let i = 0; i < 3; i++) {
        const res = await run(`async () => { ${getZone(zone.id)}; return 'gone'; }`);
        expect(res.json()).toMatchObject({ data: 'gone' });
      }
      await delay(1_000);
      await slowIntents(t, tenant.tenantId, 0);
      expect(zoneGets()).toBe(1);
      // Each of the three intents has its outcome: recorded as not sent.
      const chain = await verifyChain(t.db.db.kysely, tenant.tenantId);
      expect(chain).toMatchObject({ ok: true, intents_without_outcome: [] });

      // Nothing of the three was sent: the user's three places must still be there.
      const after = await run(
        `async () => { const out = []; for (let i = 0; i < 3; i++) { try { out.push((await ${getZone(zone.id)}).status); } catch (e) { out.push(e.message); } } return out; }`,
      );
      expect(after.json().data).toEqual([200, 200, 200]);
      expect(zoneGets()).toBe(4);
    } finally {
      await t.close();
    }
  }, 60_000);

  it('FIXED (found by this attack): with a slow intent commit (400 ms), parallel requests after a pause all go (they were refused as waiting for the probe, admitted but not yet sent)', async () => {
    const t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, CLOUDFLARE_BUDGET: '100/300' });
    try {
      const { tenant, zone, run } = await warmIdentity(t, 'probe and a slow commit', 'probe');
      await slowIntents(t, tenant.tenantId, 400);
      // Longer than the probe delay (1 s): the next request goes alone, to learn Cloudflare's count.
      await delay(1_200);
      const res = await run(
        `async () => (await Promise.allSettled(Array.from({ length: 4 }, () => ${getZone(zone.id)})))
          .map((s) => s.status === 'fulfilled' ? s.value.status : s.reason.message)`,
      );
      await slowIntents(t, tenant.tenantId, 0);
      expect(res.json().data).toEqual([200, 200, 200, 200]);
    } finally {
      await t.close();
    }
  }, 60_000);
  it('FIXED: an R2 request whose caller went away during its intent commit is not sent either, and gives its R2 budget place back', async () => {
    const r2 = await startFakeR2({ state: cf.state });
    // 1 warm-up + 3 places left.
    const t = await startTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      CLOUDFLARE_R2_ENDPOINT: r2.urlTemplate,
      CLOUDFLARE_R2_BUDGET: '4/300',
    });
    try {
      const tenant = await t.createTenant('r2 fire and forget');
      const { account, token, list } = r2User(cf, r2, 'r2-forget');
      await t.connect(tenant.apiKey, 'r2-forget', token.value);
      const run = (code: string) => t.execute(tenant.apiKey, 'r2-forget', code);
      const lists = () => r2.requests().filter((r) => r.accountId === account.id).length;
      const warm = await run(`async () => (await ${list}).objects.length`);
      expect(warm.json()).toMatchObject({ data: 0 });

      // The code starts a list and returns at once, while the list's intent is being committed.
      await slowIntents(t, tenant.tenantId, 400);
      for (let i = 0; i < 3; i++) {
        const res = await run(`async () => { ${list}.catch(() => {}); return 'gone'; }`);
        expect(res.json()).toMatchObject({ data: 'gone' });
      }
      await delay(1_000);
      await slowIntents(t, tenant.tenantId, 0);
      expect(lists()).toBe(1);
      const chain = await verifyChain(t.db.db.kysely, tenant.tenantId);
      expect(chain).toMatchObject({ ok: true, intents_without_outcome: [] });

      // Nothing of the three was sent: the three R2 places left must still be there.
      const after = await run(`async () => {
        const out = [];
        for (let i = 0; i < 3; i++) {
          try { out.push((await ${list}).objects.length); } catch (e) { out.push(String(e.message)); }
        }
        return out;
      }`);
      expect(after.json().data).toEqual([0, 0, 0]);
      expect(lists()).toBe(4);
    } finally {
      await t.close();
      await r2.close();
    }
  }, 60_000);
});

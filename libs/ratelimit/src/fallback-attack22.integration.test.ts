/**
 * attack22 — f05ee77 "budget fallback replays unsent 429 blocks to Redis"
 * (RATE_LIMIT_ON_REDIS_FAILURE=local). Replica A loses its Redis connection, replica B keeps it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { randomString } from '@warden/core';
import { createRedisWindows, windowKeys } from './redis-windows.ts';
import { fallbackReplicas } from './test-support/fallback-replicas.ts';
import type { Admitted, UpstreamBudget } from './upstream-budget.ts';
import type { BudgetKind } from './windows.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';
const SPEC = { capacity: 100, windowSeconds: 300 };
const replicas = fallbackReplicas(REDIS_URL);
afterAll(() => replicas.close());
const { replica, down } = replicas;

const ok = { status: 200, retryAfterSeconds: null, rateLimit: null, rateLimitPolicy: null, errors: [] };
const tooMany = (seconds: number) => ({
  ...ok,
  status: 429,
  retryAfterSeconds: seconds,
  errors: [{ code: 971 }],
});

function req(principal: string, kind: BudgetKind = 'rest') {
  return { principal, tenantId: 'ten_a', kind, spec: SPEC } as const;
}

async function admitted(
  budget: UpstreamBudget,
  principal: string,
  kind: BudgetKind = 'rest',
): Promise<Admitted> {
  const a = await budget.admit(req(principal, kind));
  if (!a.allowed) throw new Error(`refused: ${a.reason} ${a.retryAfterMs}`);
  return a;
}

/** 'admitted', or 'blocked <seconds left>' as B sees it. */
async function seenByB(b: UpstreamBudget, principal: string, kind: BudgetKind = 'rest'): Promise<string> {
  const other = await b.admit(req(principal, kind));
  if (other.allowed) {
    await b.release(other);
    return 'admitted';
  }
  return `${other.reason} ${Math.round(other.retryAfterMs / 1000)}`;
}

async function setup() {
  const keyPrefix = `test:rl:${randomString(12)}`;
  const a = await replica(keyPrefix);
  const b = await replica(keyPrefix);
  return { keyPrefix, a, b };
}

describe('attack22: 429 blocks settled during a Redis outage', () => {
  it('a 429 for a request admitted DURING the outage (local share ticket) reaches Redis once it answers', async () => {
    const { a, b } = await setup();
    const principal = `cf:user:during-${randomString(6)}`;
    await down(a.redis);
    const sent = await admitted(a.budget, principal); // the local share admits it
    expect(a.budget.degraded).toBe(true);
    await a.budget.observe(sent, tooMany(60));
    await a.redis.connect();
    expect(await a.budget.admit(req(principal))).toMatchObject({ allowed: false, reason: 'blocked' });
    // B never lost Redis: it must honour Cloudflare's lockout once A's Redis answers.
    await expect
      .poll(() => seenByB(b.budget, principal), { timeout: 5_000, interval: 200 })
      .toMatch(/^blocked (5[5-9]|60)$/);
  });

  it('a 429 for a request admitted during the outage, answered once Redis is back, reaches Redis', async () => {
    const { a, b } = await setup();
    const principal = `cf:user:after-${randomString(6)}`;
    await down(a.redis);
    const sent = await admitted(a.budget, principal); // the local share admits it
    await a.redis.connect();
    await sleep(1_100); // A's breaker has closed again
    expect(await seenByB(a.budget, `cf:user:other-${randomString(6)}`)).toBe('admitted');
    await a.budget.observe(sent, tooMany(60));
    await expect
      .poll(() => seenByB(b.budget, principal), { timeout: 5_000, interval: 200 })
      .toMatch(/^blocked (5[5-9]|60)$/);
  });

  it('the replayed block does not charge a request to the shared window', async () => {
    const { keyPrefix, a, b } = await setup();
    const principal = `cf:user:charge-${randomString(6)}`;
    const windows = createRedisWindows({ redis: b.redis, keyPrefix, probeAfterMs: null });
    const sent = await admitted(a.budget, principal);
    await down(a.redis);
    await a.budget.observe(sent, tooMany(60));
    // The entry of the 429'd request is still in Redis (its settlement could not be written).
    const before = (await windows.status(principal, 'rest', SPEC)).used;
    await a.redis.connect();
    await expect
      .poll(() => seenByB(b.budget, principal), { timeout: 5_000, interval: 200 })
      .toMatch(/^blocked/);
    const after = (await windows.status(principal, 'rest', SPEC)).used;
    // Observed: one more entry (the replay settles with counted: true and id null, which ZADDs).
    expect({ before, after }).toEqual({ before, after: before });
  });

  it('several blocks for one principal during the outage: the longest is written, whatever the order', async () => {
    const { a, b } = await setup();
    const principal = `cf:user:several-${randomString(6)}`;
    const first = await admitted(a.budget, principal);
    const second = await admitted(a.budget, principal);
    const third = await admitted(a.budget, principal);
    await down(a.redis);
    await a.budget.observe(first, tooMany(30));
    await a.budget.observe(second, tooMany(90));
    await a.budget.observe(third, tooMany(10)); // a later, shorter one must not replace it
    await a.redis.connect();
    await expect
      .poll(() => seenByB(b.budget, principal), { timeout: 5_000, interval: 200 })
      .toMatch(/^blocked (8[5-9]|90)$/);
  });

  it('a replayed shorter block does not shorten a longer one another replica wrote meanwhile', async () => {
    const { a, b } = await setup();
    const principal = `cf:user:longer-${randomString(6)}`;
    const sentA = await admitted(a.budget, principal);
    const sentB = await admitted(b.budget, principal);
    await down(a.redis);
    await a.budget.observe(sentA, tooMany(20));
    await b.budget.observe(sentB, tooMany(120));
    await a.redis.connect();
    await sleep(2_500); // A's replay has run
    expect(await seenByB(b.budget, principal)).toMatch(/^blocked 11[5-9]|^blocked 120/);
  });

  it('a block that ended during the outage is not written back as a fresh block', async () => {
    const { keyPrefix, a, b } = await setup();
    const principal = `cf:user:expired-${randomString(6)}`;
    const sent = await admitted(a.budget, principal);
    await down(a.redis);
    await a.budget.observe(sent, tooMany(1));
    await sleep(2_200); // the block ends while A is still cut off (and its replay fails meanwhile)
    await a.redis.connect();
    await sleep(2_500);
    expect(await seenByB(b.budget, principal)).toBe('admitted');
    const meta = await b.redis.hget(windowKeys(keyPrefix, principal, 'rest').meta, 'block');
    const [seconds, micros] = (await b.redis.time()) as unknown as [string, string];
    const nowUs = Number(seconds) * 1e6 + Number(micros);
    expect(meta === null || Number(meta) <= nowUs).toBe(true);
  });

  it('REST and GraphQL blocks of one principal are both written; the REST one blocks GraphQL on B', async () => {
    const { a, b } = await setup();
    const principal = `cf:user:kinds-${randomString(6)}`;
    const rest = await admitted(a.budget, principal, 'rest');
    const gql = await admitted(a.budget, principal, 'graphql');
    await down(a.redis);
    await a.budget.observe(rest, tooMany(90));
    await a.budget.observe(gql, tooMany(30));
    await a.redis.connect();
    await expect
      .poll(
        async () =>
          `${await seenByB(b.budget, principal, 'rest')} / ${await seenByB(b.budget, principal, 'graphql')}`,
        {
          timeout: 5_000,
          interval: 200,
        },
      )
      .toMatch(/^blocked (8[5-9]|90) \/ blocked (8[5-9]|90)$/);
  });

  it('flapping: blocks kept across two outages are all written once Redis stays up', async () => {
    const { a, b } = await setup();
    const p1 = `cf:user:flap1-${randomString(6)}`;
    const p2 = `cf:user:flap2-${randomString(6)}`;
    const s1 = await admitted(a.budget, p1);
    const s2 = await admitted(a.budget, p2);
    await down(a.redis);
    await a.budget.observe(s1, tooMany(60));
    await a.redis.connect();
    await down(a.redis); // drops again before the replay ran
    await a.budget.observe(s2, tooMany(60));
    await sleep(1_200); // a replay fails meanwhile
    await a.redis.connect();
    await expect
      .poll(async () => `${await seenByB(b.budget, p1)} / ${await seenByB(b.budget, p2)}`, {
        timeout: 6_000,
        interval: 200,
      })
      .toMatch(/^blocked 5\d \/ blocked 5\d$/);
  });

  it('many principals blocked during an outage are all written once Redis answers', async () => {
    const { a, b } = await setup();
    const N = 300;
    const principals = Array.from({ length: N }, (_, i) => `cf:user:many${i}-${randomString(4)}`);
    const sent = [];
    for (const p of principals) sent.push(await admitted(a.budget, p));
    await down(a.redis);
    for (const s of sent) await a.budget.observe(s, tooMany(60));
    await a.redis.connect();
    await expect
      .poll(
        async () => {
          const seen = await Promise.all(principals.map((p) => seenByB(b.budget, p)));
          return seen.filter((s) => s === 'admitted').length;
        },
        { timeout: 8_000, interval: 500 },
      )
      .toBe(0);
  });
});

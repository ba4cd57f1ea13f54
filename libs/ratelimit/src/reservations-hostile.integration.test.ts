import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ManualClock, randomString } from '@warden/core';
import type { BudgetSpec } from './budget-spec.ts';
import { createMemoryWindows } from './memory-windows.ts';
import type { CloudflareQuota } from './rate-headers.ts';
import { createRedisWindows } from './redis-windows.ts';
import { useTestRedis } from './redis-test.fixture.ts';
import type { PrincipalWindows, WindowOptions } from './windows.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';

/**
 * Outsider attack on the rate-budget reservations of issue 16 (the place a tail's delete holds in
 * the principal's window while the tail runs), against both stores: the in-process windows on a
 * manual clock and the Redis windows on a real Redis.
 *
 * "Cloudflare" below is a counter standing in for Cloudflare's per-user window: every request
 * Warden sends (a take that is admitted, a claimed reservation) adds one, as do `others` (the
 * engineer's dashboard, another tool on the same user); each answer reports the
 * `Ratelimit: r=<quota - count>` Cloudflare sends. A request past the quota is what Cloudflare
 * answers 429 and locks the user out for.
 */

interface Store {
  readonly name: string;
  windows(options?: WindowOptions): PrincipalWindows;
  principal(): string;
  /** Lets time pass: the manual clock jumps, Redis time is waited for. */
  pass(ms: number): Promise<void>;
}

const QUOTA = 12;
const SPEC: BudgetSpec = { capacity: QUOTA, windowSeconds: 60 };

function cloudflare(remaining: number): CloudflareQuota {
  return { name: 'default', remaining, resetSeconds: 60, quota: QUOTA, windowSeconds: 60 };
}

/**
 * A tail as the tail gateway runs it, against a Cloudflare that already counted `others` requests
 * of the user: the delete's place is reserved, the create goes, then the code sends requests until
 * the window refuses one, then the delete claims its reservation. Returns how many requests
 * Cloudflare counted in its window in the end (the delete included).
 */
async function tailAndSpend(windows: PrincipalWindows, p: string, others: number) {
  let counted = others;
  const send = async (ticket: Parameters<PrincipalWindows['settle']>[0]) => {
    counted++;
    await windows.settle(ticket, SPEC, {
      answered: true,
      quota: cloudflare(Math.max(0, QUOTA - counted)),
      blockMs: 0,
    });
  };
  const reserved = await windows.reserve(p, 'rest', SPEC, 60_000);
  if (!reserved.allowed) throw new Error('the reservation was refused');
  // The create.
  const create = await windows.take(p, 'rest', SPEC);
  if (!create.allowed) throw new Error('the create was refused');
  await send(create.ticket);
  // The code spends what the window lets it.
  let sent = 0;
  for (let i = 0; i < 3 * QUOTA; i++) {
    const take = await windows.take(p, 'rest', SPEC);
    if (!take.allowed) break;
    sent++;
    await send(take.ticket);
  }
  // The delete, on its reservation (never refused).
  const deleted = await windows.claim(reserved.ticket, SPEC);
  await send(deleted);
  return { counted, sent };
}

function attacks(store: () => Store) {
  describe(`${store().name}: reservations under attack`, () => {
    it("HELD: a reservation keeps the delete within Cloudflare's quota when Warden's requests are the only ones", async () => {
      const s = store();
      const windows = s.windows({ probeAfterMs: null });
      const { counted } = await tailAndSpend(windows, s.principal(), 0);
      expect(counted).toBeLessThanOrEqual(QUOTA);
    });

    // Found by the outsider attack (issue 16): settle learned "others" as quota - remaining - mine,
    // with the held reservation counted in mine although nothing was sent for it, which handed
    // its place back to the code as soon as anyone else had used the user's budget.
    it("HELD: with others' requests in Cloudflare's count, the code cannot spend the delete's reserved place", async () => {
      const s = store();
      const windows = s.windows({ probeAfterMs: null });
      const others = 4;
      const { counted, sent } = await tailAndSpend(windows, s.principal(), others);
      // Create + the code's requests + delete <= quota - others: the delete is within the quota.
      expect(sent).toBe(QUOTA - others - 2);
      expect(counted).toBe(QUOTA);
    });

    it('HELD: reservations of one principal (many, long holds) take nothing from another principal', async () => {
      const s = store();
      const windows = s.windows({ probeAfterMs: null });
      const attacker = s.principal();
      const victim = s.principal();
      for (let i = 0; i < QUOTA; i++) {
        const r = await windows.reserve(attacker, 'rest', SPEC, 3_600_000);
        expect(r.allowed).toBe(true);
      }
      expect((await windows.reserve(attacker, 'rest', SPEC, 3_600_000)).allowed).toBe(false);
      expect((await windows.take(attacker, 'rest', SPEC)).allowed).toBe(false);
      expect(await windows.status(victim, 'rest', SPEC)).toMatchObject({ used: 0, remaining: QUOTA });
      for (let i = 0; i < QUOTA; i++) expect((await windows.take(victim, 'rest', SPEC)).allowed).toBe(true);
    });

    it('HELD: a claim after the hold ran out is charged once, not twice', async () => {
      const s = store();
      const windows = s.windows({ probeAfterMs: null, inFlightMs: 1000 });
      const p = s.principal();
      const reserved = await windows.reserve(p, 'rest', SPEC, 50);
      if (!reserved.allowed) throw new Error('refused');
      await s.pass(300);
      // Past its hold the place counts as a request sent then.
      expect(await windows.status(p, 'rest', SPEC)).toMatchObject({ used: 1 });
      const claimed = await windows.claim(reserved.ticket, SPEC);
      expect(await windows.status(p, 'rest', SPEC)).toMatchObject({ used: 1, remaining: QUOTA - 1 });
      await windows.settle(claimed, SPEC, { answered: true, quota: null, blockMs: 0 });
      expect(await windows.status(p, 'rest', SPEC)).toMatchObject({ used: 1 });
      // Claiming the same reservation again (a replayed ticket) does not free a place either.
      const again = await windows.claim(reserved.ticket, SPEC);
      await windows.release(again);
      expect(await windows.status(p, 'rest', SPEC)).toMatchObject({ used: 1 });
    });

    it('HELD: a reservation that is never claimed nor released (the replica died) keeps counting, then leaves the window', async () => {
      const s = store();
      const spec = { capacity: 1, windowSeconds: 1 };
      const windows = s.windows({ probeAfterMs: null, inFlightMs: 1000 });
      const p = s.principal();
      const leaked = await windows.reserve(p, 'rest', spec, 200);
      expect(leaked.allowed).toBe(true);
      // Counted for its hold, then as a request sent at its end, for one window.
      expect((await windows.take(p, 'rest', spec)).allowed).toBe(false);
      await s.pass(600);
      expect((await windows.take(p, 'rest', spec)).allowed).toBe(false);
      await s.pass(800);
      expect((await windows.take(p, 'rest', spec)).allowed).toBe(true);
    });

    it('HELD: reservations do not let a burst past the probe (nothing is sent for them, and only one request goes alone)', async () => {
      const s = store();
      const windows = s.windows({ probeAfterMs: 60_000 });
      const p = s.principal();
      for (let i = 0; i < 5; i++) expect((await windows.reserve(p, 'rest', SPEC, 60_000)).allowed).toBe(true);
      const probe = await windows.take(p, 'rest', SPEC);
      expect(probe.allowed).toBe(true);
      expect(await windows.take(p, 'rest', SPEC)).toMatchObject({ allowed: false, reason: 'probe' });
    });

    it('HELD: a released reservation is gone from the held set too (the probe counts requests out right)', async () => {
      const s = store();
      const windows = s.windows({ probeAfterMs: 60_000 });
      const p = s.principal();
      const reserved = await windows.reserve(p, 'rest', SPEC, 60_000);
      if (!reserved.allowed) throw new Error('refused');
      await windows.release(reserved.ticket);
      // Released twice (the gateway's finally and an error path): still nothing negative.
      await windows.release(reserved.ticket);
      const probe = await windows.take(p, 'rest', SPEC);
      expect(probe.allowed).toBe(true);
      expect(await windows.take(p, 'rest', SPEC)).toMatchObject({ allowed: false, reason: 'probe' });
    });
  });
}

attacks(() => {
  const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
  return {
    name: 'in-process windows',
    windows: (options = {}) => createMemoryWindows({ ...options, clock }),
    principal: () => `cf:user:attack-${randomString(8)}`,
    pass: async (ms) => {
      clock.advance(ms);
    },
  };
});

describe('Redis', () => {
  const test = useTestRedis(REDIS_URL);
  attacks(() => ({
    name: 'Redis windows',
    windows: (options = {}) =>
      createRedisWindows({ redis: test.redis, keyPrefix: test.keyPrefix, ...options }),
    principal: () => `cf:user:attack-${randomString(8)}`,
    pass: (ms) => sleep(ms),
  }));
});

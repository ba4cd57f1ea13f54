/**
 * The window behaviour both stores must share, run by `memory-windows.test.ts` (on a manual
 * clock, edges exact to the millisecond) and `redis-windows.integration.test.ts` (on Redis `TIME`,
 * edges within a slack, since the test cannot stop Redis's clock).
 */
import { expect, it } from 'vitest';
import type { BudgetSpec } from './budget-spec.ts';
import type { CloudflareQuota } from './rate-headers.ts';
import type { BudgetKind, PrincipalWindows, WindowOptions, WindowTake } from './windows.ts';

export interface WindowHarness {
  /** A store on the harness's clock (probing off unless `options` turn it on). */
  windows(options?: WindowOptions): PrincipalWindows;
  principal(): string;
  /** Puts settled requests, `agesMs` old, into a principal's window. */
  seed(
    windows: PrincipalWindows,
    principal: string,
    kind: BudgetKind,
    spec: BudgetSpec,
    agesMs: readonly number[],
  ): Promise<void>;
  /** Lets a little time pass, so that two events are not at the same instant. */
  pass(ms: number): Promise<void>;
  /**
   * How far inside the window an entry "just inside" is: 1 ms on the manual clock; for Redis a
   * slack that covers the time between seeding and the take.
   */
  readonly edgeMs: number;
  /** Waits are exact (manual clock) or at most the expected value (Redis time moves on). */
  readonly exact: boolean;
}

const W = 60_000;
const ONE: BudgetSpec = { capacity: 1, windowSeconds: W / 1000 };
const FULL: BudgetSpec = { capacity: 1200, windowSeconds: W / 1000 };

interface TableCase {
  readonly name: string;
  readonly spec: BudgetSpec;
  readonly ages: (edge: number) => number[];
  readonly allowed: boolean;
  readonly remaining: number;
  /** For refusals: the wait, given the edge. */
  readonly waitMs?: (edge: number) => number;
}

const repeat = (n: number, age: number) => Array.from({ length: n }, () => age);

/** Ages are how long ago each request settled; a request exactly one window old is out of it. */
export const WINDOW_TABLE: readonly TableCase[] = [
  { name: 'limit 1, empty window', spec: ONE, ages: () => [], allowed: true, remaining: 0 },
  {
    name: 'limit 1, one request just now',
    spec: ONE,
    ages: () => [0],
    allowed: false,
    remaining: 0,
    waitMs: () => W,
  },
  {
    name: 'limit 1, one request just inside the window',
    spec: ONE,
    ages: (edge) => [W - edge],
    allowed: false,
    remaining: 0,
    waitMs: (edge) => edge,
  },
  {
    name: 'limit 1, one request exactly one window old',
    spec: ONE,
    ages: () => [W],
    allowed: true,
    remaining: 0,
  },
  {
    name: 'limit 1, one request older than the window',
    spec: ONE,
    ages: () => [W + 1],
    allowed: true,
    remaining: 0,
  },
  {
    name: 'limit 1,200, 1,199 in the window',
    spec: FULL,
    ages: () => repeat(1199, 1000),
    allowed: true,
    remaining: 0,
  },
  {
    name: 'limit 1,200, 1,200 just now',
    spec: FULL,
    ages: () => repeat(1200, 0),
    allowed: false,
    remaining: 0,
    waitMs: () => W,
  },
  {
    name: 'limit 1,200, full, the oldest just inside the window',
    spec: FULL,
    ages: (edge) => [W - edge, ...repeat(1199, 1000)],
    allowed: false,
    remaining: 0,
    waitMs: (edge) => edge,
  },
  {
    name: 'limit 1,200, full, the oldest exactly one window old',
    spec: FULL,
    ages: () => [W, ...repeat(1199, 1000)],
    allowed: true,
    remaining: 0,
  },
  {
    name: 'limit 1,200, ten of 1,200 out of the window',
    spec: FULL,
    ages: () => [...repeat(10, W + 5), ...repeat(1190, 1000)],
    allowed: true,
    remaining: 9,
  },
  {
    name: 'limit 1,200, full, waits for the oldest only',
    spec: FULL,
    ages: (edge) => [W - edge, W - edge - 1000, ...repeat(1198, 0)],
    allowed: false,
    remaining: 0,
    waitMs: (edge) => edge,
  },
];

function expectWait(harness: WindowHarness, take: WindowTake, expected: number): void {
  if (take.allowed) throw new Error('expected a refusal');
  if (harness.exact) expect(take.retryAfterMs).toBe(expected);
  else {
    expect(take.retryAfterMs).toBeGreaterThan(0);
    expect(take.retryAfterMs).toBeLessThanOrEqual(expected);
  }
}

function quota(remaining: number, resetSeconds: number): CloudflareQuota {
  return { name: 'default', remaining, resetSeconds, quota: null, windowSeconds: null };
}

const answered = { answered: true, quota: null, blockMs: 0 } as const;

/** A take that must be admitted; its ticket. */
async function admit(
  windows: PrincipalWindows,
  principal: string,
  spec: BudgetSpec,
  kind: BudgetKind = 'rest',
) {
  const take = await windows.take(principal, kind, spec);
  if (!take.allowed) throw new Error(`take refused: ${take.reason}`);
  return take.ticket;
}

/** Registers the shared table and behaviour tests. */
export function windowSuite(harness: () => WindowHarness): void {
  it.each(WINDOW_TABLE)('$name', async (c) => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    await h.seed(windows, p, 'rest', c.spec, c.ages(h.edgeMs));
    const take = await windows.take(p, 'rest', c.spec);
    expect(take.allowed).toBe(c.allowed);
    expect(take.remaining).toBe(c.remaining);
    if (c.waitMs) expectWait(h, take, c.waitMs(h.edgeMs));
  });

  it('never lets more than the capacity through concurrent takes', async () => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    const spec = { capacity: 20, windowSeconds: 3600 };
    const takes = await Promise.all(Array.from({ length: 50 }, () => windows.take(p, 'rest', spec)));
    expect(takes.filter((t) => t.allowed)).toHaveLength(20);
    for (const t of takes.filter((t) => !t.allowed))
      expect(t).toMatchObject({ reason: 'window', remaining: 0 });
  });

  it('counts an unanswered request for its in-flight time, then from its settlement', async () => {
    const h = harness();
    const windows = h.windows({ inFlightMs: 30_000, probeAfterMs: null });
    const p = h.principal();
    const take = await admit(windows, p, ONE);
    expectWait(h, await windows.take(p, 'rest', ONE), 30_000 + W);
    await windows.settle(take, ONE, answered);
    expectWait(h, await windows.take(p, 'rest', ONE), W);
  });

  it('gives back the place of a request that was never sent', async () => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    const take = await admit(windows, p, ONE);
    await windows.release(take);
    expect((await windows.take(p, 'rest', ONE)).allowed).toBe(true);
  });

  it('charges a request sent before its principal was known', async () => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    const spec = { capacity: 2, windowSeconds: 60 };
    await windows.settle({ principal: p, kind: 'rest', id: null, admittedAtMs: 0 }, spec, answered);
    expect(await windows.status(p, 'rest', spec)).toMatchObject({ used: 1, remaining: 1 });
    expect((await windows.take(p, 'rest', spec)).allowed).toBe(true);
    expect(await windows.take(p, 'rest', spec)).toMatchObject({ allowed: false, reason: 'window' });
  });

  it('keeps REST and GraphQL apart; a REST 429 blocks both, a GraphQL 429 only GraphQL', async () => {
    const h = harness();
    const windows = h.windows();
    const spec = { capacity: 3, windowSeconds: 60 };
    const p = h.principal();
    const rest = await windows.take(p, 'rest', spec);
    expect(rest.allowed).toBe(true);
    const gql = await admit(windows, p, spec, 'graphql');
    await windows.settle(gql, spec, { answered: true, quota: null, blockMs: 20_000 });
    expect(await windows.take(p, 'graphql', spec)).toMatchObject({ allowed: false, reason: 'blocked' });

    const q = h.principal();
    const restQ = await admit(windows, q, spec);
    await windows.settle(restQ, spec, { answered: true, quota: null, blockMs: 20_000 });
    const refused = await windows.take(q, 'graphql', spec);
    expect(refused).toMatchObject({ allowed: false, reason: 'blocked', remaining: 0 });
    expectWait(h, refused, 20_000);
    const status = await windows.status(q, 'graphql', spec);
    expect(status.remaining).toBe(0);
    expect(status.blockedUntil).toBeInstanceOf(Date);
    // A shorter block arriving later does not cut the longer one short.
    await windows.settle({ ...restQ, id: null }, spec, { answered: true, quota: null, blockMs: 1000 });
    expectWait(h, await windows.take(q, 'rest', spec), 20_000);
  });

  it("follows Cloudflare's count when it counted requests that are not Warden's", async () => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    const spec = { capacity: 10, windowSeconds: 60 };
    const first = await admit(windows, p, spec);
    // The dashboard used 7 of Cloudflare's 10: 2 left after this request, although Warden used 1.
    await windows.settle(first, spec, { answered: true, quota: quota(2, 40), blockMs: 0 });
    const status = await windows.status(p, 'rest', spec);
    expect(status).toMatchObject({ remaining: 2, used: 1, cloudflare: { remaining: 2, binding: true } });
    expect((await windows.take(p, 'rest', spec)).allowed).toBe(true);
    expect((await windows.take(p, 'rest', spec)).allowed).toBe(true);
    const refused = await windows.take(p, 'rest', spec);
    expect(refused).toMatchObject({ allowed: false, reason: 'cloudflare', remaining: 0 });
    // The first request leaves the window after a minute, and with it room for one more.
    expectWait(h, refused, 60_000);
  });

  it("ignores Cloudflare's count when it shows nothing but Warden's own requests", async () => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    const spec = { capacity: 3, windowSeconds: 60 };
    const first = await admit(windows, p, spec);
    await windows.settle(first, spec, { answered: true, quota: quota(2, 40), blockMs: 0 });
    expect(await windows.status(p, 'rest', spec)).toMatchObject({ remaining: 2, cloudflare: null });
    expect((await windows.take(p, 'rest', spec)).allowed).toBe(true);
    expect((await windows.take(p, 'rest', spec)).allowed).toBe(true);
    expect(await windows.take(p, 'rest', spec)).toMatchObject({ allowed: false, reason: 'window' });
  });

  it("follows Cloudflare's quota when it is lower than the window's", async () => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    const spec = { capacity: 10, windowSeconds: 60 };
    const first = await admit(windows, p, spec);
    const lower = { name: 'default', remaining: 4, resetSeconds: 60, quota: 5, windowSeconds: 60 };
    await windows.settle(first, spec, { answered: true, quota: lower, blockMs: 0 });
    expect(await windows.status(p, 'rest', spec)).toMatchObject({
      remaining: 4,
      cloudflare: { remaining: 4, binding: true },
    });
    // A policy over another window says nothing about this one's quota.
    const q = h.principal();
    const other = await admit(windows, q, spec);
    await windows.settle(other, spec, {
      answered: true,
      quota: { ...lower, remaining: 9, windowSeconds: 1 },
      blockMs: 0,
    });
    expect(await windows.status(q, 'rest', spec)).toMatchObject({ remaining: 9, cloudflare: null });
  });

  it("keeps the largest count of others until they could have left Cloudflare's window", async () => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    const spec = { capacity: 20, windowSeconds: 1 };
    // A probe after the engineer used 5: Cloudflare counted 6.
    const probe = await admit(windows, p, spec);
    await windows.settle(probe, spec, { answered: true, quota: quota(14, 1), blockMs: 0 });
    const burst = await Promise.all(Array.from({ length: 15 }, () => windows.take(p, 'rest', spec)));
    expect(burst.filter((t) => t.allowed)).toHaveLength(14);
    expect(burst.find((t) => !t.allowed)).toMatchObject({ reason: 'cloudflare' });
    // The first answer of the burst: Cloudflare had counted only it, the rest were on their way.
    const answered = burst.find((t) => t.allowed);
    if (!answered?.allowed) throw new Error('no admitted request');
    await windows.settle(answered.ticket, spec, { answered: true, quota: quota(13, 1), blockMs: 0 });
    expect(await windows.take(p, 'rest', spec)).toMatchObject({ allowed: false, reason: 'cloudflare' });
    // A window later everything Cloudflare counted has left it.
    for (const t of burst)
      if (t.allowed) await windows.settle(t.ticket, spec, { answered: true, quota: null, blockMs: 0 });
    await h.pass(1100);
    expect(await windows.status(p, 'rest', spec)).toMatchObject({ remaining: 20, cloudflare: null });
  });

  it('sends one request alone until Cloudflare answers, when it has not answered lately', async () => {
    const h = harness();
    const windows = h.windows({ probeAfterMs: 60_000 });
    const p = h.principal();
    const spec = { capacity: 10, windowSeconds: 60 };
    const probe = await admit(windows, p, spec);
    expect(await windows.take(p, 'rest', spec)).toMatchObject({ allowed: false, reason: 'probe' });
    // An unanswered probe (timeout) does not count as Cloudflare's answer.
    await windows.settle(probe, spec, { answered: false, quota: null, blockMs: 0 });
    const second = await admit(windows, p, spec);
    expect(await windows.take(p, 'rest', spec)).toMatchObject({ allowed: false, reason: 'probe' });
    await windows.settle(second, spec, answered);
    const burst = await Promise.all(Array.from({ length: 5 }, () => windows.take(p, 'rest', spec)));
    expect(burst.every((t) => t.allowed)).toBe(true);
  });

  it('holds the probe back while a request sent more than a window ago still counts', async () => {
    const h = harness();
    const windows = h.windows({ probeAfterMs: 60_000 });
    const p = h.principal();
    const spec = { capacity: 10, windowSeconds: 1 };
    const slow = await admit(windows, p, spec);
    await h.pass(1100);
    // Its answer is lost after more than a window: it counts from now, yet Cloudflare may have
    // counted it over a window ago and dropped it, so a probe now could not tell.
    await windows.settle(slow, spec, { answered: false, quota: null, blockMs: 0 });
    const held = await windows.take(p, 'rest', spec);
    expect(held).toMatchObject({ allowed: false, reason: 'probe' });
    expectWait(h, held, 1000);
    await h.pass(1000);
    expect((await windows.take(p, 'rest', spec)).allowed).toBe(true);
  });

  it('holds a reserved place for a request to come: takes meanwhile cannot use it, its claim is never refused', async () => {
    const h = harness();
    const windows = h.windows({ inFlightMs: 30_000, probeAfterMs: null });
    const p = h.principal();
    const spec = { capacity: 2, windowSeconds: 60 };
    const reserved = await windows.reserve(p, 'rest', spec, 10_000);
    if (!reserved.allowed) throw new Error('reservation refused');
    expect(reserved.remaining).toBe(1);
    expect(await windows.status(p, 'rest', spec)).toMatchObject({ used: 1, remaining: 1 });
    // Someone spends the rest of the window while the reservation waits.
    await windows.settle(await admit(windows, p, spec), spec, answered);
    expect(await windows.take(p, 'rest', spec)).toMatchObject({ allowed: false, reason: 'window' });
    expect(await windows.reserve(p, 'rest', spec, 10_000)).toMatchObject({
      allowed: false,
      reason: 'window',
    });
    // The reserved request goes: admitted without asking the window, then settled like a take.
    const claimed = await windows.claim(reserved.ticket, spec);
    expect(claimed).toMatchObject({ principal: p, kind: 'rest' });
    expect(claimed.id).not.toBe(reserved.ticket.id);
    expect(await windows.status(p, 'rest', spec)).toMatchObject({ used: 2, remaining: 0 });
    await windows.settle(claimed, spec, answered);
    expect(await windows.status(p, 'rest', spec)).toMatchObject({ used: 2, remaining: 0 });
    // Only once: the reservation's place became the claimed request's.
    expectWait(h, await windows.take(p, 'rest', spec), W);
  });

  it('counts a reservation for its hold, and gives it back when released', async () => {
    const h = harness();
    const windows = h.windows({ inFlightMs: 30_000, probeAfterMs: null });
    const p = h.principal();
    const reserved = await windows.reserve(p, 'rest', ONE, 90_000);
    if (!reserved.allowed) throw new Error('reservation refused');
    expectWait(h, await windows.take(p, 'rest', ONE), 90_000 + W);
    await windows.release(reserved.ticket);
    expect(await windows.status(p, 'rest', ONE)).toMatchObject({ used: 0, remaining: 1 });
    expect((await windows.take(p, 'rest', ONE)).allowed).toBe(true);
  });

  it('does not hold takes back for a probe while a reservation waits, nor a reservation while a probe is out', async () => {
    const h = harness();
    const windows = h.windows({ probeAfterMs: 60_000 });
    const p = h.principal();
    const spec = { capacity: 10, windowSeconds: 60 };
    const reserved = await windows.reserve(p, 'rest', spec, 60_000);
    if (!reserved.allowed) throw new Error('reservation refused');
    // Nothing was sent for the reservation: the probe goes.
    const probe = await admit(windows, p, spec);
    expect(await windows.take(p, 'rest', spec)).toMatchObject({ allowed: false, reason: 'probe' });
    expect((await windows.reserve(p, 'rest', spec, 60_000)).allowed).toBe(true);
    await windows.settle(probe, spec, answered);
    expect((await windows.take(p, 'rest', spec)).allowed).toBe(true);
    // A claimed reservation is a request out like any other.
    const h2 = harness();
    const fresh = h2.windows({ probeAfterMs: 60_000 });
    const q = h2.principal();
    const held = await fresh.reserve(q, 'rest', spec, 60_000);
    if (!held.allowed) throw new Error('reservation refused');
    await fresh.claim(held.ticket, spec);
    expect(await fresh.take(q, 'rest', spec)).toMatchObject({ allowed: false, reason: 'probe' });
  });

  it('refuses a reservation while the principal is blocked', async () => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    const spec = { capacity: 5, windowSeconds: 60 };
    await windows.settle(await admit(windows, p, spec), spec, {
      answered: true,
      quota: null,
      blockMs: 20_000,
    });
    expect(await windows.reserve(p, 'rest', spec, 1000)).toMatchObject({ allowed: false, reason: 'blocked' });
  });
}

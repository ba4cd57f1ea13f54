import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { noopLogger } from '@warden/core';
import { createEgressLimiter } from './egress.ts';
import { createMemoryEgressStore } from './memory-egress.ts';
import { createMemoryWindows } from './memory-windows.ts';
import { buildUpstreamBudget, createUpstreamBudget } from './upstream-budget.ts';
import type { Admitted, BudgetEvent, Refusal, Reservation, UpstreamAnswer } from './upstream-budget.ts';

const REST = { capacity: 2, windowSeconds: 60 };
const P = 'cf:user:alice';
const ok: UpstreamAnswer = { status: 200, retryAfterSeconds: null, rateLimit: null, rateLimitPolicy: null };

function budget(options: { egressLimit?: number; probeAfterMs?: number | null; maxWaitMs?: number } = {}) {
  const events: BudgetEvent[] = [];
  const b = createUpstreamBudget({
    windows: createMemoryWindows({
      probeAfterMs: options.probeAfterMs === undefined ? null : options.probeAfterMs,
    }),
    egress: options.egressLimit
      ? createEgressLimiter({
          store: createMemoryEgressStore({ limit: options.egressLimit, windowMs: 60_000 }),
        })
      : null,
    graphql: { capacity: 1, windowSeconds: 300 },
    maxWaitMs: options.maxWaitMs ?? 50,
  });
  b.onEvent((e) => events.push(e));
  return { budget: b, events };
}

function admitted(result: Admitted | Refusal): Admitted {
  if (!result.allowed) throw new Error(`refused: ${result.message}`);
  return result;
}

function reserved(result: Reservation | Refusal): Reservation {
  if (!result.allowed) throw new Error(`refused: ${result.message}`);
  return result;
}

function refused(result: Admitted | Reservation | Refusal): Refusal {
  if (result.allowed) throw new Error('admitted');
  return result;
}

const rest = { principal: P, tenantId: 'ten_a', kind: 'rest', spec: REST } as const;

describe('the upstream budget (admit → send → observe)', () => {
  it('admits within the window and refuses beyond it, naming the budget and the wait', async () => {
    const { budget: b, events } = budget();
    await b.observe(admitted(await b.admit(rest)), ok);
    await b.observe(admitted(await b.admit(rest)), ok);
    const refusal = refused(await b.admit(rest));
    expect(refusal).toMatchObject({ budget: 'rest', reason: 'window' });
    expect(refusal.message).toMatch(
      /^the Cloudflare API budget of this Cloudflare user \(2 requests per 60 s\) is used up; retry in (59|60) s$/,
    );
    expect(events).toContainEqual({ type: 'refused', budget: 'rest', reason: 'window' });
    const status = await b.status(P, REST);
    expect(status.rest).toMatchObject({ capacity: 2, windowSeconds: 60, remaining: 0, used: 2 });
    expect(status.rest.nextRefillAt).toBeInstanceOf(Date);
    expect(status.graphql).toMatchObject({ capacity: 1, windowSeconds: 300, remaining: 1, used: 0 });
  });

  it('takes GraphQL queries from their own budget', async () => {
    const { budget: b } = budget();
    const graphql = { ...rest, kind: 'graphql' } as const;
    await b.observe(admitted(await b.admit(graphql)), ok);
    const refusal = refused(await b.admit(graphql));
    expect(refusal).toMatchObject({ budget: 'graphql', reason: 'window' });
    expect(refusal.message).toContain('GraphQL budget of this Cloudflare user (1 queries per 300 s)');
    admitted(await b.admit(rest));
  });

  it('blocks the principal on a 429 until Retry-After', async () => {
    const { budget: b } = budget();
    await b.observe(admitted(await b.admit(rest)), { ...ok, status: 429, retryAfterSeconds: 120 });
    const refusal = refused(await b.admit({ ...rest, kind: 'graphql' }));
    expect(refusal).toMatchObject({ budget: 'graphql', reason: 'blocked' });
    expect(refusal.retryAfterMs).toBeGreaterThan(119_000);
    expect(refusal.retryAfterMs).toBeLessThanOrEqual(120_000);
    expect(refusal.message).toMatch(
      /^Cloudflare asked to slow down \(429\) for this Cloudflare user; retry in 1[12]\d s$/,
    );
  });

  it("blocks for a second on a 429 without Retry-After that is not the API-wide limit's (an endpoint's own)", async () => {
    const { budget: b } = budget();
    await b.observe(admitted(await b.admit(rest)), {
      ...ok,
      status: 429,
      errors: [{ code: 10013 }, {}],
    });
    const refusal = refused(await b.admit(rest));
    expect(refusal).toMatchObject({ budget: 'rest', reason: 'blocked' });
    expect(refusal.retryAfterMs).toBeLessThanOrEqual(1_000);
    await sleep(1_050);
    admitted(await b.admit(rest));
  });

  it("blocks for Cloudflare's five-minute lockout on the API-wide limit's 429 without Retry-After (code 971 or 10100)", async () => {
    for (const code of [971, 10100]) {
      const { budget: b } = budget();
      await b.observe(admitted(await b.admit(rest)), { ...ok, status: 429, errors: [{ code }] });
      const refusal = refused(await b.admit({ ...rest, kind: 'graphql' }));
      expect(refusal).toMatchObject({ reason: 'blocked' });
      expect(refusal.retryAfterMs).toBeGreaterThan(299_000);
      expect(refusal.retryAfterMs).toBeLessThanOrEqual(300_000);
    }
  });

  it('gives the place of a request Cloudflare refused (429) back once the block is over: Cloudflare did not count it', async () => {
    const { budget: b } = budget();
    await b.observe(admitted(await b.admit(rest)), ok);
    await b.observe(admitted(await b.admit(rest)), { ...ok, status: 429, retryAfterSeconds: 1 });
    expect(refused(await b.admit(rest))).toMatchObject({ reason: 'blocked' });
    await sleep(1_050);
    // REST holds 2 a window: the accepted request, and the one place the refused request took back.
    admitted(await b.admit(rest));
    expect(refused(await b.admit(rest))).toMatchObject({ reason: 'window' });
  });

  it('gives the place of a request to a route Cloudflare does not have (404, code 7000) back, not of an unknown id (7003)', async () => {
    const { budget: b } = budget();
    const noRoute = { ...ok, status: 404, errors: [{ code: 7000 }] };
    for (let i = 0; i < 3; i++) await b.observe(admitted(await b.admit(rest)), noRoute);
    await b.observe(admitted(await b.admit(rest)), { ...ok, status: 404, errors: [{ code: 7003 }] });
    await b.observe(admitted(await b.admit(rest)), ok);
    // REST holds 2 a window: the unknown id and the answered request; the three without a route took none.
    expect(refused(await b.admit(rest))).toMatchObject({ reason: 'window' });
  });

  it("follows Cloudflare's Ratelimit header when it reports fewer requests left", async () => {
    const { budget: b } = budget();
    const wide = { capacity: 100, windowSeconds: 300 };
    await b.observe(admitted(await b.admit({ ...rest, spec: wide })), {
      ...ok,
      rateLimit: '"default";r=1;t=250',
      rateLimitPolicy: '"default";q=1200;w=300',
    });
    const status = await b.status(P, wide);
    expect(status.rest).toMatchObject({ remaining: 1, used: 1, cloudflare: { remaining: 1, binding: true } });
    admitted(await b.admit({ ...rest, spec: wide }));
    const refusal = refused(await b.admit({ ...rest, spec: wide }));
    expect(refusal).toMatchObject({ budget: 'rest', reason: 'cloudflare' });
    expect(refusal.message).toContain('Cloudflare reports the API quota of this Cloudflare user as used up');
  });

  it('tolerates garbage rate headers', async () => {
    const { budget: b } = budget();
    await b.observe(admitted(await b.admit(rest)), { ...ok, rateLimit: 'r=;;', rateLimitPolicy: '\u0000' });
    expect((await b.status(P, REST)).rest).toMatchObject({ remaining: 1, cloudflare: null });
  });

  it('waits for a window that frees within the wait', async () => {
    const { budget: b } = budget({ maxWaitMs: 5000 });
    const short = { capacity: 1, windowSeconds: 0.1 };
    await b.observe(admitted(await b.admit({ ...rest, spec: short })), ok);
    admitted(await b.admit({ ...rest, spec: short }));
  });

  it('lets one request go first to a principal Cloudflare has not answered for lately', async () => {
    const { budget: b } = budget({ probeAfterMs: 60_000, maxWaitMs: 5000 });
    const wide = { capacity: 10, windowSeconds: 60 };
    const burst = Array.from({ length: 4 }, () => b.admit({ ...rest, spec: wide }));
    const first = admitted(await burst[0]!);
    await sleep(30);
    await b.observe(first, ok);
    for (const other of burst.slice(1)) admitted(await other);
  });

  it('limits egress per tenant and gives the principal its place back when egress refuses', async () => {
    const { budget: b, events } = budget({ egressLimit: 1 });
    const wide = { capacity: 10, windowSeconds: 60 };
    const first = admitted(await b.admit({ ...rest, spec: wide }));
    expect(first.egress).not.toBeNull();
    const refusal = refused(await b.admit({ ...rest, spec: wide }));
    expect(refusal).toMatchObject({ budget: 'egress', reason: 'queue_timeout' });
    expect(refusal.message).toMatch(/^Warden's egress budget \(1 requests per second from its IP address/);
    expect((await b.status(P, wide)).rest.used).toBe(1);
    expect(events.filter((e) => e.type === 'egress_wait')).toHaveLength(2);
    await b.release(first);
    expect((await b.status(P, wide)).rest.used).toBe(0);
    admitted(await b.admit({ ...rest, spec: wide }));
  });

  it('admits a request of a principal not known yet on egress alone, and charges it once known', async () => {
    const { budget: b } = budget({ egressLimit: 5 });
    const verify = admitted(await b.admit({ ...rest, principal: null }));
    expect(verify.ticket).toBeNull();
    await b.observe(verify, ok, { principal: P });
    expect((await b.status(P, REST)).rest).toMatchObject({ used: 1, remaining: 1 });
  });

  it('builds an in-process budget for the embedded mode', async () => {
    const b = buildUpstreamBudget({
      redis: null,
      logger: noopLogger,
      onRedisFailure: 'refuse',
      replicas: 1,
      graphql: { capacity: 320, windowSeconds: 300 },
      egressLimit: 200,
      egressPool: 'default',
      maxWaitMs: 250,
      maxQueue: 100,
    });
    const first = admitted(await b.admit(rest));
    expect(first.egress).not.toBeNull();
    await b.observe(first, ok);
    expect((await b.status(P, REST)).rest.used).toBe(1);
    expect(b.degraded).toBe(false);
    await b.close();
  });

  it('reserves a place that admit uses once, whatever was spent meanwhile; an unused one is given back', async () => {
    const { budget: b } = budget({ egressLimit: 1 });
    const reservation = reserved(await b.reserve({ principal: P, kind: 'rest', spec: REST, holdMs: 60_000 }));
    await b.observe(admitted(await b.admit(rest)), ok);
    expect(refused(await b.admit(rest))).toMatchObject({ budget: 'rest', reason: 'window' });
    expect(refused(await b.reserve({ principal: P, kind: 'rest', spec: REST, holdMs: 1000 }))).toMatchObject({
      budget: 'rest',
      reason: 'window',
    });
    // The egress budget (1 per minute here, used above) still applies: refused, the reservation stays unused.
    expect(refused(await b.admit({ ...rest, reservation }))).toMatchObject({ budget: 'egress' });
    const other = budget();
    const held = reserved(
      await other.budget.reserve({ principal: P, kind: 'rest', spec: REST, holdMs: 60_000 }),
    );
    await other.budget.observe(admitted(await other.budget.admit(rest)), ok);
    const sent = admitted(await other.budget.admit({ ...rest, reservation: held }));
    await other.budget.observe(sent, ok);
    await expect(other.budget.admit({ ...rest, reservation: held })).rejects.toThrow(/used twice/);
    await other.budget.release(held); // used: gives nothing back
    expect((await other.budget.status(P, REST)).rest).toMatchObject({ used: 2, remaining: 0 });

    const third = budget();
    const unused = reserved(
      await third.budget.reserve({ principal: P, kind: 'rest', spec: REST, holdMs: 60_000 }),
    );
    expect((await third.budget.status(P, REST)).rest).toMatchObject({ used: 1, remaining: 1 });
    await third.budget.release(unused);
    expect((await third.budget.status(P, REST)).rest).toMatchObject({ used: 0, remaining: 2 });
  });
});

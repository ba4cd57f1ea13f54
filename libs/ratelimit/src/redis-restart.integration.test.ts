/**
 * Issue 21: a Redis restart loses every budget window. With a deployment budget below
 * Cloudflare's quota, Cloudflare's count after the restart cannot tell Warden's own earlier
 * requests from the dashboard's, so it must not hand the deployment its whole budget again:
 * until a window has passed since the restart, what Cloudflare counts counts here too.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomString } from '@warden/core';
import { startRedisServer } from '@warden/testing';
import type { RedisServer } from '@warden/testing';
import { createBudgetRedisClient } from './redis-client.ts';
import { createRedisWindows } from './redis-windows.ts';
import type { PrincipalWindows, WindowTake, WindowTicket } from './windows.ts';

const SPEC = { capacity: 5, windowSeconds: 300 };
const QUOTA = 100;

describe('budget windows across a Redis restart', () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  const all: PrincipalWindows[] = [];

  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    for (const w of all) await w.close();
    for (const c of clients) c.disconnect();
    await server?.stop();
  });

  async function replica(): Promise<PrincipalWindows> {
    const redis = createBudgetRedisClient(server.url, { lazyConnect: true });
    redis.on('error', () => {}); // the restart cuts the connection on purpose
    clients.push(redis);
    await redis.connect();
    const windows = createRedisWindows({ redis, keyPrefix: 'restart' });
    all.push(windows);
    return windows;
  }

  async function ready(redis: Redis): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (redis.status !== 'ready') {
      if (Date.now() > deadline) throw new Error('the client did not reconnect');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Cloudflare's answer after it has counted `counted` requests of the principal in its window. */
  function answer(windows: PrincipalWindows, ticket: WindowTicket, counted: number): Promise<void> {
    return windows.settle(ticket, SPEC, {
      answered: true,
      quota: {
        name: 'default',
        remaining: QUOTA - counted,
        resetSeconds: 300,
        quota: QUOTA,
        windowSeconds: 300,
      },
      blockMs: 0,
    });
  }

  function ticketOf(take: WindowTake): WindowTicket {
    if (!take.allowed) throw new Error(`refused: ${take.reason}`);
    return take.ticket;
  }

  it('does not hand the budget out again after a restart; a replica that never saw the old server is not held back', async () => {
    const principal = `cf:user:${randomString(8)}`;
    const windows = await replica();
    // Cloudflare has counted 10 requests of this principal: 5 from the dashboard, then Warden's 5.
    let counted = 5;
    for (let i = 0; i < SPEC.capacity; i++) {
      await answer(windows, ticketOf(await windows.take(principal, 'rest', SPEC)), ++counted);
    }
    expect(await windows.take(principal, 'rest', SPEC)).toMatchObject({ allowed: false, reason: 'window' });

    await server.restart();
    await ready(clients[0]!);
    // Nothing is known of the principal now: one request goes out to learn Cloudflare's count.
    const probe = ticketOf(await windows.take(principal, 'rest', SPEC));
    await answer(windows, probe, counted + 1);
    // Cloudflare counts 11, Warden's new log 1: the 10 "others" may be Warden's own from before
    // the restart, so the budget of 5 stays used up, for concurrent takes too.
    const takes = await Promise.all(Array.from({ length: 4 }, () => windows.take(principal, 'rest', SPEC)));
    for (const take of takes) expect(take).toMatchObject({ allowed: false, reason: 'window' });
    const waits = takes.map((t) => (t.allowed ? 0 : t.retryAfterMs));
    // Until Cloudflare's figure (a window after its answer) or a window after the restart ends.
    for (const wait of waits) expect(wait).toBeGreaterThan(290_000);
    const status = await windows.status(principal, 'rest', SPEC);
    expect(status.remaining).toBe(0);

    // A replica that starts after the restart cannot know of it and trusts Redis as it finds it.
    const later = await replica();
    const fresh = `cf:user:${randomString(8)}`;
    await answer(later, ticketOf(await later.take(fresh, 'rest', SPEC)), 50);
    expect(await later.take(fresh, 'rest', SPEC)).toMatchObject({ allowed: true });
  }, 60_000);
});

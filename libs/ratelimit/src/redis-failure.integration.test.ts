import { once } from 'node:events';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { WardenError, noopLogger, randomString } from '@warden/core';
import type { Logger } from '@warden/core';
import { createFallbackRateBudget } from './fallback-bucket.ts';
import { budgetKeys, createBudgetRedisClient, createRedisRateBudget } from './redis-bucket.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';
const SPEC = { capacity: 10, windowSeconds: 3600 };
const P = 'cf:user:failure';

const clients: Redis[] = [];
const servers: Server[] = [];
const sockets: Socket[] = [];

afterAll(async () => {
  for (const client of clients) client.disconnect();
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Accepts connections and never answers: Redis hanging rather than gone. */
async function silentServer(): Promise<number> {
  const server = createServer((socket) => sockets.push(socket)).listen(0, '127.0.0.1');
  servers.push(server);
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

function client(url: string, overrides = {}): Redis {
  const redis = createBudgetRedisClient(url, overrides);
  redis.on('error', () => {}); // connection errors are expected here
  clients.push(redis);
  return redis;
}

async function timed<T>(promise: Promise<T>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { ms: performance.now() - start, error };
}

function expectUnavailable(error: unknown): void {
  expect(error).toBeInstanceOf(WardenError);
  expect((error as WardenError).code).toBe('unavailable');
  expect((error as WardenError).message).not.toMatch(/127\.0\.0\.1|ECONN/);
}

describe('when Redis is down', () => {
  it('refuses with unavailable at once when nothing listens', async () => {
    const budget = createRedisRateBudget({ redis: client(`redis://127.0.0.1:${await closedPort()}`) });
    const calls: Array<Promise<unknown>> = [
      budget.take(P, SPEC),
      budget.peek(P, SPEC),
      budget.block(P, 10),
      budget.health(),
    ];
    for (const call of calls) {
      const { ms, error } = await timed(call);
      expectUnavailable(error);
      expect(ms).toBeLessThan(2000);
    }
  });

  it('refuses with unavailable within the command timeout when Redis hangs', async () => {
    const port = await silentServer();
    // No ready check, so the client believes it is connected and sends the script.
    const redis = client(`redis://127.0.0.1:${port}`, { enableReadyCheck: false, lazyConnect: true });
    await redis.connect();
    const budget = createFallbackRateBudget(createRedisRateBudget({ redis }), { logger: noopLogger });
    const first = await timed(budget.take(P, SPEC));
    expectUnavailable(first.error);
    expect(first.ms).toBeLessThan(2000);
    // The breaker is open: the next requests do not each wait for a timeout.
    const rest = await timed(Promise.all(Array.from({ length: 20 }, () => budget.take(P, SPEC))));
    expectUnavailable(rest.error);
    expect(rest.ms).toBeLessThan(first.ms);
  });

  it('in fallback mode allows at most capacity ÷ replicas, then refuses with a wait', async () => {
    const warnings: object[] = [];
    const logger: Logger = { ...noopLogger, warn: (obj) => warnings.push(obj), child: () => logger };
    const redis = client(`redis://127.0.0.1:${await closedPort()}`);
    const budget = createFallbackRateBudget(createRedisRateBudget({ redis }), {
      logger,
      fallback: { replicas: 4 },
    });
    const results = await Promise.all(Array.from({ length: 10 }, () => budget.take(P, SPEC)));
    expect(results.filter((r) => r.allowed)).toHaveLength(2);
    for (const r of results.filter((r) => !r.allowed)) {
      expect(r).toMatchObject({ allowed: false, reason: 'exhausted' });
      expect(!r.allowed && r.retryAfterMs).toBeGreaterThan(0);
    }
    expect(budget.degraded).toBe(true);
    expect(warnings).toEqual([expect.objectContaining({ mode: 'local', replicas: 4 })]);
  });

  it('goes back to the shared budget when Redis recovers', async () => {
    const keyPrefix = `test:rl:${randomString(12)}`;
    const redis = client(REDIS_URL, { lazyConnect: true });
    await redis.connect();
    const budget = createFallbackRateBudget(createRedisRateBudget({ redis, keyPrefix }), {
      logger: noopLogger,
      fallback: { replicas: 2 },
      probeIntervalMs: 0,
    });
    const key = budgetKeys(keyPrefix, P).bucket;
    expect(await budget.take(P, SPEC)).toEqual({ allowed: true, remaining: 9 });

    redis.disconnect();
    await once(redis, 'end');
    expect(await budget.take(P, SPEC)).toEqual({ allowed: true, remaining: 4 });
    expect(budget.degraded).toBe(true);

    await redis.connect();
    expect(await budget.take(P, SPEC)).toEqual({ allowed: true, remaining: 8 });
    expect(budget.degraded).toBe(false);
    expect(Math.round(Number(await redis.hget(key, 'tokens')))).toBe(8);
    await redis.del(key);
  });
});

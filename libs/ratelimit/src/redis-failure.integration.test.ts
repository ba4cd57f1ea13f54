import { once } from 'node:events';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { WardenError, noopLogger, randomString } from '@warden/core';
import { freePort } from '@warden/testing';
import type { Logger } from '@warden/core';
import { createBudgetRedisClient } from './redis-client.ts';
import { windowKeys } from './redis-windows.ts';
import { buildUpstreamBudget } from './upstream-budget.ts';
import type { BuildUpstreamBudgetOptions, UpstreamBudget } from './upstream-budget.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';
const SPEC = { capacity: 10, windowSeconds: 3600 };
const P = 'cf:user:failure';
const REQUEST = { principal: P, tenantId: 'ten_a', kind: 'rest', spec: SPEC } as const;

const clients: Redis[] = [];
const servers: Server[] = [];
const sockets: Socket[] = [];

afterAll(async () => {
  for (const client of clients) client.disconnect();
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

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

function build(redis: Redis, overrides: Partial<BuildUpstreamBudgetOptions> = {}): UpstreamBudget {
  return buildUpstreamBudget({
    redis,
    logger: noopLogger,
    onRedisFailure: 'refuse',
    replicas: 1,
    graphql: { capacity: 320, windowSeconds: 300 },
    egressLimit: 200,
    egressPool: 'default',
    maxWaitMs: 250,
    maxQueue: 100,
    probeAfterMs: null,
    ...overrides,
  });
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
    const budget = build(client(`redis://127.0.0.1:${await freePort()}`));
    const calls: Array<Promise<unknown>> = [budget.admit(REQUEST), budget.status(P, SPEC), budget.health()];
    for (const call of calls) {
      const { ms, error } = await timed(call);
      expectUnavailable(error);
      expect(ms).toBeLessThan(2000);
    }
    expect(budget.degraded).toBe(true);
  });

  it('refuses with unavailable within the command timeout when Redis hangs, then skips it', async () => {
    const port = await silentServer();
    // No ready check, so the client believes it is connected and sends the script.
    const redis = client(`redis://127.0.0.1:${port}`, { enableReadyCheck: false, lazyConnect: true });
    await redis.connect();
    const budget = build(redis);
    const first = await timed(budget.admit(REQUEST));
    expectUnavailable(first.error);
    expect(first.ms).toBeLessThan(2000);
    // The breaker is open: the next requests do not each wait for a timeout.
    const rest = await timed(Promise.all(Array.from({ length: 20 }, () => budget.admit(REQUEST))));
    expectUnavailable(rest.error);
    expect(rest.ms).toBeLessThan(first.ms);
  });

  it('in fallback mode admits at most capacity ÷ replicas, then refuses with a wait', async () => {
    const warnings: object[] = [];
    const logger: Logger = { ...noopLogger, warn: (obj) => warnings.push(obj), child: () => logger };
    const budget = build(client(`redis://127.0.0.1:${await freePort()}`), {
      logger,
      onRedisFailure: 'local',
      replicas: 4,
    });
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await budget.admit(REQUEST));
    expect(results.filter((r) => r.allowed)).toHaveLength(2);
    for (const r of results.filter((r) => !r.allowed)) {
      expect(r).toMatchObject({ allowed: false, budget: 'rest', reason: 'window' });
    }
    expect(budget.degraded).toBe(true);
    expect(warnings).toEqual([expect.objectContaining({ mode: 'local', replicas: 4 })]);
  });

  it('goes back to the shared windows when Redis recovers', async () => {
    const keyPrefix = `test:rl:${randomString(12)}`;
    const redis = client(REDIS_URL, { lazyConnect: true });
    await redis.connect();
    const budget = buildUpstreamBudget({
      redis,
      keyPrefix,
      logger: noopLogger,
      onRedisFailure: 'local',
      replicas: 2,
      graphql: { capacity: 320, windowSeconds: 300 },
      egressLimit: 0,
      egressPool: 'default',
      maxWaitMs: 0,
      maxQueue: 1,
      probeAfterMs: null,
    });
    const log = windowKeys(keyPrefix, P, 'rest').log;
    expect(await budget.admit(REQUEST)).toMatchObject({ allowed: true });

    redis.disconnect();
    await once(redis, 'end');
    const local = await budget.admit(REQUEST);
    expect(local).toMatchObject({ allowed: true });
    expect(local.allowed && local.ticket?.id).toMatch(/^local:/);
    expect(budget.degraded).toBe(true);

    await redis.connect();
    // The breaker probes again a second later.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await budget.admit(REQUEST)).toMatchObject({ allowed: true });
    expect(budget.degraded).toBe(false);
    expect(await redis.zcard(log)).toBe(2);
    await redis.del(log, windowKeys(keyPrefix, P, 'rest').meta);
  });
});

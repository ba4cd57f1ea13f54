/**
 * `npm run bench -- budget [--json] [--seconds 3] [--concurrency 16]`: the cost of one take from
 * the window-exact Redis budget at a window holding 1,200 entries (Cloudflare's 1,200 per five
 * minutes), against the token bucket's take script it replaced, measured in the same run on the
 * same Redis (`REDIS_URL`, default redis://127.0.0.1:6379; keys under a random prefix, deleted
 * at the end).
 *
 * - take_p50_us: an admitted take at a window holding 1,199 entries (1,200 once admitted); the
 *   entry is released after each sample, outside the timing. Latency of one call in flight, so
 *   the round trip to Redis is in every figure, the bucket's too.
 * - take_refused_p50_us: a take at a full window (1,200 entries): the refusal also reads when
 *   the oldest entry leaves.
 * - take_probe_p50_us: an admitted take while no answer from Cloudflare came lately (the first
 *   request after an idle spell), which also reads the admission time of every entry.
 * - settle_p50_us: the settlement after a response (the second call of the pair).
 * - take_per_s / bucket_take_per_s: `--concurrency` callers taking back to back (the window's
 *   callers release after each take, which the figure does not count).
 * - bucket_take_p50_us: the former token bucket's take (a bucket that never runs dry).
 * - memory_bytes_at_1200: Redis `MEMORY USAGE` of the window's keys holding 1,200 entries.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { createBudgetRedisClient, createRedisWindows, windowKeys } from '@warden/ratelimit';
import type { PrincipalWindows } from '@warden/ratelimit';
import {
  environmentInfo,
  machineInfo,
  numberArg,
  percentile,
  round,
  startCpuAccount,
} from './bench-utils.ts';

/**
 * The token bucket's take, as `libs/ratelimit/src/take-script.ts` had it before the window
 * replaced it (commit ffe6ce5): kept here only as the baseline this suite compares against.
 */
const BUCKET_TAKE_LUA = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local capacity = tonumber(ARGV[1])
local rate = capacity / tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local eps = 1e-9

local tokens = capacity
local ts = now
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local stored_tokens = tonumber(state[1])
local stored_ts = tonumber(state[2])
if stored_tokens and stored_ts then
  if now > stored_ts then
    tokens = math.min(capacity, stored_tokens + (now - stored_ts) * rate)
  else
    tokens = math.min(capacity, stored_tokens)
    ts = stored_ts
  end
end
local whole = math.max(0, math.floor(tokens + eps))

local wait = 0
if tokens + eps < cost then
  wait = math.max(1, math.ceil((cost - tokens - eps) / rate))
end

local blocked_until = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if blocked_until > now then
  return {0, 0, math.max(math.ceil(blocked_until - now), wait), 'blocked'}
end
if cost == 0 then
  return {1, whole, 0, ''}
end
if wait > 0 then
  return {0, whole, wait, 'exhausted'}
end

tokens = math.max(0, tokens - cost)
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((capacity - tokens - eps) / rate)))
return {1, math.max(0, math.floor(tokens + eps)), 0, ''}
`;

const WINDOW = { capacity: 1200, windowSeconds: 300 };
const answered = { answered: true, quota: null, blockMs: 0 } as const;

/** Per-call latencies (µs) of `op`, one in flight, for `seconds` after a warm-up; `after` runs untimed. */
async function latencies(
  op: () => Promise<unknown>,
  seconds: number,
  after?: (result: unknown) => Promise<unknown>,
): Promise<number[]> {
  const run = async (ms: number, keep: boolean) => {
    const samples: number[] = [];
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const result = await op();
      if (keep) samples.push((performance.now() - t0) * 1000);
      if (after) await after(result);
    }
    return samples;
  };
  await run(Math.max(250, seconds * 250), false);
  return run(seconds * 1000, true);
}

/** Operations per second with `concurrency` callers back to back. */
async function throughput(op: () => Promise<unknown>, concurrency: number, seconds: number): Promise<number> {
  let done = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        await op();
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

/** Fills a principal's window with `count` answered requests spread over its last 290 s. */
async function fill(redis: Redis, keyPrefix: string, principal: string, count: number): Promise<void> {
  const [seconds, micros] = await redis.time();
  const nowUs = Number(seconds) * 1_000_000 + Number(micros);
  const { log, meta } = windowKeys(keyPrefix, principal, 'rest');
  const args: Array<string | number> = [];
  for (let i = 0; i < count; i++) {
    const at = nowUs - Math.round(((count - i) / count) * 290_000_000);
    args.push(at, `${i + 1}:${at}`);
  }
  await redis.zadd(log, ...args);
  await redis.hset(meta, 'seq', count, 'seen', nowUs);
  await redis.pexpire(log, 600_000);
  await redis.pexpire(meta, 600_000);
}

async function admittedTake(windows: PrincipalWindows, principal: string) {
  const take = await windows.take(principal, 'rest', WINDOW);
  if (!take.allowed) throw new Error(`a take the window had room for was refused: ${take.reason}`);
  return take;
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const seconds = numberArg(args, 'seconds', 3);
  const concurrency = numberArg(args, 'concurrency', 16);
  const redis = createBudgetRedisClient(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
    lazyConnect: true,
    commandTimeout: 10_000,
  });
  await redis.connect();
  const keyPrefix = `bench:rl:${randomBytes(6).toString('hex')}`;
  try {
    const before = machineInfo('start');
    const cpu = startCpuAccount();
    // The service probes Cloudflare after an idle second; a busy principal has fresh answers.
    const windows = createRedisWindows({ redis, keyPrefix, probeAfterMs: null });

    const open = 'cf:user:bench-open';
    await fill(redis, keyPrefix, open, 1199);
    const take = await latencies(
      () => admittedTake(windows, open),
      seconds,
      (t) => windows.release((t as Awaited<ReturnType<typeof admittedTake>>).ticket),
    );
    const openKeys = windowKeys(keyPrefix, open, 'rest');
    if ((await redis.zcard(openKeys.log)) !== 1199)
      throw new Error('the window did not stay at 1,199 entries');

    const full = 'cf:user:bench-full';
    await fill(redis, keyPrefix, full, 1200);
    const refused = await latencies(async () => {
      const t = await windows.take(full, 'rest', WINDOW);
      if (t.allowed) throw new Error('a full window admitted a take');
    }, seconds);
    const fullKeys = windowKeys(keyPrefix, full, 'rest');
    const memoryBytes =
      Number(await redis.call('MEMORY', 'USAGE', fullKeys.log)) +
      Number(await redis.call('MEMORY', 'USAGE', fullKeys.meta));

    const probing = createRedisWindows({ redis, keyPrefix, probeAfterMs: 0 });
    const stale = 'cf:user:bench-stale';
    await fill(redis, keyPrefix, stale, 1199);
    await redis.hdel(windowKeys(keyPrefix, stale, 'rest').meta, 'seen');
    const probe = await latencies(
      () => admittedTake(probing, stale),
      seconds,
      (t) => probing.release((t as Awaited<ReturnType<typeof admittedTake>>).ticket),
    );

    const settled = 'cf:user:bench-settle';
    await fill(redis, keyPrefix, settled, 1199);
    const settleSamples: number[] = [];
    const deadline = performance.now() + seconds * 1000;
    while (performance.now() < deadline) {
      const t = await admittedTake(windows, settled);
      const t0 = performance.now();
      await windows.settle(t.ticket, WINDOW, answered);
      settleSamples.push((performance.now() - t0) * 1000);
      await windows.release(t.ticket);
    }

    // Throughput: room for every caller's take at once, released right after.
    const wide = { capacity: 1200 + concurrency, windowSeconds: 300 };
    const busy = 'cf:user:bench-busy';
    await fill(redis, keyPrefix, busy, 1199);
    const takePerS = await throughput(
      async () => {
        const t = await windows.take(busy, 'rest', wide);
        if (!t.allowed) throw new Error('a take the window had room for was refused');
        await windows.release(t.ticket);
      },
      concurrency,
      seconds,
    );

    const bucketSha = createHash('sha1').update(BUCKET_TAKE_LUA).digest('hex');
    const bucketKeys = [`{${keyPrefix}:bucket}:bucket`, `{${keyPrefix}:bucket}:block`];
    const bucketTake = async () => {
      // A bucket that never runs dry: the admitted path, like the window's.
      const reply = (await redis.evalsha(
        bucketSha,
        2,
        ...bucketKeys,
        1_000_000_000,
        300_000,
        1,
      )) as unknown[];
      if (reply[0] !== 1) throw new Error('the bucket refused');
    };
    await redis.script('LOAD', BUCKET_TAKE_LUA);
    const bucket = await latencies(bucketTake, seconds);
    const bucketPerS = await throughput(bucketTake, concurrency, seconds);

    const account = cpu.stop();
    const p50 = (samples: number[]) => round(percentile(samples, 50), 1);
    return {
      ...environmentInfo(),
      ...before,
      seconds_per_figure: seconds,
      concurrency,
      window_entries: 1200,
      take_p50_us: p50(take),
      take_p99_us: round(percentile(take, 99), 1),
      take_per_s: Math.round(takePerS),
      take_refused_p50_us: p50(refused),
      take_probe_p50_us: p50(probe),
      settle_p50_us: p50(settleSamples),
      bucket_take_p50_us: p50(bucket),
      bucket_take_p99_us: round(percentile(bucket, 99), 1),
      bucket_take_per_s: Math.round(bucketPerS),
      take_cost_vs_bucket: round(percentile(take, 50) / percentile(bucket, 50), 2),
      memory_bytes_at_1200: memoryBytes,
      redis_cpu_ms: round(account.redisMs, 1),
      ...machineInfo('end'),
    };
  } finally {
    const keys = await redis.keys(`{${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  }
}

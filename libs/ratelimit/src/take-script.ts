import { createHash } from 'node:crypto';

export interface LuaScript {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/**
 * One atomic take (or, with cost 0, a read-only peek) — the Lua twin of `token-bucket.ts`.
 * Redis `TIME` is the only clock, so replicas with skewed clocks share one budget.
 *
 * KEYS[1] bucket hash {tokens, ts}; KEYS[2] block-until (ms on the Redis clock). Both keys share
 *   one hash tag, so the script runs on Redis Cluster.
 * ARGV[1] capacity, ARGV[2] window in ms, ARGV[3] cost (0 = peek).
 * Returns {allowed 0|1, whole tokens remaining, retry-after ms, reason}.
 */
export const TAKE_SCRIPT = script(`
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
    -- After a failover to a replica whose clock is behind: no refill, no rewind.
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
-- Once full again the bucket is the same as no bucket, so it may vanish then.
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((capacity - tokens - eps) / rate)))
return {1, math.max(0, math.floor(tokens + eps)), 0, ''}
`);

/**
 * Blocks a principal after an upstream 429; only ever extends an existing block.
 * KEYS[1] block-until key; ARGV[1] block length in ms. Returns 1 if the block was extended.
 */
export const BLOCK_SCRIPT = script(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local ms = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if current >= now + ms then
  return 0
end
redis.call('SET', KEYS[1], now + ms, 'PX', ms)
return 1
`);

import { luaScript } from './redis-client.ts';

/*
 * The sliding window of one principal and kind (REST or GraphQL), in Redis. `memory-windows.ts` is
 * the same logic in TypeScript; keep the two in step.
 *
 * Times are microseconds on Redis `TIME`, the only clock, so replicas with skewed clocks share
 * one window. Numbers go into Redis commands as Lua numbers (written with 17 significant digits,
 * exact for integers below 2^53) and never through tostring(), which keeps only 14.
 *
 * KEYS[1] the log: a sorted set, member = request id, score = when it counts from. An admitted
 *   request scores admission + in-flight time until its answer is reported, then the time of
 *   that report; entries at or below now - window are out of the window.
 * KEYS[2] the meta hash: seq (id counter), block (until), seen (last answer from Cloudflare),
 *   osince (admission time of the latest answer applied) and, while Cloudflare's figure is lower
 *   than the window's: cf_r (remaining), cf_since, cf_id (the answered request), cf_reset, cf_until.
 * All keys of a principal share one hash tag, so the scripts run on Redis Cluster.
 */

/**
 * A take (ARGV[3] = 'take') or a read (anything else).
 * KEYS[3] the REST meta hash (its block stops GraphQL too); KEYS[2] again for REST.
 * ARGV[1] capacity, ARGV[2] window µs, ARGV[4] in-flight µs, ARGV[5] probe-after µs (-1 = never),
 * ARGV[6] the wait to suggest while a probe is out, µs.
 * Returns {allowed, remaining, wait µs, reason, now, id, count, oldest score (-1 = none), block,
 *   has Cloudflare figure 0|1, its remaining, its reset, own remaining}.
 */
export const WINDOW_TAKE_SCRIPT = luaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local take = ARGV[3] == 'take'
local inflight = tonumber(ARGV[4])
local probe_after = tonumber(ARGV[5])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local m = redis.call('HMGET', KEYS[2], 'block', 'seen', 'cf_r', 'cf_since', 'cf_id', 'cf_reset', 'cf_until')
local block = tonumber(m[1]) or 0
if KEYS[3] ~= KEYS[2] then
  block = math.max(block, tonumber(redis.call('HGET', KEYS[3], 'block')) or 0)
end
local own = capacity - count

-- Cloudflare's figure: at most cf_r requests it had not counted yet, i.e. entries since the
-- answered request's admission other than that request itself; one more after its reset.
local has_cf = 0
local cf_left = 0
local cf_reset = 0
local cf_r = tonumber(m[3])
if cf_r and now < (tonumber(m[7]) or 0) then
  has_cf = 1
  local used = redis.call('ZCOUNT', KEYS[1], m[4], '+inf')
  if m[5] and redis.call('ZSCORE', KEYS[1], m[5]) then used = used - 1 end
  cf_reset = tonumber(m[6])
  local allowance = cf_r
  if now >= cf_reset then allowance = allowance + 1 end
  cf_left = allowance - used
end

local reason = ''
local wait = 0
if block > now then
  reason = 'blocked'
  wait = block - now
elseif own <= 0 then
  local e = redis.call('ZRANGE', KEYS[1], count - capacity, count - capacity, 'WITHSCORES')
  reason = 'window'
  wait = tonumber(e[2]) + window - now
elseif has_cf == 1 and cf_left <= 0 then
  reason = 'cloudflare'
  if now < cf_reset then wait = cf_reset - now else wait = tonumber(ARGV[6]) end
elseif probe_after >= 0 and now - (tonumber(m[2]) or 0) > probe_after
    and redis.call('ZCOUNT', KEYS[1], string.format('(%.0f', now), '+inf') > 0 then
  -- No recent answer from Cloudflare and a request is out: wait for its answer before a burst.
  reason = 'probe'
  wait = tonumber(ARGV[6])
end

local remaining = own
if has_cf == 1 and cf_left < remaining then remaining = cf_left end
if block > now or remaining < 0 then remaining = 0 end

if not take then
  local oldest = -1
  if count > 0 then oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) end
  return {0, remaining, wait, reason, now, '', count, oldest, block, has_cf, cf_left, cf_reset, own}
end
if reason ~= '' then
  return {0, remaining, wait, reason, now, ''}
end

local id = tostring(redis.call('HINCRBY', KEYS[2], 'seq', 1))
redis.call('ZADD', KEYS[1], now + inflight, id)
-- The log empties at most window after its latest entry; the meta (with seq) outlives it.
local ttl = math.ceil((inflight + window) / 1000) + 1
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
remaining = remaining - 1
if remaining < 0 then remaining = 0 end
return {1, remaining, 0, '', now, id}
`);

/**
 * Settles an admitted request: it now counts from this moment (never later than it did), and
 * Cloudflare's answer is applied.
 * ARGV[1] id ('' charges a request sent without a take), ARGV[2] its admission µs,
 * ARGV[3] answered 1|0, ARGV[4] Cloudflare's remaining (-1 = no figure), ARGV[5] its reset µs,
 * ARGV[6] how long its figure matters µs, ARGV[7] block µs (0 = none), ARGV[8] capacity,
 * ARGV[9] window µs, ARGV[10] in-flight µs.
 */
export const WINDOW_SETTLE_SCRIPT = luaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local id = ARGV[1]
local since = tonumber(ARGV[2])
local window = tonumber(ARGV[9])
local inflight = tonumber(ARGV[10])
if id == '' then
  id = tostring(redis.call('HINCRBY', KEYS[2], 'seq', 1))
  redis.call('ZADD', KEYS[1], now, id)
  since = now - inflight
  if redis.call('PTTL', KEYS[1]) < math.ceil(window / 1000) + 1 then
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
  end
else
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) > now then redis.call('ZADD', KEYS[1], 'XX', now, id) end
end

local keep_until = now + inflight + window
if ARGV[3] == '1' and now > (tonumber(redis.call('HGET', KEYS[2], 'seen')) or 0) then
  redis.call('HSET', KEYS[2], 'seen', now)
end

local r = tonumber(ARGV[4])
if r >= 0 then
  local observed = tonumber(redis.call('HGET', KEYS[2], 'osince'))
  -- Answers arrive out of order; one about an earlier admission knows less.
  if not observed or since >= observed then
    redis.call('HSET', KEYS[2], 'osince', since)
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
    local own = tonumber(ARGV[8]) - redis.call('ZCARD', KEYS[1])
    if r < own then
      local cf_until = now + tonumber(ARGV[6])
      redis.call('HSET', KEYS[2], 'cf_r', r, 'cf_since', since, 'cf_id', id,
        'cf_reset', now + tonumber(ARGV[5]), 'cf_until', cf_until)
      keep_until = math.max(keep_until, cf_until)
    else
      redis.call('HDEL', KEYS[2], 'cf_r', 'cf_since', 'cf_id', 'cf_reset', 'cf_until')
    end
  end
end

local block = tonumber(ARGV[7])
if block > 0 then
  if now + block > (tonumber(redis.call('HGET', KEYS[2], 'block')) or 0) then
    redis.call('HSET', KEYS[2], 'block', now + block)
  end
  keep_until = math.max(keep_until, now + block)
end
-- Never shortens: a block or figure set earlier may outlast this one.
local ttl = math.ceil((keep_until - now) / 1000) + 1
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
`);

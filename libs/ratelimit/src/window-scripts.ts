import { luaScript } from './redis-client.ts';

/*
 * The sliding window of one principal and kind (REST or GraphQL), in Redis. `memory-windows.ts` is
 * the same logic in TypeScript; keep the two in step.
 *
 * Times are microseconds on Redis `TIME`, the only clock, so replicas with skewed clocks share
 * one window. Numbers go into Redis commands as Lua numbers (written with 17 significant digits,
 * exact for integers below 2^53) and never through tostring(), which keeps only 14.
 *
 * KEYS[1] the log: a sorted set, member = request id (<seq>:<admission>), score = when it counts from. An admitted
 *   request scores admission + in-flight time until its answer is reported, then the time of
 *   that report (never earlier than Cloudflare counted it). Entries above now - window are in
 *   the window; older ones are kept for a grace period, to judge answers that arrive late.
 * KEYS[2] the meta hash: seq (id counter), block (until), seen (last answer from Cloudflare) and,
 *   while Cloudflare's figure matters: ext (requests Cloudflare counted that are not Warden's:
 *   the dashboard, other tools), cfq (Cloudflare's quota for the window) and ext_until.
 * KEYS[4] the held set: the log's reservations not yet claimed (same ids), scored when their hold
 *   ends; they are in the window like any entry but are not requests out (for the probe).
 * All keys of a principal share one hash tag, so the scripts run on Redis Cluster.
 */

/**
 * A take (ARGV[3] = 'take'), a reservation ('reserve': held for ARGV[9] µs, never held back for
 * a probe) or a read (anything else).
 * KEYS[3] the REST meta hash (its block stops GraphQL too); KEYS[2] again for REST.
 * ARGV[1] capacity, ARGV[2] window µs, ARGV[4] in-flight µs, ARGV[5] probe-after µs (-1 = never),
 * ARGV[6] the wait to suggest while a probe is out µs, ARGV[7] grace µs, ARGV[8] when this Redis
 * last restarted under the replica µs (0 = not known to have; `redis-restarts.ts`).
 * Returns {allowed, remaining, wait µs, reason, now, id, count, oldest score (-1 = none), block,
 *   has Cloudflare figure 0|1, what Cloudflare's count allows, until when, own remaining}.
 */
export const WINDOW_TAKE_SCRIPT = luaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local reserve = ARGV[3] == 'reserve'
local take = ARGV[3] == 'take' or reserve
local inflight = tonumber(ARGV[4])
local probe_after = tonumber(ARGV[5])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window - tonumber(ARGV[7]))
-- A reservation past its hold counts like any entry; only one still held is not a request out.
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local total = redis.call('ZCARD', KEYS[1])
local count = redis.call('ZCOUNT', KEYS[1], string.format('(%.0f', now - window), '+inf')
-- Entries before this index are out of the window, kept only for the grace period.
local skip = total - count
local m = redis.call('HMGET', KEYS[2], 'block', 'seen', 'ext', 'ext_until', 'cfq')
local block = tonumber(m[1]) or 0
if KEYS[3] ~= KEYS[2] then
  block = math.max(block, tonumber(redis.call('HGET', KEYS[3], 'block')) or 0)
end

-- Cloudflare's count: this window's requests plus the others it reported, within its quota.
local has_cf = 0
local cf_left = 0
local ext = 0
local ext_until = tonumber(m[4]) or 0
local cfq = capacity
if now < ext_until then
  has_cf = 1
  ext = tonumber(m[3])
  cfq = tonumber(m[5])
  cf_left = cfq - ext - count
end

-- A restart within the window lost the log of Warden's own earlier requests; Cloudflare still
-- counts them, among what it reports as others. Until a window has passed since the restart they
-- count against this budget too (no in-memory counterpart: a process restart loses both).
local restarted = tonumber(ARGV[8])
local lost = 0
if has_cf == 1 and now < restarted + window then lost = ext end
local own = capacity - count - lost

local function leaves(index)
  local e = redis.call('ZRANGE', KEYS[1], skip + index, skip + index, 'WITHSCORES')
  return tonumber(e[2]) + window - now
end

-- Every check that refuses is asked, and the one that frees last names the refusal: a retry
-- after its wait meets none of them (a 1 s block over a window full for an hour says an hour).
local reason = ''
local wait = 0
local function refuse(why, after)
  if reason == '' or after > wait then
    reason = why
    wait = after
  end
end
if block > now then refuse('blocked', block - now) end
if own <= 0 then
  local after = 0
  if lost > 0 then after = math.min(ext_until, restarted + window) - now end
  if count >= capacity then after = math.max(after, leaves(count - capacity)) end
  refuse('window', after)
end
if has_cf == 1 and cf_left <= 0 then
  local after = ext_until - now
  -- Or sooner, once enough of this window's own requests have left it.
  local need = count - (cfq - ext - 1)
  if need <= count then after = math.min(after, leaves(need - 1)) end
  refuse('cloudflare', after)
end
-- A probe holds a request back only when nothing refuses it already.
if reason == '' and not reserve and probe_after >= 0 and now - (tonumber(m[2]) or 0) > probe_after then
  -- No recent answer from Cloudflare: one request goes alone, to learn its count before a burst.
  -- Reservations are not requests out: nothing was sent for them.
  local out = redis.call('ZCOUNT', KEYS[1], string.format('(%.0f', now), '+inf') - redis.call('ZCARD', KEYS[4])
  if out > 0 then
    reason = 'probe'
    wait = tonumber(ARGV[6])
  else
    -- Not while a request sent more than a window ago still counts here: Cloudflare may or may
    -- not count it still, and its answer could not be read. Such requests leave soon. (One
    -- admitted that long ago counts from at most its admission + in-flight time.)
    local entries = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%.0f', now - window),
      string.format('%.0f', now - window + inflight), 'WITHSCORES')
    for i = 1, #entries, 2 do
      local admitted = tonumber(string.match(entries[i], ':(%d+)$'))
      if admitted and admitted <= now - window then
        wait = math.max(wait, tonumber(entries[i + 1]) + window - now)
      end
    end
    if wait > 0 then reason = 'probe' end
  end
end

local remaining = own
if has_cf == 1 and cf_left < remaining then remaining = cf_left end
if block > now or remaining < 0 then remaining = 0 end

if not take then
  local oldest = -1
  if count > 0 then oldest = tonumber(redis.call('ZRANGE', KEYS[1], skip, skip, 'WITHSCORES')[2]) end
  return {0, remaining, wait, reason, now, '', count, oldest, block, has_cf, cf_left, ext_until, own}
end
if reason ~= '' then
  return {0, remaining, wait, reason, now, ''}
end

-- The id carries the admission time, which the probe above reads.
local id = redis.call('HINCRBY', KEYS[2], 'seq', 1) .. string.format(':%.0f', now)
local hold = inflight
if reserve then hold = tonumber(ARGV[9]) end
redis.call('ZADD', KEYS[1], now + hold, id)
-- The log empties at most window + grace after its latest entry; the meta (with seq) outlives it.
local ttl = math.ceil((hold + window + tonumber(ARGV[7])) / 1000) + 1
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
if reserve then
  redis.call('ZADD', KEYS[4], now + hold, id)
  if redis.call('PTTL', KEYS[4]) < ttl then redis.call('PEXPIRE', KEYS[4], ttl) end
end
remaining = remaining - 1
if remaining < 0 then remaining = 0 end
return {1, remaining, 0, '', now, id}
`);

/**
 * Settles an admitted request: it now counts from this moment (never later than it did), and
 * Cloudflare's answer is applied. KEYS[1] the log, KEYS[2] the meta hash, KEYS[3] the held set.
 * ARGV[1] id ('' charges a request sent without a take), ARGV[2] its admission µs,
 * ARGV[3] answered 1|0, ARGV[4] Cloudflare's remaining (-1 = no figure), ARGV[5] Cloudflare's
 * quota for the window, ARGV[6] how long Cloudflare's count of others is kept µs,
 * ARGV[7] block µs (0 = none), ARGV[8] capacity, ARGV[9] window µs, ARGV[10] in-flight µs,
 * ARGV[11] grace µs, ARGV[12] '0' when Cloudflare did not count the request (a 429, a route it
 * does not have): its entry is removed (none is added for an empty id) before the figure is compared.
 */
export const WINDOW_SETTLE_SCRIPT = luaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local id = ARGV[1]
local since = tonumber(ARGV[2])
local capacity = tonumber(ARGV[8])
local window = tonumber(ARGV[9])
local inflight = tonumber(ARGV[10])
local grace = tonumber(ARGV[11])
local counted = ARGV[12] ~= '0'
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window - grace)
if id == '' then
  since = now - inflight
  if counted then
    id = redis.call('HINCRBY', KEYS[2], 'seq', 1) .. string.format(':%.0f', now)
    redis.call('ZADD', KEYS[1], now, id)
    local ttl = math.ceil((window + grace) / 1000) + 1
    if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
  end
elseif not counted then
  -- Cloudflare did not count it (a 429, a route it does not have): its place goes back.
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[3], id)
else
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) > now then redis.call('ZADD', KEYS[1], 'XX', now, id) end
end

local keep_until = now + inflight + window + grace
if ARGV[3] == '1' and now > (tonumber(redis.call('HGET', KEYS[2], 'seen')) or 0) then
  redis.call('HSET', KEYS[2], 'seen', now)
end

local r = tonumber(ARGV[4])
if r >= 0 then
  local q = tonumber(ARGV[5])
  -- Every request of this window Cloudflare may have counted when it answered: it counted this
  -- one after its admission, so only entries above since - window can have been in its window.
  -- A reservation still held was not sent, so Cloudflare cannot have counted it.
  local mine = redis.call('ZCOUNT', KEYS[1], string.format('(%.0f', since - window), '+inf')
    - redis.call('ZCOUNT', KEYS[3], string.format('(%.0f', now), '+inf')
  local ext = math.max(0, q - r - mine)
  local m = redis.call('HMGET', KEYS[2], 'ext', 'ext_until')
  local current = tonumber(m[1]) or 0
  local current_until = tonumber(m[2]) or 0
  -- The others Cloudflare counted stay in its window up to a window after this answer; a
  -- smaller figure seen meanwhile proves nothing (Warden's own requests still on their way hide them).
  if now >= current_until or ext >= current then
    current = ext
    current_until = now + tonumber(ARGV[6])
  end
  if current > 0 or q < capacity then
    redis.call('HSET', KEYS[2], 'ext', current, 'ext_until', current_until, 'cfq', q)
    keep_until = math.max(keep_until, current_until)
  else
    redis.call('HDEL', KEYS[2], 'ext', 'ext_until', 'cfq')
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

/**
 * Claims a reservation: its place becomes a request admitted now (in flight from now, under a new
 * id carrying this admission), without asking the window again.
 * KEYS[1] the log, KEYS[2] the meta hash, KEYS[3] the held set.
 * ARGV[1] the reservation's id, ARGV[2] in-flight µs, ARGV[3] window µs, ARGV[4] grace µs.
 * Returns {now, id}.
 */
export const WINDOW_CLAIM_SCRIPT = luaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local inflight = tonumber(ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local id = redis.call('HINCRBY', KEYS[2], 'seq', 1) .. string.format(':%.0f', now)
redis.call('ZADD', KEYS[1], now + inflight, id)
local ttl = math.ceil((inflight + tonumber(ARGV[3]) + tonumber(ARGV[4])) / 1000) + 1
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return {now, id}
`);

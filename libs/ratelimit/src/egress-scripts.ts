import { luaScript } from './redis-client.ts';

/*
 * The egress window of one IP (all replicas leaving through it), in Redis; `memory-egress.ts` is
 * the same logic in TypeScript. Times in microseconds on Redis `TIME`; entries count like the
 * principal windows' (from admission + in-flight time until settled, then from the settlement).
 *
 * KEYS[1] the log (all tenants), KEYS[2] this tenant's log, KEYS[3] active tenants (member =
 * tenant, score = when it last asked), KEYS[4] waiting tenants (score = until when), KEYS[5] the
 * meta hash (seq). All share one hash tag.
 */

/**
 * ARGV[1] limit, ARGV[2] window µs, ARGV[3] tenant, ARGV[4] slots wanted, ARGV[5] in-flight µs,
 * ARGV[6] active µs, ARGV[7] waiting µs.
 * Returns {wait µs, reason ('' | 'full' | 'share'), id…}.
 */
export const EGRESS_TAKE_SCRIPT = luaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tenant = ARGV[3]
local want = tonumber(ARGV[4])
local inflight = tonumber(ARGV[5])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('ZADD', KEYS[3], now, tenant)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[6]))
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local total = redis.call('ZCARD', KEYS[1])
local mine = redis.call('ZCARD', KEYS[2])
local share = math.max(1, math.floor(limit / redis.call('ZCARD', KEYS[3])))
local others = redis.call('ZCARD', KEYS[4])
if redis.call('ZSCORE', KEYS[4], tenant) then others = others - 1 end

local out = {0, ''}
local reason = ''
while #out - 2 < want do
  if total >= limit then
    reason = 'full'
    break
  end
  if mine >= share and others > 0 then
    reason = 'share'
    break
  end
  local id = tostring(redis.call('HINCRBY', KEYS[5], 'seq', 1))
  redis.call('ZADD', KEYS[1], now + inflight, id)
  redis.call('ZADD', KEYS[2], now + inflight, id)
  total = total + 1
  mine = mine + 1
  out[#out + 1] = id
end

local wait = 0
if reason == 'full' then
  local e = redis.call('ZRANGE', KEYS[1], total - limit, total - limit, 'WITHSCORES')
  wait = tonumber(e[2]) + window - now
  -- Below its share: the next free slot is this tenant's, whoever asks first.
  if mine < share then redis.call('ZADD', KEYS[4], now + tonumber(ARGV[7]), tenant) end
elseif reason == 'share' then
  local e = redis.call('ZRANGE', KEYS[2], mine - share, mine - share, 'WITHSCORES')
  wait = tonumber(e[2]) + window - now
else
  redis.call('ZREM', KEYS[4], tenant)
end
if wait < 0 then wait = 0 end

local ttl = math.ceil((inflight + window) / 1000) + 1
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[6]) / 1000) + 1)
redis.call('PEXPIRE', KEYS[4], math.ceil(tonumber(ARGV[7]) / 1000) + 1)
out[1] = wait
out[2] = reason
return out
`);

/** The request's answer came back: it counts from now in both logs, never later than it did. ARGV[1] id. */
export const EGRESS_SETTLE_SCRIPT = luaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
for i = 1, 2 do
  local score = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if score and tonumber(score) > now then redis.call('ZADD', KEYS[i], 'XX', now, ARGV[1]) end
end
return 1
`);

import { luaScript } from './redis-client.ts';

/*
 * The egress window of one IP (all replicas leaving through it), in Redis; `memory-egress.ts` is
 * the same logic in TypeScript. Times in microseconds on Redis `TIME`; entries count like the
 * principal windows' (from admission + in-flight time until settled, then from the settlement).
 *
 * Fairness is max-min: a tenant refused a slot leaves a claim (for `waiting` µs, renewed while
 * its requests keep being refused) with the number of requests it has in the window, kept up to
 * date as it is granted more. While any claim
 * of another tenant is live, a tenant may take a slot only if it has no more in the window than
 * the least-served claimant; so a free slot goes to the tenant that has had the fewest, one
 * tenant's flood cannot starve another's single call, and with nobody waiting a burst uses all
 * spare capacity.
 *
 * Pacing: at most ceil(limit ÷ slices) requests in any slice (window ÷ slices) as well, so the
 * window's capacity is spread over it instead of taken in one burst that then holds every slot
 * for a whole window: a tenant arriving at any moment finds a free slot within a slice.
 *
 * KEYS[1] the log (all tenants), KEYS[2] this tenant's log, KEYS[3] claims (member = tenant,
 * score = until when), KEYS[4] each claimant's count in the window (hash), KEYS[5] the meta hash
 * (seq). All share one hash tag.
 */

/**
 * ARGV[1] limit, ARGV[2] window µs, ARGV[3] tenant, ARGV[4] slots wanted, ARGV[5] in-flight µs,
 * ARGV[6] claim µs, ARGV[7] slice µs, ARGV[8] requests per slice.
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
local claim = tonumber(ARGV[6])
local slice = tonumber(ARGV[7])
local perSlice = tonumber(ARGV[8])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  redis.call('HDEL', KEYS[4], unpack(lapsed))
end
local total = redis.call('ZCARD', KEYS[1])
local mine = redis.call('ZCARD', KEYS[2])
local recent = redis.call('ZCOUNT', KEYS[1], '(' .. (now - slice), '+inf')

-- The least-served other tenant with a live claim, and when its claim lapses.
local least = nil
local leastUntil = nil
local claims = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #claims, 2 do
  if claims[i] ~= tenant then
    local count = tonumber(redis.call('HGET', KEYS[4], claims[i]) or '0')
    if least == nil or count < least then
      least = count
      leastUntil = tonumber(claims[i + 1])
    end
  end
end

local out = {0, ''}
local reason = ''
while #out - 2 < want do
  if total >= limit or recent >= perSlice then
    reason = 'full'
    break
  end
  if least ~= nil and mine > least then
    reason = 'share'
    break
  end
  local id = tostring(redis.call('HINCRBY', KEYS[5], 'seq', 1))
  redis.call('ZADD', KEYS[1], now + inflight, id)
  redis.call('ZADD', KEYS[2], now + inflight, id)
  total = total + 1
  mine = mine + 1
  recent = recent + 1
  out[#out + 1] = id
end

local wait = 0
if reason == 'full' and total >= limit then
  local e = redis.call('ZRANGE', KEYS[1], total - limit, total - limit, 'WITHSCORES')
  wait = tonumber(e[2]) + window - now
elseif reason == 'full' then
  -- The slice is full: until the request that filled it first leaves it.
  local e = redis.call('ZRANGE', KEYS[1], total - recent, total - recent, 'WITHSCORES')
  wait = math.min(tonumber(e[2]) + slice - now, slice)
elseif reason == 'share' then
  -- Until this tenant's oldest request leaves the window, or the claim before it lapses.
  local e = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  wait = math.min(tonumber(e[2]) + window - now, leastUntil - now)
end
if wait < 0 then wait = 0 end
if reason ~= '' then
  redis.call('ZADD', KEYS[3], now + claim, tenant)
  redis.call('HSET', KEYS[4], tenant, mine)
elseif redis.call('ZSCORE', KEYS[3], tenant) then
  -- Granted: its claim keeps its time (other requests of it may still be waiting, on any
  -- replica) with the count it has now.
  redis.call('HSET', KEYS[4], tenant, mine)
end

local ttl = math.ceil((inflight + window) / 1000) + 1
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
redis.call('PEXPIRE', KEYS[3], math.ceil(claim / 1000) + 1)
redis.call('PEXPIRE', KEYS[4], math.ceil(claim / 1000) + 1)
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

-- Exact sliding-window decision, optionally taking a concurrency lease in the same step.
--
-- KEYS[1] the log (ZSET unique id -> admission us)   KEYS[2] the log's id sequence
-- KEYS[3] the leases (ZSET id -> expiry us)
-- ARGV    window_us, limit, cost, max_concurrent (0 = no cap), lease id ('' = none),
--         lease_ttl_us, [pinned now]
--
-- Invariant: the log holds one entry per admitted unit (cost n = n entries, ids from
-- the sequence so none overwrites another), and an attempt is admitted only when the
-- entries newer than now - window plus its cost fit in `limit`: never more than
-- `limit` units in any window. Entries are never recorded earlier than the newest one
-- (a server clock that steps back cannot reorder the log). Rate and slot are taken
-- together or not at all. Log and sequence expire when the newest entry leaves the
-- window; the lease set when its last lease expires.
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local lease = ARGV[5]
local lease_ttl = tonumber(ARGV[6])
local now = clock(ARGV[7])

local with_lease = max > 0 and lease ~= ''
if with_lease and slots_full(KEYS[3], now, max) then
  return concurrency_refusal(sw_peek(KEYS[1], now, window, limit, cost), KEYS[3], now)
end
-- Entries that left the window change no decision: drop them.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now - window))
local used = redis.call('ZCARD', KEYS[1])
if used + cost > limit then
  return sw_refusal(KEYS[1], now, window, limit, cost, used)
end
local at = math.max(now, newest_score(KEYS[1]) or now)
local last = redis.call('INCRBY', KEYS[2], cost)
local score = int(at)
-- ZADD in chunks: unpack() of a huge cost would overflow the Lua stack.
local batch = {}
for id = last - cost + 1, last do
  batch[#batch + 1] = score
  batch[#batch + 1] = int(id)
  if #batch >= 1000 or id == last then
    redis.call('ZADD', KEYS[1], unpack(batch))
    batch = {}
  end
end
local ttl = ttl_ms(at + window - now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if with_lease then
  hold_lease(KEYS[3], lease, now, lease_ttl)
end
return {1, limit - used - cost, 0, at + window - now, 0}

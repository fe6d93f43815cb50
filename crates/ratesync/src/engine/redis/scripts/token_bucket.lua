-- Token bucket (GCRA) decision, optionally taking a concurrency lease in the same step.
--
-- KEYS[1] the TAT (string, us)          KEYS[2] the leases (ZSET id -> expiry us)
-- ARGV    interval_us, burst, cost, max_concurrent (0 = no cap), lease id ('' = none),
--         lease_ttl_us, [pinned now]
--
-- Invariant: the TAT only moves on an admission, to max(TAT, now) + cost * interval,
-- and never beyond now + burst * interval, so at most burst + t / interval units are
-- admitted in any span t. Rate and slot are taken together or not at all: a refusal
-- writes nothing but the removal of expired leases. The TAT key expires when the
-- bucket is full again (state equal to a fresh key's); the lease set when its last
-- lease expires.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local lease = ARGV[5]
local lease_ttl = tonumber(ARGV[6])
local now = clock(ARGV[7])
local tat = tb_state(KEYS[1])

local with_lease = max > 0 and lease ~= ''
if with_lease and slots_full(KEYS[2], now, max) then
  return concurrency_refusal(tb_peek(tat, now, interval, burst, cost), KEYS[2], now)
end
local d, new_tat = tb_decide(tat, now, interval, burst, cost)
if new_tat then
  redis.call('SET', KEYS[1], int(new_tat), 'PX', ttl_ms(new_tat - now))
  if with_lease then
    hold_lease(KEYS[2], lease, now, lease_ttl)
  end
end
return d

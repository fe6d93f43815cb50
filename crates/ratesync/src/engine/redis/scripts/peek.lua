-- The decision an attempt would get now, for either algorithm, writing nothing.
--
-- KEYS[1] the rate state (TAT string or log ZSET)   KEYS[2] the leases
-- ARGV    'tb' or 'sw', interval_us or window_us, burst or limit, cost,
--         max_concurrent (0 = no cap), [pinned now]
--
-- Invariant: read-only; `remaining` is what is available now (algorithm::peek), and a
-- full concurrency cap refuses whatever the rate says. Expired entries and leases are
-- skipped, not deleted.
local algorithm = ARGV[1]
local param = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local max = tonumber(ARGV[5])
local now = clock(ARGV[6])

local d
if algorithm == 'tb' then
  d = tb_peek(tb_state(KEYS[1]), now, param, capacity, cost)
else
  d = sw_peek(KEYS[1], now, param, capacity, cost)
end
if max > 0 and redis.call('ZCOUNT', KEYS[2], '(' .. int(now), '+inf') >= max then
  return concurrency_refusal(d, KEYS[2], now)
end
return d

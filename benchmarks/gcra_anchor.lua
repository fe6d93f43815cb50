-- The anchor of benchmarks/redis.sh: a GCRA-sized script, the least a Redis rate
-- limiter does per decision (TIME, GET, SET PX), run by redis-benchmark one call per
-- round trip. Not ratesync's script: the yardstick any Redis limiter is held to.
-- KEYS[1] the TAT (us)   ARGV interval_us, burst
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local new_tat = tat + interval
if new_tat - now <= interval * tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',
    math.ceil((new_tat - now) / 1000) + 1)
  return 1
end
return 0

-- Forgets one (limiter, key): its rate state and its leases.
--
-- KEYS    every key of the (limiter, key), the leases last
-- ARGV    release channel, release message
--
-- Invariant: afterwards the key is indistinguishable from one never seen. Dropped
-- leases free their slots, so waiters are told as for a release.
local had_leases = redis.call('EXISTS', KEYS[#KEYS]) == 1
redis.call('DEL', unpack(KEYS))
if had_leases then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return 1

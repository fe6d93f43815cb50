-- Forgets one (limiter, key): its rate state and its leases.
--
-- KEYS    every key of the (limiter, key), the leases last
-- ARGV    release channel, release message
--
-- Invariant: afterwards the key is indistinguishable from one never seen. Dropped
-- leases free their slots, so waiters are told as for a release.
local had_leases = rcall('EXISTS', KEYS[#KEYS]) == 1
rcall('DEL', tunpack(KEYS))
if had_leases then
  rcall('PUBLISH', ARGV[1], ARGV[2])
end
return 1

-- Gives back a concurrency slot and tells every process.
--
-- KEYS[1] the leases   ARGV lease id, release channel, release message
--
-- Invariant: only the named lease is removed; releasing twice, or a lease never taken,
-- changes nothing and publishes nothing. A removal is published so that waiters in
-- every process retry at once (they also poll, in case a message is lost).
local removed = rcall('ZREM', KEYS[1], ARGV[1])
if removed == 1 then
  rcall('PUBLISH', ARGV[2], ARGV[3])
end
return removed

-- Extends a live concurrency lease to now + lease_ttl.
--
-- KEYS[1] the leases   ARGV lease id, lease_ttl_us
--
-- Invariant: a lease that has expired (or was released) is not brought back, since its
-- slot may already be someone else's: the answer is 0 and nothing is written. The set
-- stays alive until its last lease expires.
local now = clock()
local expiry = tonum(rcall('ZSCORE', KEYS[1], ARGV[1]))
if not expiry or expiry <= now then
  return 0
end
hold_lease(KEYS[1], ARGV[1], now, tonum(ARGV[2]))
return 1

-- Gives back what one admission took (algorithm::refund): its units and its lease.
--
-- KEYS  one member (see `member` in lib.lua)
-- ARGV  the member's MEMBER_ARGS, then the admission's receipt (its now_us and
--       recorded_us), the release channel and a release message
--
-- Invariant: never more than the admission took (a settle gives back part of its
-- cost the same way). A token bucket gets its TAT back exactly when nothing was
-- admitted since (the TAT is still the one it stored), else only the cost less the
-- time since the admission (TokenBucket::refund). A sliding window loses up to
-- `cost` units of the run the admission went into, or of the grid run it was merged
-- into; units that already left the window are not taken twice. A fixed window gives
-- back only in the window the admission was counted in. A lease given back is
-- announced like a release, so that waiters elsewhere retry.
local m = member(KEYS, ARGV, 1, 1)
local admitted = tonum(ARGV[MEMBER_ARGS + 1])
local recorded = tonum(ARGV[MEMBER_ARGS + 2])
local now = clock()
local states = {}
refund_rate(states, m, now, admitted, recorded)
save(states, now)
if m[LEASE] ~= '' and rcall('ZREM', m[LEASES], m[LEASE]) == 1 then
  rcall('PUBLISH', ARGV[MEMBER_ARGS + 3], ARGV[MEMBER_ARGS + 4])
end
return 1

-- The decision an attempt would get now, writing nothing (algorithm::peek).
--
-- KEYS, ARGV  one member (see `member` in lib.lua)
-- Returns {now_us, then the decision (see `answer`)}, `packed`: the answer of acquire
--         for one call of one member, read the same way
--
-- Invariant: read-only (no `save`); `remaining` is what is available now, and a full
-- concurrency cap refuses whatever the rate says. Expired runs and leases are
-- skipped, not deleted.
local now = clock()
local out = {now}
answer(out, 2, peek({}, member(KEYS, ARGV, 1, 1), now))
return packed(out)

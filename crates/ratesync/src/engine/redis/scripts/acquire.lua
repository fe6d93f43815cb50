-- Decides calls, in order, on one reading of the clock. A call is a group of members
-- (one (limiter, key) each, see `member` in lib.lua) admitted all together or not at
-- all; a single acquire is a call of one member.
--
-- KEYS  MEMBER_KEYS per member, calls one after the other
-- ARGV  number of profiles, then each (PROFILE_ARGS: one per limiter of the batch);
--       number of calls; per call its number of members, then per member its
--       profile's 1-based index, its cost and its lease id ('' = none)
-- Returns {now_us, then per call: 0 when admitted or the 1-based index of the member
--          that refused, then six integers per member: its decision}, `packed`
--
-- Invariant: every member of a call is decided before any is recorded, so a refused
-- call changes nothing (algorithm::decide_all): its refusing member gets its refusal,
-- the others a peek. An admitted call records each member as algorithm::decide would:
-- rate and slot together. Members of one call are distinct (limiter, key). Each rate
-- state is read once and written once, at the end, whatever the number of calls on
-- its key (`rate_state`, `save`).
local now = clock()
local states = {}
-- Sized for the common answer, one call of one member (a table grows by doubling).
local out, o = {now, 0, 0, 0, 0, 0, 0, 0}, 1
local profiles = {}
local a = 2
for p = 1, tonumber(ARGV[1]) do
  profiles[p] = profile(ARGV, a)
  a = a + PROFILE_ARGS
end
local k = 1
local calls = tonumber(ARGV[a])
a = a + 1
for _ = 1, calls do
  local n = tonumber(ARGV[a])
  a = a + 1
  local members, decisions, refused = {}, {}, 0
  for i = 1, n do
    local m = compose(KEYS, k, profiles[tonumber(ARGV[a])], tonumber(ARGV[a + 1]), ARGV[a + 2])
    k = k + MEMBER_KEYS
    a = a + 3
    members[i] = m
    if refused == 0 then
      local d = decide(states, m, now)
      decisions[i] = d
      if d[1] == 0 then
        refused = i
      end
    end
  end
  if refused == 0 then
    for i = 1, n do
      admit(states, members[i], now, decisions[i])
    end
  else
    for i = 1, n do
      if i ~= refused then
        decisions[i] = peek(states, members[i], now)
      end
    end
  end
  out[o + 1] = refused
  o = o + 1
  for i = 1, n do
    local d = decisions[i]
    for j = 1, 6 do
      out[o + j] = d[j]
    end
    o = o + 6
  end
end
save(states, now)
return packed(out)

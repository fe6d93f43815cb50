-- Decides calls, in order, on one reading of the clock. A call is a group of members
-- (one (limiter, key) each, see `member` in lib.lua) admitted all together or not at
-- all; a single acquire is a call of one member.
--
-- KEYS  each member's keys (see `member` in lib.lua), calls one after the other
-- ARGV  number of profiles, then each (PROFILE_ARGS: one per limiter of the batch);
--       number of runs, then per run (calls in a row that differ only in their keys)
--       its number of calls, their number of members, then per member its profile's
--       1-based index, its cost and its lease id ('' = none)
-- Returns {now_us, then per call: for a call of several members, 0 when admitted or
--          the 1-based index of the member that refused; then per member its decision
--          (ANSWER_LEN integers, see `answer`)}, `packed`
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
local out, o = {now, 0, 0, 0, 0}, 1
local profiles = {}
local a = 2
for p = 1, tonum(ARGV[1]) do
  profiles[p] = profile(ARGV, a)
  a = a + PROFILE_ARGS
end
local numbers = argument_numbers()
-- The i-th member of every call is the same table, filled again (`compose`).
local members = {}
local k = 1
local runs = tonum(ARGV[a])
a = a + 1
for _ = 1, runs do
  local calls, n = numbers[ARGV[a]], numbers[ARGV[a + 1]]
  -- Member i's profile index, cost and lease are ARGV[shape + 3 * (i - 1) ..].
  local shape = a + 2
  a = shape + 3 * n
  -- A run of lone token-bucket calls, the common shape, is decided without the
  -- general loop's members (`tb_lone_run`).
  local p = profiles[numbers[ARGV[shape]]]
  if n == 1 and p[KIND] == 'tb' and p[MAX] == 0 then
    k, o = tb_lone_run(states, out, o, KEYS, k, calls, p, numbers[ARGV[shape + 1]], now)
  else
    for _ = 1, calls do
      -- Member i's decision goes at out[first + ANSWER_LEN * (i - 1)], after the
      -- call's refusing member when it has several.
      local first = o + 1
      if n > 1 then
        first = o + 2
      end
      local refused = 0
      local b = shape
      for i = 1, n do
        local m = members[i]
        if not m then
          m = {}
          members[i] = m
        end
        k = k + compose(m, KEYS, k, profiles[numbers[ARGV[b]]], numbers[ARGV[b + 1]], ARGV[b + 2])
        b = b + 3
        if refused == 0 then
          if answer(out, first + ANSWER_LEN * (i - 1), decide(states, m, now)) == 0 then
            refused = i
          end
        end
      end
      if refused == 0 then
        for i = 1, n do
          -- An admission's answer ends with what it recorded.
          admit(states, members[i], now, out[first + ANSWER_LEN * i - 1])
        end
      else
        for i = 1, n do
          if i ~= refused then
            answer(out, first + ANSWER_LEN * (i - 1), peek(states, members[i], now))
          end
        end
      end
      if n > 1 then
        out[o + 1] = refused
      end
      o = first + ANSWER_LEN * n - 1
    end
  end
end
save(states, now)
return packed(out)

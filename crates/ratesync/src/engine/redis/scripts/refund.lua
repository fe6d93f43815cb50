-- Gives back what one admission took (algorithm::refund): its units and its lease.
--
-- KEYS  one member (see `member` in lib.lua)
-- ARGV  the member's MEMBER_ARGS, then the admission's receipt (its now_us and
--       recorded_us), the release channel and a release message
--
-- Invariant: never more than the admission took. A token bucket gets its TAT back
-- exactly when nothing was admitted since (the TAT is still the one it stored), else
-- only the cost less the time since the admission (TokenBucket::refund). A sliding
-- window loses up to `cost` of the entries recorded at the admission's time; entries
-- that already left the window are not taken twice. A lease given back is announced
-- like a release, so that waiters elsewhere retry.
local m = member(KEYS, ARGV, 1, 1)
local admitted = tonumber(ARGV[MEMBER_ARGS + 1])
local recorded = tonumber(ARGV[MEMBER_ARGS + 2])
local now = clock()
if m[KIND] == 'tb' then
  local tat = tb_state(m[RATE])
  local taken = m[COST] * m[PARAM]
  local new_tat
  if tat == recorded then
    new_tat = tat - taken
  else
    new_tat = tat - math.max(taken - math.max(now - admitted, 0), 0)
  end
  new_tat = math.max(new_tat, 0)
  if new_tat <= now then
    redis.call('DEL', m[RATE])
  elseif new_tat ~= tat then
    redis.call('SET', m[RATE], int(new_tat), 'PX', ttl_ms(new_tat - now))
  end
elseif m[KIND] == 'sw' then
  local entries = redis.call('ZRANGEBYSCORE', m[RATE], int(recorded), int(recorded),
    'LIMIT', 0, m[COST])
  for i = 1, #entries, 1000 do
    redis.call('ZREM', m[RATE], unpack(entries, i, math.min(i + 999, #entries)))
  end
end
if m[LEASE] ~= '' and redis.call('ZREM', m[LEASES], m[LEASE]) == 1 then
  redis.call('PUBLISH', ARGV[MEMBER_ARGS + 3], ARGV[MEMBER_ARGS + 4])
end
return 1

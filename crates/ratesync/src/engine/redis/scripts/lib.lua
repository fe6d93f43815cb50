-- Helpers shared by every script (prepended to each by scripts.rs).
--
-- All times are integer microseconds since the epoch, read from the server with TIME:
-- Lua numbers are doubles, exact for integers up to 2^53 us (285 years), so every
-- sum and comparison below is exact integer arithmetic, as in the Rust reference
-- (crate::algorithm). Decisions are returned as
--   {allowed (0/1), remaining, retry_after_us, reset_after_us, denied_by (0 none, 1 rate, 2 concurrency)}.

-- Extra lifetime of every TTL: keys outlive the instant their state is fresh again,
-- so rounding to milliseconds can never drop live state early.
local TTL_MARGIN_MS = 1000

-- The store's clock. `pinned` (a script's last argument) fixes it for the tests that
-- compare this code with the Rust reference; the engine never passes it.
local function clock(pinned)
  if pinned and pinned ~= '' then
    return tonumber(pinned)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- floor(a / b) for non-negative integers, exact even where the double quotient
-- rounds up to the next integer.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- An integer as an argument or member: tostring would print only 14 digits.
local function int(n)
  return string.format('%d', n)
end

-- PEXPIRE argument for state that is fresh again `us` microseconds from now.
local function ttl_ms(us)
  return int(math.max(math.ceil(us / 1000), 1) + TTL_MARGIN_MS)
end

-- Token bucket (GCRA) over the stored TAT. Returns the decision and, when admitted,
-- the new TAT (TokenBucket::decide).
local function tb_decide(tat, now, interval, burst, cost)
  tat = math.max(tat, now)
  local horizon = now + interval * burst
  local new_tat = tat + cost * interval
  if new_tat <= horizon then
    return {1, idiv(horizon - new_tat, interval), 0, new_tat - now, 0}, new_tat
  end
  return {0, idiv(math.max(horizon - tat, 0), interval), new_tat - horizon, tat - now, 1}, nil
end

-- The same, consuming nothing: remaining and reset describe the bucket as it is
-- (TokenBucket::peek).
local function tb_peek(tat, now, interval, burst, cost)
  local d, new_tat = tb_decide(tat, now, interval, burst, cost)
  if new_tat then
    tat = math.max(tat, now)
    d[2] = idiv(now + interval * burst - tat, interval)
    d[4] = tat - now
  end
  return d
end

local function tb_state(key)
  return tonumber(redis.call('GET', key)) or 0
end

-- Score of the newest entry of a ZSET, or nil when it is empty.
local function newest_score(zset)
  local newest = redis.call('ZREVRANGE', zset, 0, 0, 'WITHSCORES')
  return tonumber(newest[2])
end

-- A sliding-window refusal with `used` units in the window ending at `now`
-- (SlidingWindow::refusal): it waits until enough of the oldest units have left.
local function sw_refusal(log, now, window, limit, cost, used)
  local must_leave = used + cost - limit
  local oldest = redis.call('ZRANGEBYSCORE', log, '(' .. int(now - window), '+inf',
    'WITHSCORES', 'LIMIT', must_leave - 1, 1)
  local newest = newest_score(log) or now
  local leaves_at = (tonumber(oldest[2]) or newest) + window
  return {0, math.max(limit - used, 0), math.max(leaves_at - now, 0),
    math.max(newest + window - now, 0), 1}
end

-- A sliding-window decision consuming nothing (SlidingWindow::peek). Entries at or
-- before now - window have left the window: they are skipped, not deleted.
local function sw_peek(log, now, window, limit, cost)
  local used = redis.call('ZCOUNT', log, '(' .. int(now - window), '+inf')
  if used + cost <= limit then
    local reset = 0
    if used > 0 then
      reset = math.max(newest_score(log) + window - now, 0)
    end
    return {1, limit - used, 0, reset, 0}
  end
  return sw_refusal(log, now, window, limit, cost, used)
end

-- Turns a rate peek into a concurrency refusal: it waits for the rate and for the
-- earliest lease to expire (a release wakes waiters sooner).
local function concurrency_refusal(d, leases, now)
  local earliest = redis.call('ZRANGEBYSCORE', leases, '(' .. int(now), '+inf',
    'WITHSCORES', 'LIMIT', 0, 1)
  local wait = 0
  if earliest[2] then
    wait = tonumber(earliest[2]) - now
  end
  d[1] = 0
  d[3] = math.max(d[3], wait)
  d[5] = 2
  return d
end

-- Whether all `max` slots are held at `now`; expired leases are dropped first
-- (LeaseSet::live).
local function slots_full(leases, now, max)
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', int(now))
  return redis.call('ZCARD', leases) >= max
end

-- Records lease `id` until now + ttl, and keeps the set alive until its last expiry.
local function hold_lease(leases, id, now, ttl)
  redis.call('ZADD', leases, int(now + ttl), id)
  redis.call('PEXPIRE', leases, ttl_ms(newest_score(leases) - now))
end

-- Helpers shared by every script (prepended to each by scripts.rs): the Rust
-- reference (crate::algorithm) ported to Lua, once.
--
-- All times are integer microseconds since the epoch, read from the server with TIME:
-- Lua numbers are doubles, exact for integers up to 2^53 us (285 years), so every
-- sum and comparison below is exact integer arithmetic, as in the reference. A
-- decision is six integers:
--   {allowed (0/1), remaining, retry_after_us, reset_after_us,
--    denied_by (0 none, 1 rate, 2 concurrency), recorded_us}
-- where recorded is the TAT a token-bucket admission stored, or the time of the log
-- entries a sliding-window admission went into: what a refund names (Receipt).

-- Extra lifetime of every TTL: keys outlive the instant their state is fresh again,
-- so rounding to milliseconds can never drop live state early.
local TTL_MARGIN_MS = 1000

-- The store's clock.
local function clock()
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

-- One member of a call: the keys and settings of one (limiter, key), from KEYS[k]
-- and ARGV[a] of the operation's keys and arguments, as an array indexed by the
-- names below (an array: cheaper to build than a table of named fields).
--   KEYS  rate state (TAT string or log ZSET), the log's id sequence, leases (ZSET)
--   ARGV  kind ('tb' token bucket, 'sw' sliding window, 'cc' concurrency only),
--         interval_us or window_us, burst or limit, cost, max_concurrent (0 = no
--         cap), lease id ('' = none), lease_ttl_us
local MEMBER_KEYS = 3
local MEMBER_ARGS = 7
local RATE, SEQ, LEASES, KIND, PARAM, CAPACITY, COST, MAX, LEASE, LEASE_TTL =
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10

local function member(KEYS, ARGV, k, a)
  return {
    KEYS[k], KEYS[k + 1], KEYS[k + 2],
    ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
    tonumber(ARGV[a + 4]), ARGV[a + 5], tonumber(ARGV[a + 6]),
  }
end

-- Token bucket (TokenBucket::decide): the decision and, when admitted, the new TAT.
local function tb_decide(tat, now, interval, burst, cost)
  tat = math.max(tat, now)
  local horizon = now + interval * burst
  local new_tat = tat + cost * interval
  if new_tat <= horizon then
    return {1, idiv(horizon - new_tat, interval), 0, new_tat - now, 0, new_tat}
  end
  return {0, idiv(math.max(horizon - tat, 0), interval), new_tat - horizon, tat - now, 1, 0}
end

-- The same, consuming nothing: remaining and reset describe the bucket as it is
-- (TokenBucket::peek).
local function tb_peek(tat, now, interval, burst, cost)
  local d = tb_decide(tat, now, interval, burst, cost)
  if d[1] == 1 then
    tat = math.max(tat, now)
    d[2] = idiv(now + interval * burst - tat, interval)
    d[4] = tat - now
    d[6] = 0
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

-- Units in the window ending at `now`: entries at or before now - window have left
-- it (they are skipped, not deleted).
local function sw_used(m, now)
  return redis.call('ZCOUNT', m[RATE], '(' .. int(now - m[PARAM]), '+inf')
end

-- A sliding-window refusal with `used` units in the window (SlidingWindow::refusal):
-- it waits until enough of the oldest units have left.
local function sw_refusal(m, now, used)
  local must_leave = used + m[COST] - m[CAPACITY]
  local oldest = redis.call('ZRANGEBYSCORE', m[RATE], '(' .. int(now - m[PARAM]), '+inf',
    'WITHSCORES', 'LIMIT', must_leave - 1, 1)
  local newest = newest_score(m[RATE]) or now
  local leaves_at = (tonumber(oldest[2]) or newest) + m[PARAM]
  return {0, math.max(m[CAPACITY] - used, 0), math.max(leaves_at - now, 0),
    math.max(newest + m[PARAM] - now, 0), 1, 0}
end

-- SlidingWindow::decide, writing nothing: an admission goes into the entries at
-- max(now, newest) (a server clock that steps back cannot reorder the log).
local function sw_decide(m, now)
  local used = sw_used(m, now)
  if used + m[COST] <= m[CAPACITY] then
    local at = math.max(now, newest_score(m[RATE]) or now)
    return {1, m[CAPACITY] - used - m[COST], 0, at + m[PARAM] - now, 0, at}
  end
  return sw_refusal(m, now, used)
end

-- SlidingWindow::peek.
local function sw_peek(m, now)
  local used = sw_used(m, now)
  if used + m[COST] <= m[CAPACITY] then
    local reset = 0
    if used > 0 then
      reset = math.max(newest_score(m[RATE]) + m[PARAM] - now, 0)
    end
    return {1, m[CAPACITY] - used, 0, reset, 0, 0}
  end
  return sw_refusal(m, now, used)
end

-- Live leases at `now` (LeaseSet::count_live).
local function live_leases(m, now)
  return redis.call('ZCOUNT', m[LEASES], '(' .. int(now), '+inf')
end

-- The rate part of a peek; for a limiter without a rate, its free slots.
local function rate_peek(m, now)
  if m[KIND] == 'tb' then
    return tb_peek(tb_state(m[RATE]), now, m[PARAM], m[CAPACITY], m[COST])
  elseif m[KIND] == 'sw' then
    return sw_peek(m, now)
  end
  return {1, math.max(m[MAX] - live_leases(m, now), 0), 0, 0, 0, 0}
end

-- Every slot is held: the rate's numbers, refused by concurrency. Its retry-after is
-- the rate's alone; a slot comes back when its holder lets go.
local function concurrency_refusal(m, now)
  local d = rate_peek(m, now)
  d[1] = 0
  d[5] = 2
  d[6] = 0
  return d
end

-- algorithm::peek: what an attempt would get now.
local function peek(m, now)
  if m[MAX] > 0 and live_leases(m, now) >= m[MAX] then
    return concurrency_refusal(m, now)
  end
  return rate_peek(m, now)
end

-- algorithm::decide, writing nothing: the decision an attempt gets. `admit` writes it.
local function decide(m, now)
  local taking = m[MAX] > 0 and m[LEASE] ~= ''
  if taking and live_leases(m, now) >= m[MAX] then
    return concurrency_refusal(m, now)
  end
  if m[KIND] == 'tb' then
    return tb_decide(tb_state(m[RATE]), now, m[PARAM], m[CAPACITY], m[COST])
  elseif m[KIND] == 'sw' then
    return sw_decide(m, now)
  end
  local taken = 0
  if taking then
    taken = 1
  end
  return {1, math.max(m[MAX] - live_leases(m, now) - taken, 0), 0, 0, 0, 0}
end

-- Holds lease `id` until now + ttl, and keeps the set alive until its last expiry.
local function hold_lease(leases, id, now, ttl)
  redis.call('ZADD', leases, int(now + ttl), id)
  redis.call('PEXPIRE', leases, ttl_ms(newest_score(leases) - now))
end

-- Records the admission `d` of member `m` (decided by `decide` at `now`).
local function admit(m, now, d)
  if m[KIND] == 'tb' then
    redis.call('SET', m[RATE], int(d[6]), 'PX', ttl_ms(d[6] - now))
  elseif m[KIND] == 'sw' then
    -- Entries that left the window change no decision: drop them. Then one entry per
    -- unit, with ids from the sequence so that none overwrites another.
    redis.call('ZREMRANGEBYSCORE', m[RATE], '-inf', int(now - m[PARAM]))
    local last = redis.call('INCRBY', m[SEQ], m[COST])
    local score = int(d[6])
    -- ZADD in chunks: unpack() of a huge cost would overflow the Lua stack.
    local batch = {}
    for id = last - m[COST] + 1, last do
      batch[#batch + 1] = score
      batch[#batch + 1] = int(id)
      if #batch >= 1000 or id == last then
        redis.call('ZADD', m[RATE], unpack(batch))
        batch = {}
      end
    end
    local ttl = ttl_ms(d[6] + m[PARAM] - now)
    redis.call('PEXPIRE', m[RATE], ttl)
    redis.call('PEXPIRE', m[SEQ], ttl)
  end
  if m[MAX] > 0 and m[LEASE] ~= '' then
    -- Expired leases free their slots (LeaseSet::live).
    redis.call('ZREMRANGEBYSCORE', m[LEASES], '-inf', int(now))
    hold_lease(m[LEASES], m[LEASE], now, m[LEASE_TTL])
  end
end

-- Helpers shared by every script (prepended to each by scripts.rs): the Rust
-- reference (crate::algorithm) ported to Lua, once.
--
-- All times are integer microseconds since the epoch, read from the server with TIME:
-- Lua numbers are doubles, exact for integers up to 2^53 us (285 years), so every
-- sum and comparison below is exact integer arithmetic, as in the reference. A
-- decision is six integers, returned as six values (no table to build and collect):
--   allowed (0/1), remaining, retry_after_us, reset_after_us,
--   denied_by (0 none, 1 rate, 2 concurrency), recorded_us
-- where recorded is the TAT a token-bucket admission stored, the time of the log run
-- a sliding-window admission went into, or the start of the fixed window it was
-- counted in: what a refund names (Receipt).

-- The library functions the helpers call, as upvalues (`bind`): an upvalue is read in
-- one step, where `math.floor` is two table lookups, paid on every decision. A
-- function library cannot read globals while it is being loaded, so each operation
-- binds them when it runs (scripts.rs), once per library or script.
local floor, ceil, max, min, tonum, format, spack, sunpack, tunpack, srep, ssub, concat,
  setmeta, rcall

local function bind()
  if rcall then
    return
  end
  floor, ceil, max, min = math.floor, math.ceil, math.max, math.min
  tonum, format, srep, ssub = tonumber, string.format, string.rep, string.sub
  spack, sunpack, tunpack, concat = struct.pack, struct.unpack, unpack, table.concat
  setmeta, rcall = setmetatable, redis.call
end

-- Extra lifetime of every TTL: keys outlive the instant their state is fresh again,
-- so rounding to milliseconds can never drop live state early.
local TTL_MARGIN_MS = 1000

-- The store's clock.
local function clock()
  local t = rcall('TIME')
  return tonum(t[1]) * 1000000 + tonum(t[2])
end

-- floor(a / b) for non-negative integers, exact even where the double quotient
-- rounds up to the next integer.
local function idiv(a, b)
  local q = floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- floor(a / b) for any integer a and b > 0 (Rust's div_euclid): a time before a
-- window's phase, a year before 0.
local function fdiv(a, b)
  if a >= 0 then
    return idiv(a, b)
  end
  return -idiv(b - 1 - a, b)
end

-- ceil(a / b) for a >= 0 and b > 0 (Rust's div_ceil).
local function cdiv(a, b)
  local q = idiv(a, b)
  if q * b < a then
    q = q + 1
  end
  return q
end

-- An integer as an argument or member: tostring would print only 14 digits.
local function int(n)
  return format('%d', n)
end

-- An answer of integers as one string: each a little-endian double (exact: see
-- above), read by `scripts::unpack`. The server writes, and the client parses, one
-- bulk reply instead of an integer reply for each (seven per call of a batch).
local function packed(values)
  local parts, n = {}, #values
  for i = 1, n, 512 do
    local j = min(i + 511, n)
    parts[#parts + 1] = spack('<' .. srep('d', j - i + 1), tunpack(values, i, j))
  end
  return concat(parts)
end

-- The numbers among a script's arguments, each parsed once per run: `numbers[text]`.
-- `tonumber` of a string goes through strtod, which costs more than deciding a
-- token-bucket call, and a batch repeats the same few (member counts, profile
-- indices, costs).
local PARSE_ON_MISS = {__index = function(numbers, text)
  local n = tonum(text)
  numbers[text] = n
  return n
end}

local function argument_numbers()
  return setmeta({}, PARSE_ON_MISS)
end

-- Writes a decision (six values, as `decide` returns them) into an answer at
-- out[at .. at + 3], as four integers: denied_by (0: admitted), remaining,
-- reset_after_us, and recorded_us when admitted or retry_after_us when refused (the
-- other is 0 by then). Packing costs about 75 ns a value, more than some decisions
-- do. `scripts::answers` reads it back. Returns `allowed`.
local ANSWER_LEN = 4
local function answer(out, at, allowed, remaining, retry, reset, by, recorded)
  if allowed == 1 then
    out[at], out[at + 1], out[at + 2], out[at + 3] = 0, remaining, reset, recorded
  else
    out[at], out[at + 1], out[at + 2], out[at + 3] = by, remaining, reset, retry
  end
  return allowed
end

-- TTLs are whole multiples of this step: a key written by many calls gets one of a
-- few TTLs, whose text `ttl_ms` keeps (formatting a number costs Lua about 0.3 us,
-- as much as deciding a call). A key outlives its fresh state by at most one step
-- more than TTL_MARGIN_MS.
local TTL_STEP_MS = 100
-- TTL texts kept, by steps, across the calls of the library; forgotten together when
-- there are more than TTL_TEXTS_KEPT.
local ttl_texts, ttl_texts_kept, TTL_TEXTS_KEPT = {}, 0, 1024

-- PEXPIRE argument for state that is fresh again `us` microseconds from now.
local function ttl_ms(us)
  local steps = max(ceil(us / (1000 * TTL_STEP_MS)), 1)
  local text = ttl_texts[steps]
  if not text then
    if ttl_texts_kept >= TTL_TEXTS_KEPT then
      ttl_texts, ttl_texts_kept = {}, 0
    end
    text = int(steps * TTL_STEP_MS + TTL_MARGIN_MS)
    ttl_texts[steps], ttl_texts_kept = text, ttl_texts_kept + 1
  end
  return text
end

-- One member of a call: the keys and settings of one (limiter, key), as an array
-- indexed by the names below (an array: cheaper to fill than a table of named
-- fields). Its first PROFILE_ARGS entries are its limiter's settings, in the order
-- of a profile (see `profile`), so that a profile answers for its members where
-- only settings are read (`save`); then come its keys (KEYS[k] on), its cost, its
-- lease id ('' = none) and the profile itself.
--   KEYS  rate state (per algorithm, see keys.rs), then leases (ZSET) when its
--         limiter caps concurrency: a key not needed is not sent (`compose`)
--   ARGV  a profile (PROFILE_ARGS), then cost and lease id
local PROFILE_ARGS = 7
local MEMBER_ARGS = PROFILE_ARGS + 2
local KIND, PARAM, CAPACITY, RUNS, ALIGN, MAX, LEASE_TTL = 1, 2, 3, 4, 5, 6, 7
local RATE, LEASES, COST, LEASE, PROFILE = 8, 9, 10, 11, 12

-- The settings of one limiter, from ARGV[a]: kind ('tb' token bucket, 'sw' sliding
-- window, 'fw' fixed windows, 'fm' calendar months, 'cc' concurrency only), param
-- (interval_us, window_us or the windows' length_us), burst or limit, runs (the
-- log's precision), align_us (the log's merge grid, the windows' phase, or the
-- months' UTC offset), max_concurrent (0 = no cap), lease_ttl_us. A batch sends each
-- limiter's once, however many of its members it holds (acquire.lua).
local function profile(ARGV, a)
  return {
    ARGV[a], tonum(ARGV[a + 1]), tonum(ARGV[a + 2]), tonum(ARGV[a + 3]),
    tonum(ARGV[a + 4]), tonum(ARGV[a + 5]), tonum(ARGV[a + 6]),
  }
end

-- Fills `m` as the member of KEYS[k] under profile `p`; returns the number of its
-- keys (1, or 2 with leases). A batch fills the same few tables again for each of
-- its calls (acquire.lua): a member lives only while its call is decided, and the
-- settings are copied only when the profile changes.
local function compose(m, KEYS, k, p, cost, lease)
  if m[PROFILE] ~= p then
    for i = 1, PROFILE_ARGS do
      m[i] = p[i]
    end
    m[PROFILE] = p
  end
  m[RATE], m[COST], m[LEASE] = KEYS[k], cost, lease
  if p[MAX] > 0 then
    m[LEASES] = KEYS[k + 1]
    return 2
  end
  m[LEASES] = nil
  return 1
end

-- A member written whole: a profile, then its cost and lease (MEMBER_ARGS).
local function member(KEYS, ARGV, k, a)
  local m = {}
  compose(m, KEYS, k, profile(ARGV, a), tonum(ARGV[a + PROFILE_ARGS]), ARGV[a + PROFILE_ARGS + 1])
  return m
end

-- A token bucket's stored state: its TAT (0 for a key with none).
local function tb_load(key)
  return {tat = tonum(rcall('GET', key)) or 0}
end

-- Token bucket (TokenBucket::decide): the decision and, when admitted, the new TAT.
local function tb_decide(tat, now, interval, burst, cost)
  tat = max(tat, now)
  local horizon = now + interval * burst
  local new_tat = tat + cost * interval
  if new_tat <= horizon then
    return 1, idiv(horizon - new_tat, interval), 0, new_tat - now, 0, new_tat
  end
  return 0, idiv(max(horizon - tat, 0), interval), new_tat - horizon, tat - now, 1, 0
end

-- The same, consuming nothing: remaining and reset describe the bucket as it is
-- (TokenBucket::peek).
local function tb_peek(tat, now, interval, burst, cost)
  local allowed, remaining, retry, reset, by, recorded = tb_decide(tat, now, interval, burst, cost)
  if allowed == 1 then
    tat = max(tat, now)
    return 1, idiv(now + interval * burst - tat, interval), retry, tat - now, by, 0
  end
  return allowed, remaining, retry, reset, by, recorded
end

-- TokenBucket::refund: the TAT the admission found when nothing was admitted since
-- (the TAT is still the one it stored), else less only what is certainly still owed.
local function tb_refund(tat, now, interval, cost, admitted, recorded)
  local taken = cost * interval
  if tat == recorded then
    return max(tat - taken, 0)
  end
  return max(tat - max(taken - max(now - admitted, 0), 0), 0)
end

-- Sliding window: the log of one key (WindowLog), at most `runs` runs of units
-- admitted at one time (docs/design.md#sliding-window), in one string,
-- little-endian: a header, then slots of 12 bytes, each a run: its time (a double:
-- exact) and its units (uint32). The header holds what most decisions need: the
-- units in the log, the merge grid it was written with, the newest run and the
-- oldest of the others, where those others lie (`count` slots from `first`, oldest
-- first), how many runs from the oldest lie on the grid, and the number of slots.
--
-- A script reads the header (GETRANGE) and, when units only join the newest run,
-- writes it back (SETRANGE): a batch costs the same whatever the log's length,
-- where reading or building a string as long as a full log (12 KB) costs a script
-- as much as ten commands. Runs change in place, with SETRANGE within the value
-- (which neither moves nor grows it): runs that leave the window only move
-- `first`, a new run takes the slot after the others, a merge rewrites the runs
-- after those already on the grid. Only when no slot is left after the others is
-- the value written afresh, runs first, with room for as many again but at most an
-- eighth more than a full log: 56 + 1125 * 12 bytes (13.6 KB) at the largest
-- precision (1000). A refund from an older run, and a refusal that counts past the
-- oldest run, read more of it.
--
-- Read, a log is {key, total, nt, nn, ot, on, first, count, cap, g, ng}: the newest
-- run (time nt, units nn; nil for an empty log), the oldest older run (ot, on), the
-- slots of the older runs, the number of slots, how many older runs from the oldest
-- lie on the grid (g), and whether the newest does (ng, when g = count). A merge
-- leaves runs on the grid where they are (ceil(t / grid) * grid = t), so it decodes
-- only the runs after them. Only a merge extends that claim; a refund that removes
-- a run shortens it (a claim too short costs decoding, never a wrong decision).
-- `dirty` says that the header changed, `moved` that the newest run moved forward
-- (the TTL follows it).
local RUN = '<dI4'
local RUN_SIZE = 12
-- Units, grid, newest and oldest time, newest and oldest units, first, count, runs
-- on the grid, slots.
local HEADER = '<ddddI4I4I4I4I4I4'
local HEADER_SIZE = 56
-- Older runs read at once when several may be needed.
local CHUNK = 32
-- What a value written afresh starts with, until `save` writes the header. A
-- literal: a library being loaded cannot call into `string` yet.
local NO_HEADER = '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'
  .. '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'

-- The log of `key`, for a rule whose merge grid is `grid`: its header.
local function log_load(key, grid)
  local log = {key = key, total = 0, first = 0, count = 0, cap = 0, g = 0, ng = false}
  local head = rcall('GETRANGE', key, 0, HEADER_SIZE - 1)
  if #head == HEADER_SIZE then
    local total, stored_grid, nt, ot, nn, on, first, count, on_grid, cap =
      sunpack(HEADER, head)
    -- Runs on the grid of another rule (the limiter was reconfigured) are not on
    -- this one's.
    if stored_grid ~= grid then
      on_grid = 0
    end
    log.total, log.nt, log.nn, log.ot, log.on = total, nt, nn, ot, on
    log.first, log.count, log.cap = first, count, cap
    log.g, log.ng = min(on_grid, count), on_grid > count
  end
  return log
end

-- Older runs a..b (0 is the oldest), packed.
local function log_read(log, a, b)
  local first = HEADER_SIZE + (log.first + a) * RUN_SIZE
  return rcall('GETRANGE', log.key, first, first + (b - a + 1) * RUN_SIZE - 1)
end

-- Writes packed runs over the older runs from `a` on.
local function log_write(log, a, runs)
  rcall('SETRANGE', log.key, HEADER_SIZE + (log.first + a) * RUN_SIZE, runs)
end

-- Runs of the log, the newest included.
local function log_count(log)
  if log.nt then
    return log.count + 1
  end
  return 0
end

-- Drops the runs that have left the window (WindowLog::expire): that changes no
-- decision, so a read-only script may do it too (nothing is written unless another
-- change is). Runs are sorted: the newest goes only after all the others. Once per
-- instant: what a log gains after it (runs at now or later, runs moved forward) is
-- still in the window, so the calls of a batch after the first skip it.
local function log_expire(log, now, window)
  if log.expired_at == now and log.window == window then
    return
  end
  log.expired_at, log.window = now, window
  local dropped, chunk, base = 0, nil, 0
  local t, n = log.ot, log.on
  while dropped < log.count and t + window <= now do
    log.total = log.total - n
    dropped = dropped + 1
    if dropped < log.count then
      if not chunk or dropped - base >= #chunk / RUN_SIZE then
        base, chunk = dropped, log_read(log, dropped, min(dropped + CHUNK, log.count) - 1)
      end
      t, n = sunpack(RUN, chunk, (dropped - base) * RUN_SIZE + 1)
    end
  end
  if dropped > 0 then
    log.first, log.count = log.first + dropped, log.count - dropped
    log.g = max(log.g - dropped, 0)
    log.ot, log.on, log.dirty = t, n, true
  end
  if log.count == 0 and log.nt and log.nt + window <= now then
    log.total = log.total - log.nn
    log.nt, log.nn, log.ng, log.dirty = nil, nil, false, true
  end
end

-- The header to store for a log that is not empty.
local function log_header(log, grid)
  local on_grid = log.g
  if log.ng and log.g == log.count then
    on_grid = on_grid + 1
  end
  return spack(HEADER, log.total, grid, log.nt, log.ot or 0, log.nn, log.on or 0,
    log.first, log.count, on_grid, log.cap)
end

-- Where units admitted at `now` go (WindowLog::push): into the newest run when it is
-- not older than now (time that stands still, a clock that stepped back); when the
-- log is full and its newest run older, into the run it becomes once every run has
-- moved forward on the grid, if that is not older than now; else a new run at now.
local function log_slot(log, now, runs, grid)
  local newest = log.nt
  if newest and newest < now and log_count(log) >= runs then
    newest = cdiv(newest, grid) * grid
  end
  if newest and newest >= now then
    return newest
  end
  return now
end

-- WindowLog::merge_on: every run moves forward to the next multiple of `grid`, and
-- the runs that meet merge. At most runs - 1 remain (SlidingWindow::grid_nanos).
-- The g older runs on the grid stay; a run after them, later than the last of them,
-- moves to a later multiple, so it never meets one of them. The merged runs fit in
-- the slots of those they replace.
local function log_merge(log, grid)
  local g = log.g
  local tail = ''
  if g < log.count then
    tail = log_read(log, g, log.count - 1)
  end
  local parts, at, units = {}, nil, 0
  for i = g, log.count do
    local t, n
    if i == log.count then
      t, n = log.nt, log.nn
    else
      t, n = sunpack(RUN, tail, (i - g) * RUN_SIZE + 1)
    end
    local moved = cdiv(t, grid) * grid
    if moved == at then
      units = units + n
    else
      if at then
        parts[#parts + 1] = spack(RUN, at, units)
      end
      at, units = moved, n
    end
  end
  if #parts > 0 then
    log_write(log, g, concat(parts))
    if g == 0 then
      log.ot, log.on = sunpack(RUN, parts[1])
    end
  end
  log.count = g + #parts
  log.nt, log.nn, log.ng, log.g = at, units, true, log.count
  log.dirty, log.moved = true, true
end

-- The newest run joins the older ones, in the slot after them. When there is none,
-- the value is written afresh: the older runs from the first slot, then room for as
-- many again, up to an eighth more than a full log (`runs`).
local function log_append(log, runs)
  local run = spack(RUN, log.nt, log.nn)
  if log.first + log.count < log.cap then
    log_write(log, log.count, run)
  else
    local older = ''
    if log.count > 0 then
      older = log_read(log, 0, log.count - 1)
    end
    local cap = max(min(2 * (log.count + 1), runs + floor(runs / 8)), log.count + 1)
    rcall('SET', log.key,
      NO_HEADER .. older .. run .. srep('\0', (cap - log.count - 1) * RUN_SIZE))
    log.first, log.cap = 0, cap
  end
  if log.count == 0 then
    log.ot, log.on = log.nt, log.nn
  end
  if log.ng and log.g == log.count then
    log.g = log.count + 1
  end
  log.count = log.count + 1
end

-- WindowLog::push, on a log whose expired runs are dropped: records `cost` units at
-- `now` and returns the time of the run they went into (what log_slot said).
local function log_push(log, now, cost, runs, grid)
  if log.nt and log.nt < now and log_count(log) >= runs then
    log_merge(log, grid)
  end
  log.total, log.dirty = log.total + cost, true
  if log.nt and log.nt >= now then
    log.nn = log.nn + cost
  else
    if log.nt then
      log_append(log, runs)
    end
    log.nt, log.nn, log.ng, log.moved = now, cost, false, true
  end
  return log.nt
end

-- WindowLog::remove: takes back up to `cost` units of the run at `at`; false when
-- there is none. The newest run first (a refund usually follows its admission), then
-- a binary search of the others.
local function log_remove(log, at, cost)
  if log.nt == at then
    local taken = min(log.nn, cost)
    log.nn, log.total, log.dirty = log.nn - taken, log.total - taken, true
    if log.nn == 0 then
      -- The newest older run becomes the newest. The TTL, set for a later newest
      -- run, only keeps the key longer than needed.
      if log.count > 1 then
        log.nt, log.nn = sunpack(RUN, log_read(log, log.count - 1, log.count - 1))
      elseif log.count == 1 then
        log.nt, log.nn = log.ot, log.on
      else
        log.nt, log.nn = nil, nil
      end
      log.count = max(log.count - 1, 0)
      log.g, log.ng = min(log.g, log.count), false
    end
    return true
  end
  if log.count == 0 then
    return false
  end
  local older = log_read(log, 0, log.count - 1)
  local lo, hi = 0, log.count - 1
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    local t, n = sunpack(RUN, older, mid * RUN_SIZE + 1)
    if t == at then
      local taken = min(n, cost)
      log.total, log.dirty = log.total - taken, true
      if taken < n then
        log_write(log, mid, spack(RUN, t, n - taken))
        if mid == 0 then
          log.on = n - taken
        end
      elseif mid == 0 then
        log.first, log.count = log.first + 1, log.count - 1
        log.g = max(log.g - 1, 0)
        if log.count > 0 then
          log.ot, log.on = sunpack(RUN, older, RUN_SIZE + 1)
        end
      else
        -- The runs after it move back one slot, over it.
        if mid < log.count - 1 then
          log_write(log, mid, ssub(older, (mid + 1) * RUN_SIZE + 1))
        end
        log.count = log.count - 1
        log.g = min(log.g, mid)
      end
      return true
    elseif t < at then
      lo = mid + 1
    else
      hi = mid - 1
    end
  end
  return false
end

-- Time of the run after which `units` of the oldest units in the window are gone
-- (WindowLog::time_when_oldest_leave), on a log whose expired runs are dropped.
local function log_oldest_leave(log, units)
  if log.count > 0 and log.on >= units then
    return log.ot
  end
  local seen, i = 0, 0
  while i < log.count do
    local last = min(i + CHUNK, log.count) - 1
    local chunk = log_read(log, i, last)
    for j = 0, last - i do
      local t, n = sunpack(RUN, chunk, j * RUN_SIZE + 1)
      seen = seen + n
      if seen >= units then
        return t
      end
    end
    i = last + 1
  end
  return log.nt
end

-- A sliding-window refusal with `used` units in the window (SlidingWindow::refusal):
-- it waits until enough of the oldest units have left.
local function sw_refusal(log, m, now, used)
  local window = m[PARAM]
  local leaves_at = log_oldest_leave(log, used + m[COST] - m[CAPACITY]) + window
  local newest = log.nt or now
  return 0, max(m[CAPACITY] - used, 0), max(leaves_at - now, 0),
    max(newest + window - now, 0), 1, 0
end

-- SlidingWindow::decide, writing nothing (log_push records it).
local function sw_decide(log, m, now)
  log_expire(log, now, m[PARAM])
  local used = log.total
  if used + m[COST] <= m[CAPACITY] then
    local at = log_slot(log, now, m[RUNS], m[ALIGN])
    return 1, m[CAPACITY] - used - m[COST], 0, max(at + m[PARAM] - now, 0), 0, at
  end
  return sw_refusal(log, m, now, used)
end

-- SlidingWindow::peek.
local function sw_peek(log, m, now)
  log_expire(log, now, m[PARAM])
  local used = log.total
  if used + m[COST] <= m[CAPACITY] then
    local reset = 0
    if used > 0 then
      reset = max(log.nt + m[PARAM] - now, 0)
    end
    return 1, m[CAPACITY] - used, 0, reset, 0, 0
  end
  return sw_refusal(log, m, now, used)
end

-- Fixed windows (FixedWindow, docs/design.md#fixed-windows): the state of a key is
-- its window's start and the units used in it, stored as two little-endian doubles.
local DAY_US = 86400000000

local function window_load(value)
  if value and #value == 16 then
    local start, used = sunpack('<dd', value)
    return {start = start, used = used}
  end
  return {start = 0, used = 0}
end

-- Days from 1970-01-01 to the 1st of `month` of `year`, in the proleptic Gregorian
-- calendar (days_from_civil: eras of 400 years, years starting in March).
local function days_from_civil(year, month)
  if month <= 2 then
    year = year - 1
  end
  local era = fdiv(year, 400)
  local yoe = year - era * 400
  local mp = month + 9
  if month > 2 then
    mp = month - 3
  end
  local doy = idiv(153 * mp + 2, 5)
  local doe = yoe * 365 + idiv(yoe, 4) - idiv(yoe, 100) + doy
  return era * 146097 + doe - 719468
end

-- The year and month of the day `days` after 1970-01-01 (civil_from_days).
local function civil_from_days(days)
  local z = days + 719468
  local era = fdiv(z, 146097)
  local doe = z - era * 146097
  local yoe = idiv(doe - idiv(doe, 1460) + idiv(doe, 36524) - idiv(doe, 146096), 365)
  local doy = doe - (365 * yoe + idiv(yoe, 4) - idiv(yoe, 100))
  local mp = idiv(5 * doy + 2, 153)
  local month = mp - 9
  if mp < 10 then
    month = mp + 3
  end
  local year = yoe + era * 400
  if month <= 2 then
    year = year + 1
  end
  return year, month
end

-- FixedWindow::bounds: the window holding `at`, its start and its end (exclusive),
-- clamped at the epoch as the reference clamps to u64.
local function window_bounds(m, at)
  local start, stop
  if m[KIND] == 'fw' then
    start = fdiv(at - m[ALIGN], m[PARAM]) * m[PARAM] + m[ALIGN]
    stop = start + m[PARAM]
  else
    -- The month of local time at a UTC offset, from local midnight of its 1st to
    -- local midnight of the next month's.
    local offset = m[ALIGN]
    local year, month = civil_from_days(fdiv(at + offset, DAY_US))
    start = days_from_civil(year, month) * DAY_US - offset
    if month == 12 then
      year, month = year + 1, 1
    else
      month = month + 1
    end
    stop = days_from_civil(year, month) * DAY_US - offset
  end
  return max(start, 0), max(stop, 0)
end

-- FixedWindow::current: the window a key counts in at `now` (its start, units used
-- and end): the one holding now, or the key's own when newer (a clock that stepped
-- back never reopens an older window).
local function window_current(state, m, now)
  local start, stop = window_bounds(m, now)
  if state.start > start then
    local _, own_stop = window_bounds(m, state.start)
    return state.start, state.used, own_stop
  end
  if state.start == start then
    return start, state.used, stop
  end
  return start, 0, stop
end

-- A fixed-window refusal: the window's end starts a new one, where any cost fits.
local function fw_refusal(m, now, used, stop)
  local wait = max(stop - now, 0)
  return 0, max(m[CAPACITY] - used, 0), wait, wait, 1, 0
end

-- FixedWindow::decide, writing nothing.
local function fw_decide(state, m, now)
  local start, used, stop = window_current(state, m, now)
  if used + m[COST] <= m[CAPACITY] then
    return 1, m[CAPACITY] - used - m[COST], 0, max(stop - now, 0), 0, start
  end
  return fw_refusal(m, now, used, stop)
end

-- FixedWindow::peek.
local function fw_peek(state, m, now)
  local start, used, stop = window_current(state, m, now)
  if used + m[COST] <= m[CAPACITY] then
    local reset = 0
    if used > 0 then
      reset = max(stop - now, 0)
    end
    return 1, m[CAPACITY] - used, 0, reset, 0, 0
  end
  return fw_refusal(m, now, used, stop)
end

-- The rate states a script has read, by key: each key is read once and, when
-- changed, written once at the end of the script (`save`), so a batch of calls on
-- one key costs one read and one write however many calls it holds
-- (docs/design.md#batches).
local function rate_state(states, m)
  local key = m[RATE]
  local state = states[key]
  if not state then
    local kind = m[KIND]
    if kind == 'sw' then
      state = log_load(key, m[ALIGN])
    elseif kind == 'tb' then
      state = tb_load(key)
    else
      state = window_load(rcall('GET', key))
    end
    states[key] = state
  end
  return state
end

-- Writes back every state a script changed, each with the TTL of the time until it
-- is fresh again (KeyState::idle_at); a state already fresh is deleted. A state
-- records in `by` the profile of the member that changed it, whose rule gives the
-- TTL.
local function save(states, now)
  for key, state in pairs(states) do
    local m = state.by
    if m then
      local kind = m[KIND]
      -- When the state is fresh again, and the value to store until then; none for
      -- a state fresh already.
      local idle_at, value = 0, nil
      if kind == 'tb' then
        idle_at, value = state.tat, int(state.tat)
      elseif kind == 'sw' then
        log_expire(state, now, m[PARAM])
        if state.nt then
          -- The slots are written already; the TTL follows the newest run.
          idle_at = nil
          if state.dirty then
            rcall('SETRANGE', key, 0, log_header(state, m[ALIGN]))
          end
          if state.moved then
            rcall('PEXPIRE', key, ttl_ms(state.nt + m[PARAM] - now))
          end
        end
      elseif state.used > 0 then
        local _, stop = window_bounds(m, state.start)
        idle_at, value = stop, spack('<dd', state.start, state.used)
      end
      if idle_at and idle_at > now then
        rcall('SET', key, value, 'PX', ttl_ms(idle_at - now))
      elseif idle_at then
        rcall('DEL', key)
      end
    end
  end
end

-- Score of the newest entry of a ZSET, or nil when it is empty.
local function newest_score(zset)
  local newest = rcall('ZREVRANGE', zset, 0, 0, 'WITHSCORES')
  return tonum(newest[2])
end

-- Live leases at `now` (LeaseSet::count_live).
local function live_leases(m, now)
  return rcall('ZCOUNT', m[LEASES], '(' .. int(now), '+inf')
end

-- The rate part of a peek; for a limiter without a rate, its free slots.
local function rate_peek(states, m, now)
  local kind = m[KIND]
  if kind == 'tb' then
    return tb_peek(rate_state(states, m).tat, now, m[PARAM], m[CAPACITY], m[COST])
  elseif kind == 'sw' then
    return sw_peek(rate_state(states, m), m, now)
  elseif kind == 'fw' or kind == 'fm' then
    return fw_peek(rate_state(states, m), m, now)
  end
  return 1, max(m[MAX] - live_leases(m, now), 0), 0, 0, 0, 0
end

-- Every slot is held: the rate's numbers, refused by concurrency. Its retry-after is
-- the rate's alone; a slot comes back when its holder lets go.
local function concurrency_refusal(states, m, now)
  local _, remaining, retry, reset = rate_peek(states, m, now)
  return 0, remaining, retry, reset, 2, 0
end

-- algorithm::peek: what an attempt would get now.
local function peek(states, m, now)
  if m[MAX] > 0 and live_leases(m, now) >= m[MAX] then
    return concurrency_refusal(states, m, now)
  end
  return rate_peek(states, m, now)
end

-- algorithm::decide, changing no state: the decision an attempt gets. `admit`
-- records it.
local function decide(states, m, now)
  local taking = m[MAX] > 0 and m[LEASE] ~= ''
  if taking and live_leases(m, now) >= m[MAX] then
    return concurrency_refusal(states, m, now)
  end
  local kind = m[KIND]
  if kind == 'tb' then
    return tb_decide(rate_state(states, m).tat, now, m[PARAM], m[CAPACITY], m[COST])
  elseif kind == 'sw' then
    return sw_decide(rate_state(states, m), m, now)
  elseif kind == 'fw' or kind == 'fm' then
    return fw_decide(rate_state(states, m), m, now)
  end
  local taken = 0
  if taking then
    taken = 1
  end
  return 1, max(m[MAX] - live_leases(m, now) - taken, 0), 0, 0, 0, 0
end

-- Holds lease `id` until now + ttl, and keeps the set alive until its last expiry.
local function hold_lease(leases, id, now, ttl)
  rcall('ZADD', leases, int(now + ttl), id)
  rcall('PEXPIRE', leases, ttl_ms(newest_score(leases) - now))
end

-- Records the admission of member `m` (decided by `decide` at `now`, `recorded` its
-- last value) in its state, written by `save`, and takes its lease.
local function admit(states, m, now, recorded)
  local kind = m[KIND]
  if kind ~= 'cc' then
    local state = rate_state(states, m)
    state.by = m[PROFILE]
    if kind == 'tb' then
      state.tat = recorded
    elseif kind == 'sw' then
      log_expire(state, now, m[PARAM])
      log_push(state, now, m[COST], m[RUNS], m[ALIGN])
    else
      local start, used = window_current(state, m, now)
      state.start, state.used = start, used + m[COST]
    end
  end
  if m[MAX] > 0 and m[LEASE] ~= '' then
    -- Expired leases free their slots (LeaseSet::live).
    rcall('ZREMRANGEBYSCORE', m[LEASES], '-inf', int(now))
    hold_lease(m[LEASES], m[LEASE], now, m[LEASE_TTL])
  end
end

-- A run of `calls` lone token-bucket calls under profile `p` (no concurrency cap),
-- at cost `cost`, on KEYS[k] on: decided and recorded as `decide` and `admit`
-- would, without filling a member for each. The shape of nearly every call
-- (docs/design.md#batches), where those calls and the member cost the server
-- more than the decision itself. Returns the next key index and the answer's last
-- index.
local function tb_lone_run(states, out, o, KEYS, k, calls, p, cost, now)
  local interval, burst = p[PARAM], p[CAPACITY]
  for i = k, k + calls - 1 do
    local key = KEYS[i]
    local state = states[key]
    if not state then
      state = tb_load(key)
      states[key] = state
    end
    -- An admission's answer ends with what it recorded.
    if answer(out, o + 1, tb_decide(state.tat, now, interval, burst, cost)) == 1 then
      state.tat, state.by = out[o + ANSWER_LEN], p
    end
    o = o + ANSWER_LEN
  end
  return k + calls, o
end

-- algorithm::refund, rate part: gives back up to `cost` units of the admission whose
-- receipt is (admitted, recorded), never more than it took.
local function refund_rate(states, m, now, admitted, recorded)
  local kind = m[KIND]
  if kind == 'cc' then
    return
  end
  local state = rate_state(states, m)
  if kind == 'tb' then
    local tat = tb_refund(state.tat, now, m[PARAM], m[COST], admitted, recorded)
    if tat ~= state.tat then
      state.tat, state.by = tat, m[PROFILE]
    end
  elseif kind == 'sw' then
    -- SlidingWindow::refund: from its own run, or from the grid run it was merged
    -- into; units that left the window with their run are not taken twice.
    if log_remove(state, recorded, m[COST])
        or log_remove(state, cdiv(recorded, m[ALIGN]) * m[ALIGN], m[COST]) then
      state.by = m[PROFILE]
    end
  elseif state.start == recorded and state.used > 0 then
    -- FixedWindow::refund: only in the window it was counted in.
    state.used, state.by = state.used - min(state.used, m[COST]), m[PROFILE]
  end
end

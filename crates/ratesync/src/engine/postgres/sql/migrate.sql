-- ratesync: the PostgreSQL schema of one store (docs/design.md#postgresql).
--
-- Printed by `ratesync migrate --print`, applied by `ratesync migrate` or by the engine
-- when the store sets `auto_create = true`. Idempotent, and safe when many processes
-- run it at once: schema.rs wraps it in one transaction that first takes an
-- advisory lock on this (schema, table). (CREATE ... IF NOT EXISTS alone is not safe
-- against itself: two sessions creating the same table at once can both pass the
-- check, and one then fails on the catalog's unique index.) Names in @...@ are
-- filled in by schema.rs, quoted; every value a function works on is a bound
-- parameter.
--
-- All times are integer microseconds since the epoch, read with clock_timestamp() at
-- decision time (the server's clock, docs/design.md#time; the test build can pin it).
-- The math is a line-by-line port of crate::algorithm (gcra.rs, sliding_window.rs,
-- fixed_window.rs, leases.rs, group.rs), checked against the Rust reference by
-- tests/postgres_sql.rs. A decision is six integers:
--   {allowed (0/1), remaining, retry_after_us, reset_after_us,
--    denied_by (0 none, 1 rate, 2 concurrency), recorded_us}
-- where recorded is the TAT a token-bucket admission stored, the time of the log run
-- a sliding-window admission went into, or the start of the fixed window it was
-- counted in: what a refund names (Receipt).

@create_schema@

-- One row per (limiter, key): its whole state, so that one row lock serialises every
-- decision of that key and nothing else. Limiter ids and keys are stored as raw bytes
-- (any string is a key, none can escape its row). `expires_at` is when the row has
-- become indistinguishable from a key never seen, on the server's clock: from then on
-- the cleanup may delete it.
CREATE @unlogged@TABLE IF NOT EXISTS @table@ (
    limiter    bytea     NOT NULL,
    key        bytea     NOT NULL,
    -- token bucket: GCRA theoretical arrival time (0 = never admitted)
    tat        bigint    NOT NULL DEFAULT 0,
    -- sliding window: admission times oldest first, equal times merged into one run
    -- of log_n[i] units, at most the rule's precision runs (WindowLog)
    log_at     bigint[]  NOT NULL DEFAULT '{}',
    log_n      bigint[]  NOT NULL DEFAULT '{}',
    -- concurrency leases: id and expiry, same index (LeaseSet)
    lease_id   bigint[]  NOT NULL DEFAULT '{}',
    lease_exp  bigint[]  NOT NULL DEFAULT '{}',
    expires_at bigint    NOT NULL,
    -- fixed window: the start of the window the key counts in, and its units
    -- (WindowCount); last, where the upgrade below adds them to an older table
    win_start  bigint    NOT NULL DEFAULT 0,
    win_used   bigint    NOT NULL DEFAULT 0,
    PRIMARY KEY (limiter, key)
) WITH (fillfactor = 70);
-- Room on each page for updated row versions: with `expires_at` moving only once a
-- second (see the decide function), most updates of a hot key are HOT (heap-only: no index
-- write, no index bloat).
ALTER TABLE @table@ SET (fillfactor = 70);

-- A table of that name made by something else (rate-sync's own table has the same
-- default name) is refused with a clear error instead of failing at each decision.
DO @body@
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                    WHERE attrelid = @table_literal@::regclass
                      AND attname = 'lease_exp' AND NOT attisdropped) THEN
        RAISE EXCEPTION 'table % exists but was not created by ratesync (rate-sync''s table has the same default name): set another table_name, or drop it', @table_literal@;
    END IF;
END
@body@;

-- A table of the schema before fixed windows gets their columns, in place (existing
-- rows read as keys that never counted in one). Checked first, so that a migration
-- applied again takes no exclusive lock on a live table.
DO @body@
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                    WHERE attrelid = @table_literal@::regclass
                      AND attname = 'win_used' AND NOT attisdropped) THEN
        ALTER TABLE @table@
            ADD COLUMN IF NOT EXISTS win_start bigint NOT NULL DEFAULT 0,
            ADD COLUMN IF NOT EXISTS win_used  bigint NOT NULL DEFAULT 0;
    END IF;
END
@body@;

-- The functions of that schema took fewer parameters: dropped, not left beside the
-- new ones as overloads that decide without the rules' new settings.
DROP FUNCTION IF EXISTS @acquire@(bytea[], bytea[], integer[], integer[], text[], bigint[],
    bigint[], bigint[], bigint[], bigint[], bigint[], boolean);
DROP FUNCTION IF EXISTS @acquire@(bytea[], bytea[], integer[], integer[], text[], bigint[],
    bigint[], bigint[], bigint[], bigint[], bigint[], boolean, bigint);
DROP FUNCTION IF EXISTS @refund@(bytea, bytea, text, bigint, bigint, bigint, bigint, bigint,
    text, text);
DROP FUNCTION IF EXISTS @refund@(bytea, bytea, text, bigint, bigint, bigint, bigint, bigint,
    text, text, bigint);

-- The cleanup finds expired rows through this index, a small batch at a time: never
-- a scan of the whole table.
CREATE INDEX IF NOT EXISTS @expiry_index@ ON @table@ (expires_at);

-- TokenBucket::decide / peek of one member: its decision's six integers (below),
-- whose sixth, the recorded TAT, is the key's new TAT when it admitted and consumed.
-- p_tat is the key's TAT, p_interval and p_burst its rule. A SQL function of one
-- SELECT: the planner inlines it into the acquire function's expressions, so it costs
-- no call, and both of that function's loops decide with this one copy.
CREATE OR REPLACE FUNCTION @token_bucket@(
    p_tat bigint, p_now bigint, p_interval bigint, p_burst bigint, p_cost bigint,
    p_peek boolean
) RETURNS bigint[]
LANGUAGE sql IMMUTABLE
AS @body@
    -- With tat = max(TAT, now), new = tat + cost * interval and horizon = now +
    -- burst * interval: admitted when new <= horizon.
    SELECT CASE
        WHEN greatest(p_tat, p_now) + p_cost * p_interval > p_now + p_interval * p_burst THEN
            ARRAY[0, greatest(p_now + p_interval * p_burst - greatest(p_tat, p_now), 0) / p_interval,
                  greatest(p_tat, p_now) + p_cost * p_interval - (p_now + p_interval * p_burst),
                  greatest(p_tat, p_now) - p_now, 1, 0]
        WHEN p_peek THEN
            ARRAY[1, (p_now + p_interval * p_burst - greatest(p_tat, p_now)) / p_interval, 0,
                  greatest(p_tat, p_now) - p_now, 0, 0]
        ELSE
            ARRAY[1, (p_now + p_interval * p_burst - (greatest(p_tat, p_now) + p_cost * p_interval))
                     / p_interval, 0,
                  greatest(p_tat, p_now) + p_cost * p_interval - p_now, 0,
                  greatest(p_tat, p_now) + p_cost * p_interval]
    END
@body@;

-- When a row written now may be removed (KeyState::idle_at): the latest of its TAT,
-- its newest admission leaving the window (p_log_at's last, sw), its window's end
-- (fw; a calendar month's at the latest 31 days after its start) and its last lease
-- expiry (p_lease_max), by the rule of the member that wrote it; kept on the real
-- clock, never earlier than p_expires, and rounded up to the next whole second, so
-- that the indexed column of a busy key rarely changes. A SQL function of one SELECT
-- without a subquery: the planner inlines it into the acquire function's writes.
CREATE OR REPLACE FUNCTION @expiry@(
    p_expires bigint, p_real bigint, p_now bigint, p_tat bigint, p_kind text,
    p_param bigint, p_log_at bigint[], p_win_start bigint, p_win_used bigint,
    p_lease_max bigint
) RETURNS bigint
LANGUAGE sql IMMUTABLE
AS @body@
    SELECT greatest(p_expires, ((p_real + (greatest(
        p_tat,
        CASE p_kind
            WHEN 'sw' THEN p_log_at[cardinality(p_log_at)] + p_param
            WHEN 'fw' THEN CASE WHEN p_win_used > 0 THEN p_win_start + p_param END
            WHEN 'fm' THEN CASE WHEN p_win_used > 0 THEN p_win_start + 31 * 86400000000 END
        END,
        p_lease_max) - p_now)) / 1000000 + 1) * 1000000)
@body@;

-- Decides a batch of calls, in order (docs/design.md#batches). A call is a group of
-- (limiter, key) members admitted all together or not at all (algorithm::decide_all);
-- a single acquire is a call of one member. With p_consume = false it is a peek of
-- one call: no lock, nothing written.
--
-- p_limiters, p_keys   the distinct rows the calls touch, in (limiter, key) order
-- p_calls              members per call, in call order
-- p_rows               per member: the index of its row in p_limiters / p_keys
-- p_kinds .. p_ttls    per member: its limiter's rule and the call's cost and lease
--
-- Returns {now_us, then per call: 0 when admitted or the 1-based index of the member
-- that refused, then six integers per member: its decision}.
--
-- Invariants:
-- - Rows are locked in (limiter, key) order, whatever the calls, so two batches
--   sharing rows never wait for each other in a circle; locks wait (never NOWAIT),
--   so contention queues instead of failing. A key never seen gets its row by
--   INSERT ... ON CONFLICT DO NOTHING, in the same order, and is read again, so
--   concurrent first attempts and a concurrent cleanup converge on one locked row.
-- - Each call is decided on the state the calls before it left, as if each were its
--   own transaction, one after the other; each row is written once, at the end.
-- - Every member of a call is decided before any of its state changes: a refused
--   call changes nothing; its refusing member gets its refusal, the others a peek.
-- - Token bucket: the TAT only moves on an admission, to max(TAT, now) + cost *
--   interval, and never beyond now + burst * interval.
-- - Sliding window: an admission only when the units newer than now - window plus
--   its cost fit in `limit`; never recorded earlier than the newest run (a clock that
--   steps back cannot reorder the log); a cost of n is one run of n units, and the
--   log never holds more than p_runs runs (WindowLog::push merges it forward on the
--   p_aligns grid first).
-- - Fixed window: an admission only when the units of the key's window plus its cost
--   fit in `limit`; a window older than the key's is never reopened.
-- - Rate and concurrency lease are taken together or not at all.
CREATE OR REPLACE FUNCTION @acquire@(
    p_limiters bytea[],
    p_keys     bytea[],
    p_calls    integer[],
    p_rows     integer[],
    p_kinds    text[],    -- 'tb' token bucket, 'sw' sliding window, 'fw' fixed windows,
                          -- 'fm' calendar months, 'cc' concurrency only
    p_params   bigint[],  -- interval_us (tb), window_us (sw), length_us (fw), 0
    p_aligns   bigint[],  -- merge grid_us (sw), phase_us (fw), UTC offset_us east (fm), 0
    p_runs     bigint[],  -- most runs a log keeps (sw, its precision), 0
    p_caps     bigint[],  -- burst or limit
    p_costs    bigint[],
    p_max      bigint[],  -- concurrency cap, 0 = none
    p_leases   bigint[],  -- lease id to take when admitted, NULL = none
    p_ttls     bigint[],  -- lease_ttl_us
    p_consume  boolean    -- false: a peek
    @now_param@
) RETURNS bigint[]
LANGUAGE plpgsql
-- Its statements' plans are made once per session and kept (a generic plan): left
-- to choose, PostgreSQL kept planning a statement anew for every call, with the
-- arrays' values (about a sixth of the server's time on 64 keys). They find rows by
-- key or by ctid, never by a scan of the table: a small table's generic plan would
-- otherwise scan it whole, dead row versions and all, at every call.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS @body@
DECLARE
    v_real     bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_now      bigint := @now@;
    v_count    integer := cardinality(p_keys);
    v_state    @table@[] := '{}';  -- each row as the calls so far have left it
    v_written  integer[] := '{}';  -- per row: a member that changed it (0 = none)
    v_next     @table@[] := '{}';  -- per member of the call: its row as admitted
    v_row      @table@%ROWTYPE;
    v_tids     tid[];              -- per row: where it was locked
    v_tats     bigint[];           -- per row: its TAT (the plain loop's state)
    v_plain    boolean := false;   -- no row holds leases (set by the read)
    v_k        integer;            -- a row index (plain loop), a run (log merge)
    v_out      bigint[];
    v_call     bigint[];           -- this call's answer, appended to v_out at its end
    v_first    integer := 0;       -- members of the calls before this one
    v_n        integer;
    v_i        integer;
    v_refused  integer;
    v_d        bigint[];
    v_peek     boolean;
    v_with     boolean;
    v_live     integer;
    v_ids      bigint[];
    v_exps     bigint[];
    v_full     boolean;
    v_leased   boolean;
    v_at       bigint[];
    v_cnt      bigint[];
    v_len      integer;
    v_start    integer;
    v_t        bigint;
    v_total    bigint;
    v_seen     bigint;
    v_leaves   bigint;
    v_newest   bigint;
    v_trimmed  boolean;
    v_x        bigint;
    v_back     boolean;
    v_month    timestamp;
    v_ws       bigint;
    v_we       bigint;
    v_used     bigint;
BEGIN
    IF NOT p_consume THEN
        FOR r IN 1 .. v_count LOOP
            SELECT * INTO v_row FROM @table@ WHERE limiter = p_limiters[r] AND key = p_keys[r];
            IF NOT FOUND THEN
                -- A key never seen, field by field: the column order of a table
                -- created by this schema and of one upgraded to it may differ.
                v_row.limiter := p_limiters[r];
                v_row.key := p_keys[r];
                v_row.tat := 0;
                v_row.log_at := '{}';
                v_row.log_n := '{}';
                v_row.lease_id := '{}';
                v_row.lease_exp := '{}';
                v_row.expires_at := 0;
                v_row.win_start := 0;
                v_row.win_used := 0;
            END IF;
            IF v_count > 1 THEN
                v_state := v_state || v_row;
            END IF;
        END LOOP;
    ELSIF v_count = 1 THEN
        -- One row (a lone call, or a batch on one hot key), read as below but by a
        -- plain primary-key lookup: the statement for several rows costs a lone
        -- call about a tenth more to start. The row then stays in v_row: rows go
        -- through v_state, copied in and out, only when there are several.
        LOOP
            SELECT ARRAY[t], ARRAY[t.ctid], ARRAY[t.tat], cardinality(t.lease_id) = 0
              INTO v_state, v_tids, v_tats, v_plain
              FROM @table@ t
             WHERE t.limiter = p_limiters[1] AND t.key = p_keys[1] FOR UPDATE;
            EXIT WHEN FOUND;
            INSERT INTO @table@ (limiter, key, expires_at)
            VALUES (p_limiters[1], p_keys[1], v_real) ON CONFLICT DO NOTHING;
        END LOOP;
        v_row := v_state[1];
    ELSE
        -- Every row read and locked by one statement, with its ctid (where the write
        -- finds it) and TAT; statements are what a batch pays for, not rows. The
        -- LATERAL subquery (with FOR UPDATE it is never flattened) makes it a nested
        -- loop over p_keys: each row is found through the primary key and locked in
        -- (limiter, key) order, the order of p_keys, without a sort; a join let the
        -- planner hash a scan of the whole table instead, whose cost grows with its
        -- dead row versions. A key never seen, or one a cleanup took meanwhile, is
        -- missing: its row is inserted and all are read again.
        LOOP
            SELECT array_agg(x.t), array_agg(x.ctid), array_agg(x.tat),
                   bool_and(x.plain)
              INTO v_state, v_tids, v_tats, v_plain
              FROM unnest(p_limiters, p_keys) AS m(l, k),
                   LATERAL (SELECT t, t.ctid, t.tat, cardinality(t.lease_id) = 0 AS plain
                              FROM @table@ t
                             WHERE t.limiter = m.l AND t.key = m.k FOR UPDATE) x;
            EXIT WHEN cardinality(v_state) = v_count;
            INSERT INTO @table@ (limiter, key, expires_at)
            SELECT m.l, m.k, v_real FROM unnest(p_limiters, p_keys) AS m(l, k)
             ORDER BY m.l, m.k
            ON CONFLICT DO NOTHING;
        END LOOP;
    END IF;
    v_written := array_fill(0, ARRAY[v_count]);

    v_out := ARRAY[v_now];
    IF v_plain AND cardinality(p_calls) = cardinality(p_rows) AND 'tb' = ALL (p_kinds)
       AND 0 = ALL (p_max) THEN
        -- The plain batch, the common one: single token-bucket members without a
        -- concurrency cap, on rows without leases, consumed. Only TATs change: they
        -- are kept in v_tats, and the decision is one expression per call, without
        -- the general loop's passes, lease handling and row copies (each statement
        -- is plpgsql time). The same decisions: the general loop's token bucket is
        -- the same function; a refused call changes nothing.
        FOR v_i IN 1 .. cardinality(p_rows) LOOP
            v_k := p_rows[v_i];
            v_d := @token_bucket@(v_tats[v_k], v_now, p_params[v_i], p_caps[v_i],
                                  p_costs[v_i], false);
            IF v_d[1] = 1 THEN
                v_tats[v_k] := v_d[6];
                v_written[v_k] := v_i;
            END IF;
            -- The call's answer: 0 when admitted, else 1, its refusing member. (One
            -- array appended: `v_out || x || y` would expand all of v_out and
            -- flatten it again on every call.)
            v_out := v_out || (ARRAY[1 - v_d[1]] || v_d);
        END LOOP;
    ELSE
        v_plain := false;
    END IF;
    -- The general loop, when the plain one has not decided the batch.
    FOREACH v_n IN ARRAY CASE WHEN v_plain THEN '{}' ELSE p_calls END LOOP
        -- Built apart and appended once: slices written into the long v_out made
        -- plpgsql expand and flatten all of it again for every call.
        v_call := ARRAY[0];
        v_refused := 0;
        v_trimmed := false;
        -- Pass 1 decides every member (a peek when not consuming); when one refuses,
        -- pass 2 peeks at the others.
        FOR v_pass IN 1 .. 2 LOOP
            FOR j IN 1 .. v_n LOOP
                CONTINUE WHEN j = v_refused;  -- (0 in pass 1)
                v_i := v_first + j;
                IF v_count > 1 THEN
                    v_row := v_state[p_rows[v_i]];
                END IF;
                v_peek := NOT p_consume OR v_pass = 2;

                -- Live leases (LeaseSet::live): expired ones are ignored, and dropped
                -- when the row is written. A member of a limiter without a cap, on a
                -- row without leases, skips all of it (and the writing below): every
                -- statement costs plpgsql time. ('cc' always has a cap.)
                v_leased := p_max[v_i] > 0 OR cardinality(v_row.lease_id) > 0;
                IF v_leased THEN
                    v_with := NOT v_peek AND p_max[v_i] > 0 AND p_leases[v_i] IS NOT NULL;
                    v_live := 0;
                    v_ids := '{}';
                    v_exps := '{}';
                    FOR k IN 1 .. cardinality(v_row.lease_id) LOOP
                        IF v_row.lease_exp[k] > v_now THEN
                            v_live := v_live + 1;
                            v_ids := v_ids || v_row.lease_id[k];
                            v_exps := v_exps || v_row.lease_exp[k];
                        END IF;
                    END LOOP;
                    -- A full cap refuses whatever the rate says (algorithm::decide /
                    -- peek); the rate part of that refusal is a peek.
                    v_full := p_max[v_i] > 0 AND (v_with OR v_peek) AND v_live >= p_max[v_i];
                    v_peek := v_peek OR v_full;
                END IF;

                IF p_kinds[v_i] = 'tb' THEN
                    v_d := @token_bucket@(v_row.tat, v_now, p_params[v_i], p_caps[v_i],
                                          p_costs[v_i], v_peek);
                    IF v_d[6] <> 0 THEN
                        v_row.tat := v_d[6];
                    END IF;
                ELSIF p_kinds[v_i] = 'sw' THEN
                    -- SlidingWindow::decide / peek: the runs from v_start on are still
                    -- in the window (WindowLog::live).
                    v_len := coalesce(array_length(v_row.log_at, 1), 0);
                    v_start := 1;
                    WHILE v_start <= v_len AND v_row.log_at[v_start] + p_params[v_i] <= v_now LOOP
                        v_start := v_start + 1;
                    END LOOP;
                    v_total := 0;
                    FOR k IN v_start .. v_len LOOP
                        v_total := v_total + v_row.log_n[k];
                    END LOOP;
                    IF v_start > 1 AND NOT v_peek THEN
                        -- WindowLog::expire, which the reference's decide runs whatever
                        -- it decides: a refund after a refusal then finds the same runs.
                        v_row.log_at := v_row.log_at[v_start:v_len];
                        v_row.log_n := v_row.log_n[v_start:v_len];
                        v_len := v_len - v_start + 1;
                        v_start := 1;
                        v_trimmed := true;
                    END IF;
                    IF v_total + p_costs[v_i] <= p_caps[v_i] AND v_peek THEN
                        v_d := ARRAY[1, p_caps[v_i] - v_total, 0,
                                     CASE WHEN v_total = 0 THEN 0
                                          ELSE greatest(v_row.log_at[v_len] + p_params[v_i] - v_now, 0)
                                     END, 0, 0];
                    ELSIF v_total + p_costs[v_i] <= p_caps[v_i] THEN
                        -- WindowLog::push. A full log whose newest run is older than now
                        -- first moves every run forward to the next multiple of the grid,
                        -- merging those that meet (merge_on): at most p_runs - 1 remain,
                        -- so the log stays bounded (docs/design.md#sliding-window).
                        IF v_len >= p_runs[v_i] AND v_row.log_at[v_len] < v_now THEN
                            v_at := '{}';
                            v_cnt := '{}';
                            v_k := 0;
                            FOR k IN 1 .. v_len LOOP
                                v_t := (v_row.log_at[k] + p_aligns[v_i] - 1) / p_aligns[v_i] * p_aligns[v_i];
                                IF v_k > 0 AND v_at[v_k] = v_t THEN
                                    v_cnt[v_k] := v_cnt[v_k] + v_row.log_n[k];
                                ELSE
                                    v_k := v_k + 1;
                                    v_at[v_k] := v_t;
                                    v_cnt[v_k] := v_row.log_n[k];
                                END IF;
                            END LOOP;
                            v_row.log_at := v_at;
                            v_row.log_n := v_cnt;
                            v_len := v_k;
                        END IF;
                        -- Time that stands still, a clock that stepped back or a run
                        -- merged forward: the units join the newest run (the log stays
                        -- sorted; no unit is counted earlier than it was admitted).
                        IF v_len > 0 AND v_row.log_at[v_len] >= v_now THEN
                            v_row.log_n[v_len] := v_row.log_n[v_len] + p_costs[v_i];
                        ELSE
                            v_len := v_len + 1;
                            v_row.log_at[v_len] := v_now;
                            v_row.log_n[v_len] := p_costs[v_i];
                        END IF;
                        v_d := ARRAY[1, p_caps[v_i] - v_total - p_costs[v_i], 0,
                                     greatest(v_row.log_at[v_len] + p_params[v_i] - v_now, 0), 0,
                                     v_row.log_at[v_len]];
                    ELSE
                        -- SlidingWindow::refusal: wait until enough of the oldest units
                        -- have left.
                        v_seen := 0;
                        v_leaves := NULL;
                        FOR k IN v_start .. v_len LOOP
                            v_seen := v_seen + v_row.log_n[k];
                            IF v_seen >= v_total + p_costs[v_i] - p_caps[v_i] THEN
                                v_leaves := v_row.log_at[k];
                                EXIT;
                            END IF;
                        END LOOP;
                        v_newest := CASE WHEN v_len > 0 THEN v_row.log_at[v_len] ELSE v_now END;
                        v_leaves := coalesce(v_leaves, CASE WHEN v_len > 0 THEN v_row.log_at[v_len] ELSE 0 END)
                                    + p_params[v_i];
                        v_d := ARRAY[0, greatest(p_caps[v_i] - v_total, 0),
                                     greatest(v_leaves - v_now, 0),
                                     greatest(v_newest + p_params[v_i] - v_now, 0), 1, 0];
                    END IF;
                ELSIF p_kinds[v_i] = 'fw' OR p_kinds[v_i] = 'fm' THEN
                    -- FixedWindow::current: the window holding now, or the key's own
                    -- when it is newer (a clock that stepped back never reopens an older
                    -- window; docs/design.md#fixed-windows). The second round finds the
                    -- end of the key's own window.
                    v_x := v_now;
                    v_back := false;
                    LOOP
                        IF p_kinds[v_i] = 'fw' THEN
                            -- Windows::Every: floor((x - phase) / length) * length + phase.
                            v_ws := v_x - p_aligns[v_i];
                            v_ws := v_ws - ((v_ws % p_params[v_i]) + p_params[v_i]) % p_params[v_i]
                                    + p_aligns[v_i];
                            v_we := v_ws + p_params[v_i];
                        ELSE
                            -- Windows::Months: midnight of the 1st at the UTC offset, as
                            -- the local time's month truncated, shifted back to UTC.
                            v_month := date_trunc('month',
                                to_timestamp(((v_x + p_aligns[v_i]) / 1000000)::double precision)
                                    AT TIME ZONE 'UTC');
                            v_ws := (extract(epoch FROM v_month) * 1000000)::bigint - p_aligns[v_i];
                            v_we := (extract(epoch FROM v_month + interval '1 month') * 1000000)::bigint
                                    - p_aligns[v_i];
                        END IF;
                        EXIT WHEN v_back OR v_row.win_start <= v_ws;
                        v_back := true;
                        v_x := v_row.win_start;
                    END LOOP;
                    IF v_back THEN
                        v_ws := v_row.win_start;
                        v_used := v_row.win_used;
                    ELSIF v_row.win_start = v_ws THEN
                        v_used := v_row.win_used;
                    ELSE
                        v_used := 0;
                    END IF;
                    IF v_used + p_costs[v_i] <= p_caps[v_i] AND v_peek THEN
                        v_d := ARRAY[1, p_caps[v_i] - v_used, 0,
                                     CASE WHEN v_used = 0 THEN 0 ELSE greatest(v_we - v_now, 0) END,
                                     0, 0];
                    ELSIF v_used + p_costs[v_i] <= p_caps[v_i] THEN
                        v_row.win_start := v_ws;
                        v_row.win_used := v_used + p_costs[v_i];
                        v_d := ARRAY[1, p_caps[v_i] - v_row.win_used, 0, greatest(v_we - v_now, 0),
                                     0, v_ws];
                    ELSE
                        -- FixedWindow::refusal: the window's end starts a new one.
                        v_d := ARRAY[0, greatest(p_caps[v_i] - v_used, 0), greatest(v_we - v_now, 0),
                                     greatest(v_we - v_now, 0), 1, 0];
                    END IF;
                ELSE
                    -- No rate: the free slots, after this one when it takes one.
                    v_d := ARRAY[1, greatest(p_max[v_i] - v_live - CASE WHEN v_with THEN 1 ELSE 0 END, 0),
                                 0, 0, 0, 0];
                END IF;

                IF v_leased THEN
                    IF v_full THEN
                        -- A concurrency refusal: the rate's numbers; its retry-after is
                        -- the rate's alone (a slot comes back when its holder lets go).
                        v_d[1] := 0;
                        v_d[5] := 2;
                        v_d[6] := 0;
                    ELSIF v_with AND v_d[1] = 1 THEN
                        v_row.lease_id := v_ids || p_leases[v_i];
                        v_row.lease_exp := v_exps || (v_now + p_ttls[v_i]);
                    ELSE
                        v_row.lease_id := v_ids;
                        v_row.lease_exp := v_exps;
                    END IF;
                END IF;

                v_call[2 + (j - 1) * 6 : 1 + j * 6] := v_d;
                -- (Conditions joined into as few statements as they can be, here and
                -- below: each is plpgsql time on every call.)
                IF v_d[1] = 0 AND p_consume AND v_pass = 1 THEN
                    v_refused := j;
                    v_call[1] := j;
                    EXIT;
                ELSIF v_n > 1 AND v_count > 1 AND p_consume AND v_pass = 1 THEN
                    -- A group's rows wait until every member is admitted; a single
                    -- member's row stays in v_row (below).
                    v_next[j] := v_row;
                END IF;
            END LOOP;
            EXIT WHEN v_refused = 0;
        END LOOP;
        IF v_n = 1 AND p_consume AND (v_refused = 0 OR v_trimmed) THEN
            -- A single call's row as it left it, kept without staging (no other
            -- member can refuse it; each copy of a row costs plpgsql a tuple): when
            -- admitted, or refused by a sliding window that still dropped the runs
            -- that have left it, as algorithm::decide does (a refused group changes
            -- nothing).
            IF v_count > 1 THEN
                v_state[p_rows[v_first + 1]] := v_row;
            END IF;
            v_written[p_rows[v_first + 1]] := v_first + 1;
        ELSIF v_n > 1 AND v_refused = 0 AND p_consume THEN
            FOR j IN 1 .. v_n LOOP
                IF v_count > 1 THEN
                    v_state[p_rows[v_first + j]] := v_next[j];
                END IF;
                v_written[p_rows[v_first + j]] := v_first + j;
            END LOOP;
        END IF;
        v_out := v_out || v_call;
        v_first := v_first + v_n;
    END LOOP;

    IF NOT p_consume THEN
        RETURN v_out;
    END IF;
    -- Every row a call changed written by one statement, found by the ctid it was
    -- locked at (a TID scan per row: no index search), its TAT from v_tats after
    -- the plain loop, its expiry computed here (@expiry@) rather than in a loop over
    -- the rows (each statement of the function is plpgsql time). The row is locked:
    -- its expiry here is the one read with it. A lone row is written by a statement
    -- of its own: the one for several rows costs a lone call about a tenth more.
    IF v_count = 1 THEN
        IF v_written[1] <> 0 THEN
            UPDATE @table@ t
               SET tat = CASE WHEN v_plain THEN v_tats[1] ELSE v_row.tat END,
                   log_at = v_row.log_at, log_n = v_row.log_n,
                   lease_id = v_row.lease_id, lease_exp = v_row.lease_exp,
                   win_start = v_row.win_start, win_used = v_row.win_used,
                   expires_at = @expiry@(t.expires_at, v_real, v_now,
                       CASE WHEN v_plain THEN v_tats[1] ELSE v_row.tat END,
                       p_kinds[v_written[1]], p_params[v_written[1]], v_row.log_at,
                       v_row.win_start, v_row.win_used,
                       CASE WHEN cardinality(v_row.lease_exp) > 0
                            THEN (SELECT max(e) FROM unnest(v_row.lease_exp) AS e) END)
             WHERE t.ctid = v_tids[1];
        END IF;
        RETURN v_out;
    END IF;
    UPDATE @table@ t
       SET tat = CASE WHEN v_plain THEN v_tats[s.ordinality] ELSE s.tat END,
           log_at = s.log_at, log_n = s.log_n,
           lease_id = s.lease_id, lease_exp = s.lease_exp,
           win_start = s.win_start, win_used = s.win_used,
           expires_at = @expiry@(t.expires_at, v_real, v_now,
               CASE WHEN v_plain THEN v_tats[s.ordinality] ELSE s.tat END,
               p_kinds[v_written[s.ordinality]], p_params[v_written[s.ordinality]],
               s.log_at, s.win_start, s.win_used,
               CASE WHEN cardinality(s.lease_exp) > 0
                    THEN (SELECT max(e) FROM unnest(s.lease_exp) AS e) END)
      FROM unnest(v_state) WITH ORDINALITY AS s
     WHERE t.ctid = v_tids[s.ordinality] AND v_written[s.ordinality] <> 0;
    RETURN v_out;
END;
@body@;

-- Gives back what one admission took (algorithm::refund): its units and its lease.
--
-- Invariants: never more than the admission took. A token bucket gets its TAT back
-- exactly when nothing was admitted since (the TAT is still the one it stored), else
-- only the cost less the time since the admission (TokenBucket::refund). A sliding
-- window loses up to `cost` units of the run recorded at the admission's time, or of
-- the grid run it was merged into; units that already left the window are not taken
-- twice. A fixed window loses up to `cost` units only while the key still counts in
-- the admission's window. A settle is a refund of part of the cost without the lease.
-- A lease given back is announced like a release (p_message, when given), at commit.
CREATE OR REPLACE FUNCTION @refund@(
    p_limiter  bytea,
    p_key      bytea,
    p_kind     text,
    p_param    bigint,
    p_align    bigint,   -- as p_aligns of the acquire function
    p_cost     bigint,
    p_lease    bigint,   -- NULL = none
    p_admitted bigint,   -- the receipt: the admission's now_us
    p_recorded bigint,   -- and its recorded_us
    p_channel  text,
    p_message  text      -- NULL: nothing to announce
    @now_param@
) RETURNS boolean
LANGUAGE plpgsql
AS @body@
DECLARE
    v_real  bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_now   bigint := @now@;
    v_row   @table@%ROWTYPE;
    v_taken bigint;
    v_run   bigint;
    v_j     integer;
    v_ids   bigint[] := '{}';
    v_exps  bigint[] := '{}';
    v_freed boolean := false;
BEGIN
    SELECT * INTO v_row FROM @table@ WHERE limiter = p_limiter AND key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_kind = 'tb' THEN
        v_taken := p_cost * p_param;
        IF v_row.tat = p_recorded THEN
            v_row.tat := greatest(v_row.tat - v_taken, 0);
        ELSE
            v_row.tat := greatest(v_row.tat - greatest(v_taken - greatest(v_now - p_admitted, 0), 0), 0);
        END IF;
    ELSIF p_kind = 'sw' THEN
        -- SlidingWindow::refund: the admission's own run, else the grid run a full log
        -- merged it into (WindowLog::merge_on).
        v_run := p_recorded;
        FOR attempt IN 1 .. 2 LOOP
            v_j := array_position(v_row.log_at, v_run);
            IF v_j IS NOT NULL THEN
                v_row.log_n[v_j] := v_row.log_n[v_j] - least(v_row.log_n[v_j], p_cost);
                IF v_row.log_n[v_j] = 0 THEN
                    v_row.log_at := v_row.log_at[1:v_j - 1] || v_row.log_at[v_j + 1:];
                    v_row.log_n := v_row.log_n[1:v_j - 1] || v_row.log_n[v_j + 1:];
                END IF;
                EXIT;
            END IF;
            EXIT WHEN p_align <= 0;
            v_run := (p_recorded + p_align - 1) / p_align * p_align;
        END LOOP;
    ELSIF p_kind = 'fw' OR p_kind = 'fm' THEN
        -- FixedWindow::refund: nothing once the key counts in a later window.
        IF v_row.win_start = p_recorded THEN
            v_row.win_used := v_row.win_used - least(v_row.win_used, p_cost);
        END IF;
    END IF;
    FOR j IN 1 .. coalesce(array_length(v_row.lease_id, 1), 0) LOOP
        IF v_row.lease_id[j] = p_lease THEN
            v_freed := true;
        ELSE
            v_ids := v_ids || v_row.lease_id[j];
            v_exps := v_exps || v_row.lease_exp[j];
        END IF;
    END LOOP;
    UPDATE @table@
       SET tat = v_row.tat, log_at = v_row.log_at, log_n = v_row.log_n,
           win_used = v_row.win_used, lease_id = v_ids, lease_exp = v_exps
     WHERE limiter = p_limiter AND key = p_key;
    IF v_freed AND p_message IS NOT NULL THEN
        PERFORM pg_notify(p_channel, p_message);
    END IF;
    RETURN v_freed;
END;
@body@;

-- Extends a live lease to now + ttl.
--
-- Invariant: a lease that has expired (or was released) is not brought back, since
-- its slot may already be someone else's: the answer is false and nothing is written.
CREATE OR REPLACE FUNCTION @renew@(
    p_limiter bytea, p_key bytea, p_lease bigint, p_lease_ttl bigint
    @now_param@
) RETURNS boolean
LANGUAGE plpgsql
AS @body@
DECLARE
    v_real bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_now  bigint := @now@;
    v_row  @table@%ROWTYPE;
BEGIN
    SELECT * INTO v_row FROM @table@ WHERE limiter = p_limiter AND key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR i IN 1 .. coalesce(array_length(v_row.lease_id, 1), 0) LOOP
        IF v_row.lease_id[i] = p_lease AND v_row.lease_exp[i] > v_now THEN
            v_row.lease_exp[i] := v_now + p_lease_ttl;
            UPDATE @table@
               SET lease_exp = v_row.lease_exp,
                   expires_at = greatest(expires_at,
                                         ((v_real + p_lease_ttl) / 1000000 + 1) * 1000000)
             WHERE limiter = p_limiter AND key = p_key;
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END;
@body@;

-- Gives back a concurrency slot and tells every process (LISTEN/NOTIFY).
--
-- Invariant: only the named lease is removed; releasing twice, or a lease never taken,
-- changes nothing and notifies nobody. The notification (the release message the
-- engine wrote, NULL when too long for NOTIFY) is sent at commit, so a woken waiter
-- finds the slot free.
CREATE OR REPLACE FUNCTION @release@(
    p_limiter bytea, p_key bytea, p_lease bigint, p_channel text, p_message text
) RETURNS boolean
LANGUAGE plpgsql
AS @body@
DECLARE
    v_row  @table@%ROWTYPE;
    v_ids  bigint[] := '{}';
    v_exps bigint[] := '{}';
BEGIN
    SELECT * INTO v_row FROM @table@ WHERE limiter = p_limiter AND key = p_key FOR UPDATE;
    IF NOT FOUND OR NOT (p_lease = ANY (v_row.lease_id)) THEN
        RETURN false;
    END IF;
    FOR i IN 1 .. array_length(v_row.lease_id, 1) LOOP
        IF v_row.lease_id[i] <> p_lease THEN
            v_ids := v_ids || v_row.lease_id[i];
            v_exps := v_exps || v_row.lease_exp[i];
        END IF;
    END LOOP;
    UPDATE @table@ SET lease_id = v_ids, lease_exp = v_exps
     WHERE limiter = p_limiter AND key = p_key;
    IF p_message IS NOT NULL THEN
        PERFORM pg_notify(p_channel, p_message);
    END IF;
    RETURN true;
END;
@body@;

-- Forgets one key of a limiter, or (p_key NULL) all of them; returns the keys that
-- held leases, which the engine then announces as freed (a reset frees their slots).
--
-- Invariant: afterwards the keys are indistinguishable from keys never seen.
CREATE OR REPLACE FUNCTION @reset@(p_limiter bytea, p_key bytea) RETURNS bytea[]
LANGUAGE plpgsql
AS @body@
DECLARE
    v_freed bytea[];
BEGIN
    WITH deleted AS (
        DELETE FROM @table@
         WHERE limiter = p_limiter AND (p_key IS NULL OR key = p_key)
        RETURNING key, cardinality(lease_id) > 0 AS had_leases
    )
    SELECT coalesce(array_agg(key), '{}') INTO v_freed FROM deleted WHERE had_leases;
    RETURN v_freed;
END;
@body@;

-- Deletes up to p_batch rows that have expired, oldest first, through the expiry
-- index. Rows locked by a decision in progress are skipped (SKIP LOCKED: the cleanup
-- never waits for, nor blocks, the hot path), and the expiry is checked again on the
-- row as locked, so a row renewed meanwhile stays.
CREATE OR REPLACE FUNCTION @cleanup@(p_batch integer) RETURNS integer
LANGUAGE plpgsql
AS @body@
DECLARE
    v_real    bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_deleted integer;
BEGIN
    DELETE FROM @table@
     WHERE ctid = ANY (ARRAY(
               SELECT ctid FROM @table@ WHERE expires_at < v_real
                ORDER BY expires_at LIMIT p_batch FOR UPDATE SKIP LOCKED))
       AND expires_at < v_real;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END;
@body@;

-- Marks the schema version, so an engine starting with `auto_create` skips all of
-- the above when the table is already up to date.
COMMENT ON TABLE @table@ IS @version@;

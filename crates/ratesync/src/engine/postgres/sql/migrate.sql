-- ratesync: the PostgreSQL schema of one store (SPEC §5 postgres).
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
-- decision time (the server's clock, SPEC §4.6). The math is a line-by-line port of
-- crate::algorithm (gcra.rs, sliding_window.rs, leases.rs) and of the Redis scripts,
-- checked against the Rust reference by tests/postgres_sql.rs. Decisions are returned
-- as bigint[5]:
--   {allowed (0/1), remaining, retry_after_us, reset_after_us,
--    denied_by (0 none, 1 rate, 2 concurrency)}.

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
    -- of log_n[i] units (WindowLog)
    log_at     bigint[]  NOT NULL DEFAULT '{}',
    log_n      bigint[]  NOT NULL DEFAULT '{}',
    -- concurrency leases: id and expiry, same index (LeaseSet)
    lease_id   bigint[]  NOT NULL DEFAULT '{}',
    lease_exp  bigint[]  NOT NULL DEFAULT '{}',
    expires_at bigint    NOT NULL,
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

-- The cleanup finds expired rows through this index, a small batch at a time: never
-- a scan of the whole table.
CREATE INDEX IF NOT EXISTS @expiry_index@ ON @table@ (expires_at);

-- Decides one attempt and, when p_consume, records it: rate and concurrency lease
-- taken together or not at all (SPEC §4.4).
--
-- Invariants:
-- - One statement, one row lock: the row is read FOR UPDATE (waiting, never NOWAIT,
--   so contention queues instead of failing) and written in the same transaction.
--   A key never seen gets its row by INSERT ... ON CONFLICT DO NOTHING and is read
--   again, so concurrent first attempts and a concurrent cleanup all converge on one
--   locked row.
-- - Token bucket: the TAT only moves on an admission, to max(TAT, now) + cost *
--   interval, and never beyond now + burst * interval.
-- - Sliding window: an attempt is admitted only when the units newer than
--   now - window plus its cost fit in `limit`; admissions are never recorded earlier
--   than the newest one (a clock that steps back cannot reorder the log).
-- - A refusal writes nothing; peek (p_consume = false) takes no lock and writes
--   nothing.
CREATE OR REPLACE FUNCTION @decide@(
    p_limiter   bytea,
    p_key       bytea,
    p_sliding   boolean,  -- false: token bucket (GCRA); true: sliding window
    p_param     bigint,   -- interval_us (token bucket) or window_us (sliding window)
    p_capacity  bigint,   -- burst or limit
    p_cost      bigint,
    p_max       bigint,   -- concurrency cap, 0 = none
    p_lease     bigint,   -- lease id to take when admitted, NULL = none
    p_lease_ttl bigint,
    p_consume   boolean,  -- false: peek
    p_now       bigint DEFAULT NULL  -- pinned clock: tests only
) RETURNS bigint[]
LANGUAGE plpgsql
AS @body@
DECLARE
    v_real     bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_now      bigint := coalesce(p_now, v_real);
    v_row      @table@%ROWTYPE;
    v_d        bigint[];
    v_with     boolean := p_consume AND p_max > 0 AND p_lease IS NOT NULL;
    v_live     integer := 0;
    v_earliest bigint;
    v_ids      bigint[] := '{}';
    v_exps     bigint[] := '{}';
    v_full     boolean;
    v_read     boolean;
    v_tat      bigint;
    v_horizon  bigint;
    v_new_tat  bigint;
    v_at       bigint[];
    v_n        bigint[];
    v_len      integer;
    v_first    integer := 1;
    v_total    bigint := 0;
    v_seen     bigint := 0;
    v_leaves   bigint;
    v_newest   bigint;
    v_idle     bigint;
BEGIN
    IF p_consume THEN
        LOOP
            SELECT * INTO v_row FROM @table@
             WHERE limiter = p_limiter AND key = p_key FOR UPDATE;
            EXIT WHEN FOUND;
            INSERT INTO @table@ (limiter, key, expires_at)
            VALUES (p_limiter, p_key, v_real) ON CONFLICT DO NOTHING;
        END LOOP;
    ELSE
        SELECT * INTO v_row FROM @table@ WHERE limiter = p_limiter AND key = p_key;
        IF NOT FOUND THEN
            v_row.tat := 0;
            v_row.log_at := '{}';
            v_row.log_n := '{}';
            v_row.lease_id := '{}';
            v_row.lease_exp := '{}';
        END IF;
    END IF;

    -- Live leases (LeaseSet::live): expired ones are ignored, and dropped when the
    -- row is written.
    FOR i IN 1 .. coalesce(array_length(v_row.lease_id, 1), 0) LOOP
        IF v_row.lease_exp[i] > v_now THEN
            v_live := v_live + 1;
            v_ids := v_ids || v_row.lease_id[i];
            v_exps := v_exps || v_row.lease_exp[i];
            v_earliest := least(v_earliest, v_row.lease_exp[i]);
        END IF;
    END LOOP;
    -- A full cap refuses whatever the rate says (algorithm::decide / peek); the rate
    -- part of that refusal is a peek.
    v_full := p_max > 0 AND (v_with OR NOT p_consume) AND v_live >= p_max;
    v_read := NOT p_consume OR v_full;

    IF NOT p_sliding THEN
        -- TokenBucket::decide / peek
        v_tat := greatest(v_row.tat, v_now);
        v_horizon := v_now + p_param * p_capacity;
        v_new_tat := v_tat + p_cost * p_param;
        IF v_new_tat <= v_horizon THEN
            IF v_read THEN
                v_d := ARRAY[1, (v_horizon - v_tat) / p_param, 0, v_tat - v_now, 0];
            ELSE
                v_d := ARRAY[1, (v_horizon - v_new_tat) / p_param, 0, v_new_tat - v_now, 0];
                v_row.tat := v_new_tat;
            END IF;
        ELSE
            v_d := ARRAY[0, greatest(v_horizon - v_tat, 0) / p_param,
                         v_new_tat - v_horizon, v_tat - v_now, 1];
        END IF;
    ELSE
        -- SlidingWindow::decide / peek: drop the runs that have left the window.
        v_len := coalesce(array_length(v_row.log_at, 1), 0);
        WHILE v_first <= v_len AND v_row.log_at[v_first] + p_param <= v_now LOOP
            v_first := v_first + 1;
        END LOOP;
        v_at := coalesce(v_row.log_at[v_first:v_len], '{}');
        v_n := coalesce(v_row.log_n[v_first:v_len], '{}');
        v_len := v_len - v_first + 1;
        FOR i IN 1 .. v_len LOOP
            v_total := v_total + v_n[i];
        END LOOP;
        IF v_total + p_cost <= p_capacity THEN
            IF NOT v_read THEN
                -- WindowLog::push: equal (or earlier) times merge into the newest run.
                IF v_len > 0 AND v_at[v_len] >= v_now THEN
                    v_n[v_len] := v_n[v_len] + p_cost;
                ELSE
                    v_at := v_at || v_now;
                    v_n := v_n || p_cost;
                    v_len := v_len + 1;
                END IF;
                v_total := v_total + p_cost;
                v_row.log_at := v_at;
                v_row.log_n := v_n;
                v_d := ARRAY[1, p_capacity - v_total, 0,
                             greatest(v_at[v_len] + p_param - v_now, 0), 0];
            ELSIF v_len > 0 THEN
                v_d := ARRAY[1, p_capacity - v_total, 0,
                             greatest(v_at[v_len] + p_param - v_now, 0), 0];
            ELSE
                v_d := ARRAY[1, p_capacity - v_total, 0, 0, 0];
            END IF;
        ELSE
            -- SlidingWindow::refusal: wait until enough of the oldest units have left.
            FOR i IN 1 .. v_len LOOP
                v_seen := v_seen + v_n[i];
                IF v_seen >= v_total + p_cost - p_capacity THEN
                    v_leaves := v_at[i];
                    EXIT;
                END IF;
            END LOOP;
            v_newest := CASE WHEN v_len > 0 THEN v_at[v_len] ELSE v_now END;
            v_leaves := coalesce(v_leaves, CASE WHEN v_len > 0 THEN v_at[v_len] ELSE 0 END)
                        + p_param;
            v_d := ARRAY[0, greatest(p_capacity - v_total, 0), greatest(v_leaves - v_now, 0),
                         greatest(v_newest + p_param - v_now, 0), 1];
        END IF;
    END IF;

    IF v_full THEN
        -- A concurrency refusal waits for the rate and for the earliest lease to
        -- expire (a release wakes waiters sooner).
        v_d[1] := 0;
        v_d[3] := greatest(v_d[3], v_earliest - v_now);
        v_d[5] := 2;
        RETURN v_d;
    END IF;
    IF v_read OR v_d[1] = 0 THEN
        RETURN v_d;
    END IF;

    IF v_with THEN
        v_ids := v_ids || p_lease;
        v_exps := v_exps || (v_now + p_lease_ttl);
    END IF;
    -- KeyState::idle_at: the latest of the TAT, the newest admission leaving the
    -- window and the last lease expiry; kept on the real clock, rounded up to the
    -- next whole second so that the indexed column of a busy key rarely changes.
    v_idle := v_row.tat;
    IF p_sliding THEN
        v_idle := greatest(v_idle, v_row.log_at[array_length(v_row.log_at, 1)] + p_param);
    END IF;
    -- A loop, not `SELECT max(e) FROM unnest(...)`: a query inside the function costs
    -- a trip through the executor on every admission (about 10% of the decision).
    FOR i IN 1 .. coalesce(array_length(v_exps, 1), 0) LOOP
        v_idle := greatest(v_idle, v_exps[i]);
    END LOOP;
    UPDATE @table@
       SET tat = v_row.tat, log_at = v_row.log_at, log_n = v_row.log_n,
           lease_id = v_ids, lease_exp = v_exps,
           expires_at = greatest(expires_at,
                                 ((v_real + (v_idle - v_now)) / 1000000 + 1) * 1000000)
     WHERE limiter = p_limiter AND key = p_key;
    RETURN v_d;
END;
@body@;

-- Extends a live lease to now + ttl.
--
-- Invariant: a lease that has expired (or was released) is not brought back, since
-- its slot may already be someone else's: the answer is false and nothing is written.
CREATE OR REPLACE FUNCTION @renew@(
    p_limiter bytea, p_key bytea, p_lease bigint, p_lease_ttl bigint,
    p_now bigint DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql
AS @body@
DECLARE
    v_real bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_now  bigint := coalesce(p_now, v_real);
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
-- changes nothing and notifies nobody. The notification is sent at commit, so a woken
-- waiter finds the slot free. Its payload is `<origin>:<limiter hex>:<key hex>`; keys
-- too long for NOTIFY's 8000-byte payload are not announced (waiters then find the
-- slot by the core's bounded fallback poll).
CREATE OR REPLACE FUNCTION @release@(
    p_limiter bytea, p_key bytea, p_lease bigint, p_channel text, p_origin text
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
    IF octet_length(p_limiter) + octet_length(p_key) < 3900 THEN
        PERFORM pg_notify(p_channel, p_origin || ':' || encode(p_limiter, 'hex') || ':'
                                     || encode(p_key, 'hex'));
    END IF;
    RETURN true;
END;
@body@;

-- Forgets one key of a limiter, or (p_key NULL) all of them.
--
-- Invariant: afterwards the keys are indistinguishable from keys never seen. Dropped
-- leases free their slots, so waiters are told as for a release (origin '-': every
-- process acts on it, this one included).
CREATE OR REPLACE FUNCTION @reset@(
    p_limiter bytea, p_key bytea, p_channel text
) RETURNS integer
LANGUAGE plpgsql
AS @body@
DECLARE
    v_key     bytea;
    v_deleted integer := 0;
BEGIN
    FOR v_key IN
        DELETE FROM @table@
         WHERE limiter = p_limiter AND (p_key IS NULL OR key = p_key)
        RETURNING CASE WHEN cardinality(lease_id) > 0 THEN key END
    LOOP
        v_deleted := v_deleted + 1;
        IF v_key IS NOT NULL AND octet_length(p_limiter) + octet_length(v_key) < 3900 THEN
            PERFORM pg_notify(p_channel, '-:' || encode(p_limiter, 'hex') || ':'
                                         || encode(v_key, 'hex'));
        END IF;
    END LOOP;
    RETURN v_deleted;
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

#!/usr/bin/env bash
# PostgreSQL engine throughput beside its anchor, against the same PostgreSQL in one run
# (targets and past figures: docs/benchmarks.md):
#
#   1. `ratesync bench`: one process, 1 task and 64 tasks, one key, a rate far above
#      reach (so the figure is the cost of one decision), --mode try.
#   2. The Python library rate-sync 0.4.2 (benchmarks/bench_rate_sync.py), 1 task,
#      and 8 tasks (where it is known to fail with LockNotAvailableError).
#   3. pgbench -M prepared -c 8 of a one-row `UPDATE ... RETURNING` on 1 key and on
#      64 keys, with synchronous_commit = off as ratesync's sessions have it: one
#      transaction per decision, the ceiling of deciding one call at a time.
#
# Targets: ratesync at 64 tasks >= 10x rate-sync at 1 task, with zero errors; and
# >= 2x the pgbench transactions on 1 key and on 64 keys.
# When the server has track_functions = 'pl', each ratesync run also prints how many
# decisions a call of the acquire function (one transaction) made, and the server
# time spent in it (pg_stat_user_functions).
# Needs PostgreSQL at postgresql://root@127.0.0.1:5432/test (where bench_rate_sync.py
# connects) and python3. Installs rate-sync into target/anchor-venv on first use.
# Usage: benchmarks/postgres.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
pg_url=postgresql://root@127.0.0.1:5432/test

cargo build --release -q -p ratesync-cli
source benchmarks/anchor-venv.sh

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
cat > "$workdir/rate-sync.toml" <<TOML
[stores.pg]
engine = "postgres"
url = "$pg_url"
table_name = "ratesync_bench"
auto_create = true

[limiters.api]
store = "pg"
rate_per_second = 1e9
burst = 1000000
TOML

# Calls of the acquire function and the server time spent in it so far, from
# pg_stat_user_functions (zeros unless the server has track_functions = 'pl').
function_stats() {
  psql -qAt "$pg_url" -c "SELECT coalesce(sum(calls), 0) || ' ' || coalesce(sum(self_time), 0)
    FROM pg_stat_user_functions WHERE funcname = 'ratesync_bench_acquire'"
}
bench() {
  local before after
  before=$(function_stats 2>/dev/null || echo "0 0")
  target/release/ratesync bench --config "$workdir/rate-sync.toml" --limiter api \
    --tasks "$1" --duration "$seconds" --mode try --json "${@:2}"
  # A backend reports its statistics as it exits, just after the bench's end.
  sleep 1
  after=$(function_stats 2>/dev/null || echo "0 0")
  echo "$before $after" >> "$workdir/function_stats"
}
echo "== ratesync bench, 1 process, 1 task, ${seconds}s"
ours_one=$(bench 1)
echo "$ours_one"
echo "== ratesync bench, 1 process, 64 tasks, ${seconds}s"
ours_64=$(bench 64)
echo "$ours_64"
echo "== ratesync bench, 1 process, 64 tasks on 64 keys, ${seconds}s"
ours_64_keys=$(bench 64 --keys 64)
echo "$ours_64_keys"

# The pgbench anchor: its own table of 64 one-row keys, dropped at the end.
psql -q "$pg_url" -c "DROP TABLE IF EXISTS ratesync_pgbench_anchor;
  CREATE TABLE ratesync_pgbench_anchor (k int PRIMARY KEY, v bigint NOT NULL);
  INSERT INTO ratesync_pgbench_anchor SELECT k, 0 FROM generate_series(1, 64) k;"
cat > "$workdir/anchor.sql" <<'SQL'
\set k random(1, :keys)
UPDATE ratesync_pgbench_anchor SET v = v + 1 WHERE k = :k RETURNING v;
SQL
pgbench_tps() {
  PGOPTIONS='-c synchronous_commit=off' pgbench -n -M prepared -c 8 -j 2 -T "$seconds" \
    -D keys="$1" -f "$workdir/anchor.sql" "$pg_url" | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
echo "== pgbench -M prepared -c 8, one-row UPDATE ... RETURNING, 1 key, ${seconds}s"
pgbench_one=$(pgbench_tps 1)
echo "$pgbench_one tps"
echo "== the same on 64 keys"
pgbench_64=$(pgbench_tps 64)
echo "$pgbench_64 tps"
psql -q "$pg_url" -c "DROP TABLE ratesync_pgbench_anchor"

echo "== rate-sync 0.4.2 (Python), 1 task"
anchor_one=$(target/anchor-venv/bin/python benchmarks/bench_rate_sync.py postgres 5000 1 2>&1 | tail -1)
echo "$anchor_one"
echo "== rate-sync 0.4.2 (Python), 8 tasks"
anchor_eight=$(target/anchor-venv/bin/python benchmarks/bench_rate_sync.py postgres 8000 8 2>&1 | tail -1 || true)
echo "$anchor_eight"

python3 - "$ours_one" "$ours_64" "$anchor_one" "$anchor_eight" "$ours_64_keys" \
  "$pgbench_one" "$pgbench_64" "$workdir/function_stats" <<'PY'
import json, re, sys
one, many = json.loads(sys.argv[1]), json.loads(sys.argv[2])
many_keys = json.loads(sys.argv[5])
pgbench_one, pgbench_64 = float(sys.argv[6]), float(sys.argv[7])
anchor = float(re.search(r"ops/s=(\d+)", sys.argv[3]).group(1))
eight = re.search(r"ops/s=(\d+)", sys.argv[4])
stats = [[float(x) for x in line.split()] for line in open(sys.argv[8])]
print()
runs = (("1 task", one), ("64 tasks", many), ("64 tasks, 64 keys", many_keys))
for (name, run), (calls0, ms0, calls1, ms1) in zip(runs, stats):
    lat = run["latency_us"]
    print(f"ratesync {name}: {run['ops_per_s']:,.0f} acquires/s, errors {run['errors']}, "
          f"p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, max {lat['max']:.0f} us")
    calls, decisions = calls1 - calls0, run["admitted"] + run["denied"]
    if calls > 0:
        # Each call of the acquire function is one transaction deciding a batch.
        print(f"  acquire function: {decisions / calls:.1f} decisions per call, "
              f"{(ms1 - ms0) * 1000 / calls:.0f} us of server time per call, "
              f"{(ms1 - ms0) * 1000 / decisions:.1f} us per decision")
print(f"rate-sync 1 task: {anchor:,.0f} acquires/s")
print("rate-sync 8 tasks: " + (f"{float(eight.group(1)):,.0f} acquires/s" if eight
      else "failed: " + sys.argv[4][-160:]))
print(f"ratesync 64 tasks vs rate-sync 1 task: {many['ops_per_s'] / anchor:.1f}x (target >= 10x)")
print(f"ratesync 1 task vs rate-sync 1 task: {one['ops_per_s'] / anchor:.1f}x")
print(f"pgbench 1 key: {pgbench_one:,.0f} tps; 64 keys: {pgbench_64:,.0f} tps")
print(f"ratesync 64 tasks vs pgbench, 1 key: {many['ops_per_s'] / pgbench_one:.2f}x (target >= 2x)")
print(f"ratesync 64 tasks vs pgbench, 64 keys: {many_keys['ops_per_s'] / pgbench_64:.2f}x (target >= 2x)")
PY

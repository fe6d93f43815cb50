#!/usr/bin/env bash
# PostgreSQL engine throughput beside its anchor, against the same PostgreSQL in one run
# (targets and past figures: docs/benchmarks.md):
#
#   1. `ratesync bench`: one process, 1 task and 64 tasks, one key, a rate far above
#      reach (so the figure is the cost of one decision), --mode try.
#   2. The Python library rate-sync 0.4.2 (benchmarks/bench_rate_sync.py), 1 task,
#      and 8 tasks (where it is known to fail with LockNotAvailableError).
#
# Target: ratesync at 64 tasks >= 10x rate-sync at 1 task, with zero errors.
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

bench() {
  target/release/ratesync bench --config "$workdir/rate-sync.toml" --limiter api \
    --tasks "$1" --duration "$seconds" --mode try --json
}
echo "== ratesync bench, 1 process, 1 task, ${seconds}s"
ours_one=$(bench 1)
echo "$ours_one"
echo "== ratesync bench, 1 process, 64 tasks, ${seconds}s"
ours_64=$(bench 64)
echo "$ours_64"

echo "== rate-sync 0.4.2 (Python), 1 task"
anchor_one=$(target/anchor-venv/bin/python benchmarks/bench_rate_sync.py postgres 5000 1 2>&1 | tail -1)
echo "$anchor_one"
echo "== rate-sync 0.4.2 (Python), 8 tasks"
anchor_eight=$(target/anchor-venv/bin/python benchmarks/bench_rate_sync.py postgres 8000 8 2>&1 | tail -1 || true)
echo "$anchor_eight"

python3 - "$ours_one" "$ours_64" "$anchor_one" "$anchor_eight" <<'PY'
import json, re, sys
one, many = json.loads(sys.argv[1]), json.loads(sys.argv[2])
anchor = float(re.search(r"ops/s=(\d+)", sys.argv[3]).group(1))
eight = re.search(r"ops/s=(\d+)", sys.argv[4])
print()
for name, run in (("1 task", one), ("64 tasks", many)):
    lat = run["latency_us"]
    print(f"ratesync {name}: {run['ops_per_s']:,.0f} acquires/s, errors {run['errors']}, "
          f"p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, max {lat['max']:.0f} us")
print(f"rate-sync 1 task: {anchor:,.0f} acquires/s")
print("rate-sync 8 tasks: " + (f"{float(eight.group(1)):,.0f} acquires/s" if eight
      else "failed: " + sys.argv[4][-160:]))
print(f"ratesync 64 tasks vs rate-sync 1 task: {many['ops_per_s'] / anchor:.1f}x (target >= 10x)")
print(f"ratesync 1 task vs rate-sync 1 task: {one['ops_per_s'] / anchor:.1f}x")
PY

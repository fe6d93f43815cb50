#!/usr/bin/env bash
# Windows and quotas at any scale, per store, all in one run against the same server
# (targets and past figures: docs/benchmarks.md, "Windows"):
#
#   1. `ratesync bench`, one process, 64 tasks on one key, every call admitted (a
#      limit far above reach), mode try: the token bucket (the anchor), the sliding
#      window and the fixed window, one after the other. Redis with --cost 1000 (the
#      sliding window once kept one entry per unit), PostgreSQL and NATS with cost 1.
#      Target: sliding window >= 0.8x the token bucket's decisions/s.
#   2. Steadiness: the sliding window on the same key for 6 runs of STEADY/6 seconds
#      in a row, its log full from the first second: decisions/s per run must not
#      fall as admissions pile up (Redis with --cost 100, so that a minute of
#      admissions stays below the limit).
#   3. Redis only: the largest key's memory (MEMORY USAGE) after all of it.
#      Target: <= 16 KB.
#
# Redis and NATS run on servers this script starts on free ports (redis-server, and
# the pinned nats-server of scripts/install-nats-server.sh or $RATESYNC_NATS_SERVER);
# PostgreSQL is the one at 127.0.0.1:5432, database `test` (trust auth), in a table
# of its own (ratesync_windows), emptied before the run.
#
# Usage: benchmarks/windows.sh [redis|postgres|nats|all] [SECONDS] [STEADY_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
seconds=${2:-8}
steady=${3:-60}

cargo build --release -q -p ratesync-cli
workdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Writes the configuration of store $1 (its TOML table body in $2) with the three
# limiters: window $3 seconds.
write_config() {
  cat > "$workdir/$1.toml" <<TOML
[stores.$1]
$2

[limiters.tb]
store = "$1"
rate_per_second = 1e9
burst = 1000000000
fail_closed = true

[limiters.sw]
store = "$1"
algorithm = "sliding_window"
limit = 1000000000
window_seconds = $3
fail_closed = true

[limiters.fw]
store = "$1"
algorithm = "fixed_window"
limit = 1000000000
window_seconds = $3
fail_closed = true
TOML
}

bench() { # store limiter seconds cost
  target/release/ratesync bench --config "$workdir/$1.toml" --limiter "$2" \
    --tasks 64 --keys 1 --duration "$3" --mode try --cost "$4" --json
}

report() { # store cost steady_cost
  local store=$1 cost=$2 steady_cost=$3
  echo "== $store: 64 tasks on 1 key, ${seconds}s each, cost $cost"
  local tb sw fw
  tb=$(bench "$store" tb "$seconds" "$cost")
  sw=$(bench "$store" sw "$seconds" "$cost")
  fw=$(bench "$store" fw "$seconds" "$cost")
  echo "== $store: sliding window, 6 runs of $((steady / 6))s in a row, cost $steady_cost"
  local runs=()
  for _ in 1 2 3 4 5 6; do
    runs+=("$(bench "$store" sw "$((steady / 6))" "$steady_cost")")
  done
  python3 - "$store" "$tb" "$sw" "$fw" "${runs[@]}" <<'PY'
import json, sys
store, tb, sw, fw, *runs = sys.argv[1], *(json.loads(a) for a in sys.argv[2:])
def line(name, r):
    return (f"  {name:<15} {r['ops_per_s']:>9.0f} decisions/s  ({r['ops_per_s'] / tb['ops_per_s']:.2f}x token bucket)"
            f"  p50 {r['latency_us']['p50']} us  p99 {r['latency_us']['p99']} us"
            f"  admitted {r['admitted']}  denied {r['denied']}  errors {r['errors']}")
print(line("token bucket", tb))
print(line("sliding window", sw) + ("   target >= 0.8x" ))
print(line("fixed window", fw))
rates = [r['ops_per_s'] for r in runs]
print(f"  sliding window, runs in a row: {' '.join(f'{x:.0f}' for x in rates)} decisions/s;"
      f" last/first {rates[-1] / rates[0]:.2f}, min/max {min(rates) / max(rates):.2f};"
      f" errors {sum(r['errors'] for r in runs)}")
PY
}

if [[ $which == redis || $which == all ]]; then
  port=$(free_port)
  redis-server --port "$port" --save '' --appendonly no --daemonize no >"$workdir/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-server --version
  write_config redis "engine = \"redis\"
url = \"redis://127.0.0.1:$port/0\"" 60
  report redis 1000 100
  largest=0
  while read -r key; do
    [[ -z $key ]] && continue
    size=$(redis-cli -p "$port" memory usage "$key")
    ((size > largest)) && largest=$size
  done < <(redis-cli -p "$port" --scan)
  echo "  largest key after all runs: $largest bytes (target <= 16384)"
fi

if [[ $which == postgres || $which == all ]]; then
  # A table of its own, emptied first so that every run starts from fresh keys.
  table=ratesync_windows
  write_config postgres "engine = \"postgres\"
url = \"postgresql://root@127.0.0.1:5432/test\"
table_name = \"$table\"
auto_create = true" 3600
  psql -h 127.0.0.1 -U root -d test -tAc "select version()"
  psql -h 127.0.0.1 -U root -d test -qc "delete from $table" 2>/dev/null || true
  report postgres 1 1
fi

if [[ $which == nats || $which == all ]]; then
  server=${RATESYNC_NATS_SERVER:-$(scripts/install-nats-server.sh)}
  port=$(free_port)
  "$server" -a 127.0.0.1 -p "$port" -js -sd "$workdir/nats-store" >"$workdir/nats.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do grep -q "Server is ready" "$workdir/nats.log" && break; sleep 0.1; done
  "$server" --version
  write_config nats "engine = \"nats\"
url = \"nats://127.0.0.1:$port\"
bucket_name = \"ratesync_windows\"
auto_create = true" 3600
  report nats 1 1
fi

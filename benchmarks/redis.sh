#!/usr/bin/env bash
# Redis engine throughput beside its anchors, all against the same Redis in one run
# (targets and past figures: docs/benchmarks.md):
#
#   1. redis-benchmark -c 64, one decision per round trip: the anchor, a GCRA-sized
#      script (benchmarks/gcra_anchor.lua: TIME, GET, SET PX) as EVAL; and ratesync's
#      own acquire script (lib.lua + acquire.lua, the exact text the engine runs, one
#      token-bucket call) as EVALSHA, as the engine runs it, unpipelined and with
#      -P 16 (the server's ceiling for that script).
#   2. `ratesync bench`: one process, 64 tasks on one key and on 10 000 keys, a rate
#      far above reach, with the server's CPU time and script time per decision
#      (/proc and INFO commandstats: run it on the server's machine).
#   3. The Python library rate-sync 0.4.2 (benchmarks/bench_rate_sync.py), 64 tasks
#      and 1 task.
#
# Needs Redis at 127.0.0.1:6379 (where bench_rate_sync.py connects), redis-benchmark,
# python3. Installs rate-sync into target/anchor-venv on first use.
# Usage: benchmarks/redis.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
redis_url=redis://127.0.0.1:6379/0
scripts=crates/ratesync/src/engine/redis/scripts

redis-cli -p 6379 ping >/dev/null || { echo "no Redis at 127.0.0.1:6379" >&2; exit 1; }
cargo build --release -q -p ratesync-cli
source benchmarks/anchor-venv.sh

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
cat > "$workdir/rate-sync.toml" <<TOML
[stores.redis]
engine = "redis"
url = "$redis_url"
key_prefix = "ratesync_bench"

[limiters.api]
store = "redis"
rate_per_second = 1e9
burst = 1000000
TOML

anchor_script=$(cat benchmarks/gcra_anchor.lua)
anchor_args=(1 '{bench:gcra}' 1 1000000)
script=$(cat "$scripts/lib.lua"; echo; echo "bind()"; cat "$scripts/acquire.lua")
# KEYS: rate state (no leases key: the limiter caps no concurrency). ARGV: 1 profile
# (kind, interval_us, burst, runs, align_us, max_concurrent, lease ttl), 1 run of 1 call
# of 1 member: profile 1, cost 1, no lease (acquire.lua).
ours_args=(1 '{bench:api:}:tb' 1 tb 1 1000000 0 0 0 0 1 1 1 1 1 '')
sha=$(redis-cli -p 6379 script load "$script")
per_second() {
  tr '\r' '\n' | awk '/requests per second/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) v = $i} END {print v}'
}
echo "== redis-benchmark, 64 clients: the GCRA-sized anchor, and ratesync's acquire script"
eval_plain=$(redis-benchmark -p 6379 -c 64 -n 200000 -q eval "$anchor_script" "${anchor_args[@]}" | per_second)
evalsha_plain=$(redis-benchmark -p 6379 -c 64 -n 200000 -q evalsha "$sha" "${ours_args[@]}" | per_second)
evalsha_piped=$(redis-benchmark -p 6379 -c 64 -P 16 -n 200000 -q evalsha "$sha" "${ours_args[@]}" | per_second)
echo "anchor EVAL: $eval_plain/s   ours EVALSHA: $evalsha_plain/s   ours EVALSHA -P 16: $evalsha_piped/s"

# The server's CPU time (user + system, from /proc: the server runs on this machine)
# and its script time (INFO commandstats), per decision of one ratesync run.
server_pid=$(redis-cli -p 6379 info server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')
server_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
ours() {
  redis-cli -p 6379 config resetstat >/dev/null
  local before json
  before=$(server_ticks)
  json=$(target/release/ratesync bench --config "$workdir/rate-sync.toml" --limiter api \
    --tasks 64 --duration "$seconds" --mode try --json "$@")
  python3 - "$json" "$(( $(server_ticks) - before ))" "$(getconf CLK_TCK)" \
    "$(redis-cli -p 6379 info commandstats | tr -d '\r' | grep -E '^cmdstat_(fcall|evalsha):')" <<'PY'
import json, re, sys
run, ticks, hz = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
decisions = max(1, run["admitted"] + run["denied"] + run["errors"])
calls = sum(int(c) for c in re.findall(r"calls=(\d+)", sys.argv[4]))
usec = sum(int(u) for u in re.findall(r"usec=(\d+)", sys.argv[4]))
run["server_cpu_us_per_decision"] = round(ticks / hz * 1e6 / decisions, 2)
run["script_us_per_decision"] = round(usec / decisions, 2)
run["decisions_per_script_call"] = round(decisions / max(1, calls), 1)
print(json.dumps(run))
PY
}
echo "== ratesync bench, 1 process, 64 tasks, ${seconds}s"
ours_json=$(ours)
echo "$ours_json"
echo "== ratesync bench, 1 process, 64 tasks on 10 000 keys, ${seconds}s"
ours_keys_json=$(ours --keys 10000)
echo "$ours_keys_json"

echo "== rate-sync 0.4.2 (Python), 64 tasks"
anchor=$(target/anchor-venv/bin/python benchmarks/bench_rate_sync.py redis 40000 64)
echo "$anchor"
echo "== rate-sync 0.4.2 (Python), 1 task"
anchor_one=$(target/anchor-venv/bin/python benchmarks/bench_rate_sync.py redis 10000 1)
echo "$anchor_one"

python3 - "$ours_json" "$eval_plain" "$evalsha_plain" "$evalsha_piped" "$anchor" "$ours_keys_json" <<'PY'
import json, re, sys
ours = json.loads(sys.argv[1])
keys = json.loads(sys.argv[6])
plain, sha, piped = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
anchor = float(re.search(r"ops/s=(\d+)", sys.argv[5]).group(1))
ops = ours["ops_per_s"]
lat = ours["latency_us"]
print()
print(f"ratesync: {ops:,.0f} acquires/s, errors {ours['errors']}, "
      f"p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, max {lat['max']:.0f} us")
for name, run in (("1 key", ours), ("10 000 keys", keys)):
    print(f"  {name}: server CPU {run['server_cpu_us_per_decision']} us per decision "
          f"(script {run['script_us_per_decision']} us), "
          f"{run['decisions_per_script_call']} decisions per script call")
print(f"vs redis-benchmark EVAL of the GCRA-sized anchor {plain:,.0f}/s: {ops / plain:.2f}x (target >= 3x)")
print(f"vs redis-benchmark EVALSHA of our script       {sha:,.0f}/s: {ops / sha:.2f}x")
print(f"vs redis-benchmark EVALSHA -P 16 of our script {piped:,.0f}/s: {ops / piped:.2f}x (the server's ceiling)")
print(f"vs rate-sync (Python) {anchor:,.0f}/s: {ops / anchor:.1f}x (target >= 8x)")
kops, klat = keys["ops_per_s"], keys["latency_us"]
print(f"ratesync on 10 000 keys: {kops:,.0f} acquires/s, errors {keys['errors']}, "
      f"p99 {klat['p99']:.0f} us; vs the EVAL anchor: {kops / plain:.2f}x (target >= 3x)")
PY

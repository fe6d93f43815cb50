#!/usr/bin/env bash
# NATS engine throughput beside its anchor, all against one nats-server -js that
# this script starts on a free port with a store in a temporary directory
# (target: acquires/s at 64 tasks over 100 keys ≥ 0.7x raw KV write throughput; past
# figures in docs/benchmarks.md):
#
#   1. raw KV update throughput of the same server: async-nats alone, 64 tasks over
#      100 keys, every write a compare-and-set on the key's revision (the anchor;
#      example nats_kv_bench, mode update), and plain puts (mode raw) beside it;
#   2. `ratesync bench`, one process, 64 tasks, over 100 keys and over 1 key, a rate
#      far above reach (every call admitted, so every call writes); and the engine
#      over 100 keys drawn at random (example nats_kv_bench, mode keys): the bench
#      walks keys round-robin, which lines tasks up behind each other on a key;
#   3. one hot key from 4 clients × 16 tasks: decisions/s and compare-and-set
#      conflicts (retries) per decision (example nats_kv_bench, mode hot).
#
# The server is the pinned one of scripts/install-nats-server.sh (or
# $RATESYNC_NATS_SERVER). Usage: benchmarks/nats.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}

server=${RATESYNC_NATS_SERVER:-$(scripts/install-nats-server.sh)}
cargo build --release -q -p ratesync-cli
cargo build --release -q -p ratesync --features nats --example nats_kv_bench

workdir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$server" -a 127.0.0.1 -p "$port" -js -sd "$workdir/store" >"$workdir/nats.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; rm -rf "$workdir"' EXIT
for _ in $(seq 50); do
  grep -q "Server is ready" "$workdir/nats.log" && break
  sleep 0.1
done
url="nats://127.0.0.1:$port"
"$server" --version

cat > "$workdir/rate-sync.toml" <<TOML
[stores.nats]
engine = "nats"
url = "$url"
bucket_name = "ratesync_bench"
auto_create = true

[limiters.api]
store = "nats"
rate_per_second = 1e9
burst = 1000000
# A store error must count as an error, not as a (fail-open) admission.
fail_closed = true
TOML

echo "== raw KV updates (async-nats update on the revision), 64 tasks over 100 keys, ${seconds}s"
update_json=$(target/release/examples/nats_kv_bench "$url" update "$seconds")
echo "$update_json"

echo "== raw KV puts (async-nats put), 64 tasks over 100 keys, ${seconds}s"
raw_json=$(target/release/examples/nats_kv_bench "$url" raw "$seconds")
echo "$raw_json"

echo "== ratesync bench, 1 process, 64 tasks over 100 keys, ${seconds}s"
keys100_json=$(target/release/ratesync bench --config "$workdir/rate-sync.toml" --limiter api \
  --tasks 64 --keys 100 --duration "$seconds" --mode try --json)
echo "$keys100_json"

echo "== ratesync engine, 1 client, 64 tasks over 100 random keys, ${seconds}s"
random_json=$(target/release/examples/nats_kv_bench "$url" keys "$seconds")
echo "$random_json"

echo "== ratesync bench, 1 process, 64 tasks on 1 key, ${seconds}s"
keys1_json=$(target/release/ratesync bench --config "$workdir/rate-sync.toml" --limiter api \
  --tasks 64 --keys 1 --duration "$seconds" --mode try --json)
echo "$keys1_json"

echo "== one hot key, 4 clients × 16 tasks, ${seconds}s"
hot_json=$(target/release/examples/nats_kv_bench "$url" hot "$seconds")
echo "$hot_json"

python3 - "$update_json" "$raw_json" "$keys100_json" "$random_json" "$keys1_json" "$hot_json" <<'PY'
import json, sys
update, raw, k100, rnd, k1, hot = (json.loads(a) for a in sys.argv[1:])
print()
print(f"raw KV updates/s (CAS):          {update['writes_per_s']:>10.0f}")
print(f"raw KV puts/s:                   {raw['writes_per_s']:>10.0f}")
print(f"ratesync 100 keys acquires/s:    {k100['ops_per_s']:>10.0f}  ({k100['ops_per_s'] / update['writes_per_s']:.2f}x raw updates, target >= 0.7x;"
      f" {k100['ops_per_s'] / raw['writes_per_s']:.2f}x raw puts)"
      f"  p50 {k100['latency_us']['p50']} us  p99 {k100['latency_us']['p99']} us  errors {k100['errors']}")
print(f"ratesync 100 random keys:        {rnd['admitted_per_s']:>10.0f}  ({rnd['admitted_per_s'] / update['writes_per_s']:.2f}x raw updates)  errors {rnd['errors']}")
print(f"ratesync 1 key acquires/s:       {k1['ops_per_s']:>10.0f}  ({k1['ops_per_s'] / update['writes_per_s']:.2f}x raw updates)"
      f"  p50 {k1['latency_us']['p50']} us  p99 {k1['latency_us']['p99']} us  errors {k1['errors']}")
print(f"hot key, 4 clients: {hot['admitted_per_s']:.0f} acquires/s, "
      f"{hot['conflicts_per_decision']:.4f} CAS retries per decision, errors {hot['errors']}")
PY

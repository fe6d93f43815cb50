#!/usr/bin/env bash
# The HTTP layer's own cost (docs/design.md#http): one trivial axum handler served
# by benchmarks/http-bench (its own crate, so tower_governor stays out of the main
# build) with no limiter, with tower_governor 0.8 and with ratesync's layer on the
# memory engine, under `wrk -t1 -c64`, all in the same run.
#
#   1. Admitted, keyed by the peer IP (tower_governor's default `PeerIpKeyExtractor`,
#      ratesync's `ClientIp::peer()`; wrk's 64 connections share one key): every
#      request admitted (rate 1e9/s, burst 1e9). Variants: none, governor (no headers
#      on admitted responses, its default), ratesync (`RateLimit` and
#      `RateLimit-Policy` on, the default), ratesync-noheaders (`headers(false)`),
#      governor-headers (`use_headers()`: `x-ratelimit-limit/remaining`).
#   2. Admitted, one key for the whole route (`GlobalKeyExtractor`, `LimiterWide`):
#      governor-global, ratesync-global (headers on).
#   3. Refused, keyed by peer IP: 1 request/s, burst 1, so nearly every request gets
#      429: governor, ratesync.
#
# Each server is started fresh on a free port for each run; the variants alternate,
# ROUNDS times (default 3), and the median req/s of each is compared with
# tower_governor's of the same scenario. Targets: admitted with headers on >= 1.0x
# governor (without headers), refused >= 1.5x. The server's CPU time per request is
# printed too: it is steadier than req/s on a shared machine (run this on a quiet one:
# another build or test run moves req/s by more than the differences measured).
#
# Needs wrk (installed with apt-get when missing and run as root) and curl.
# Usage: benchmarks/http.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q wrk >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
  else
    echo "wrk is missing: install it (Debian/Ubuntu: sudo apt-get install wrk)" >&2
    exit 1
  fi
fi
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }

cargo build --release -q --manifest-path benchmarks/http-bench/Cargo.toml --target-dir target/http-bench
server_bin=target/http-bench/release/ratesync-http-bench

workdir=$(mktemp -d)
mkdir -p "$workdir/admitted" "$workdir/global" "$workdir/refused"
server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap 'stop_server; rm -rf "$workdir"' EXIT

# Starts `$server_bin $@` and sets $port from its first line.
start_server() {
  # A fresh file: the previous server's port must not be read before this one's.
  rm -f "$workdir/server.out"
  "$server_bin" "$@" >"$workdir/server.out" &
  server_pid=$!
  port=
  for _ in $(seq 100); do
    port=$(awk '/^listening/ {print $2}' "$workdir/server.out" 2>/dev/null)
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  echo "the server ($*) did not start" >&2
  exit 1
}

# One wrk run against a fresh server; appends "req/s non-2xx total" to
# $workdir/<name>.runs.
run() {
  local name=$1
  shift
  start_server "$@"
  local out
  out=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$port/")
  # The server's CPU time (user + system, in clock ticks), for its cost per request.
  local ticks
  ticks=$(awk '{print $14 + $15}' "/proc/$server_pid/stat" 2>/dev/null || echo 0)
  stop_server
  local rps total non2xx us
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
  us=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$total" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  echo "${rps} ${non2xx:-0} ${total} ${us}" >>"$workdir/$name.runs"
  printf '  %-28s %10s req/s  %6s us CPU/req  (non-2xx %s of %s)\n' "$name" "$rps" "$us" "${non2xx:-0}" "$total"
}

echo "== response headers"
for variant in none governor governor-headers ratesync ratesync-noheaders ratesync-global; do
  start_server "$variant"
  echo "-- $variant"
  curl -s -D - -o /dev/null "http://127.0.0.1:$port/" | grep -iv '^date:' | tr -d '\r' | sed '/^$/d'
  stop_server
done

admitted=(none governor ratesync ratesync-noheaders governor-headers)
global=(governor ratesync)
refused=(governor ratesync)
for round in $(seq "$rounds"); do
  echo "== round $round of $rounds: wrk -t1 -c64 -d${seconds}s"
  for variant in "${admitted[@]}"; do
    run "admitted/$variant" "$variant"
  done
  for variant in "${global[@]}"; do
    run "global/$variant" "$variant-global"
  done
  for variant in "${refused[@]}"; do
    run "refused/$variant" "$variant" refuse
  done
done

python3 - "$workdir" "${admitted[@]}" <<'PY'
import statistics, sys
workdir = sys.argv[1]
admitted, both = sys.argv[2:], ["governor", "ratesync"]

def runs(name):
    with open(f"{workdir}/{name}.runs") as f:
        return [tuple(float(x) for x in line.split()) for line in f]

def median(name):
    return statistics.median(r[0] for r in runs(name))

print()
print("median req/s, ratio to tower_governor of the same scenario, median server CPU time")
print("per request (user + system), and every run's req/s")
for scenario, variants in (("admitted", admitted), ("global", both), ("refused", both)):
    base = median(f"{scenario}/governor")
    for v in variants:
        name = f"{scenario}/{v}"
        rs = runs(name)
        share = sum(r[1] for r in rs) / max(1.0, sum(r[2] for r in rs))
        all_runs = ", ".join(f"{r[0]:,.0f}" for r in rs)
        cpu = statistics.median(r[3] for r in rs)
        print(f"  {name:28s} {median(name):>10,.0f}  {median(name) / base:5.2f}x  "
              f"{cpu:6.2f} us CPU/req  non-2xx {share:6.1%}  [{all_runs}]")
def ratio(scenario):
    return median(f"{scenario}/ratesync") / median(f"{scenario}/governor")

def paired(scenario):
    # Each round's ratesync run beside the governor run just before it: less moved by
    # a machine whose load changes from one round to the next.
    pairs = zip(runs(f"{scenario}/ratesync"), runs(f"{scenario}/governor"))
    return statistics.median(ours[0] / theirs[0] for ours, theirs in pairs)

print()
print("ratesync / tower_governor: ratio of the medians (median of the per-round ratios)")
print(f"admitted, headers on, per IP: {ratio('admitted'):.2f}x ({paired('admitted'):.2f}x)  target >= 1.0x")
print(f"admitted, headers on, global: {ratio('global'):.2f}x ({paired('global'):.2f}x)")
print(f"refused, per IP:              {ratio('refused'):.2f}x ({paired('refused'):.2f}x)  target >= 1.5x")
PY

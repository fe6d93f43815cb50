#!/usr/bin/env bash
# `await acquire("api")` from Python, 64 tasks: ratesync beside rate-sync 0.4.2, same
# machine, same configuration, one run. Needs Redis at 127.0.0.1:6379.
# Builds the package (release) into target/bench-venv and rate-sync into
# target/anchor-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/anchor-venv.sh
if [ ! -x target/bench-venv/bin/python ]; then
  python3 -m venv target/bench-venv
  target/bench-venv/bin/pip install -q maturin
fi
VIRTUAL_ENV="$PWD/target/bench-venv" PATH="$PWD/target/bench-venv/bin:$PATH" \
  target/bench-venv/bin/maturin develop -q --release
for engine in memory redis; do
  # Enough calls for several seconds a side (a short run is mostly noise).
  n=$([ "$engine" = memory ] && echo 400000 || echo 200000)
  ours=$(target/bench-venv/bin/python benchmarks/python_vs_rate_sync.py "$engine" "$n" 64)
  anchor=$(target/anchor-venv/bin/python benchmarks/bench_rate_sync.py "$engine" "$n" 64)
  echo "$ours"
  echo "$anchor"
  python3 -c "
import re, sys
o = float(re.search(r'ops/s=(\d+)', sys.argv[1]).group(1))
a = float(re.search(r'ops/s=(\d+)', sys.argv[2]).group(1))
print(f'{sys.argv[3]}: ratesync / rate-sync = {o / a:.1f}x')" "$ours" "$anchor" "$engine"
done

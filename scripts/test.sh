#!/usr/bin/env bash
# The whole test suite: every Rust crate (unit, integration, conformance, property
# and CLI tests, doc tests), then the Python package (built with maturin, pytest).
# The README's test command; CI runs it too.
# Tests run with every engine compiled in (`--all-features`); the Redis tests start
# their own servers and skip loudly when redis-server is not installed (under
# CI=true they fail instead). The memory-only build is checked too.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== memory-only build (no network engine)"
cargo check -p ratesync --no-default-features --lib --tests

if cargo nextest --version >/dev/null 2>&1; then
  # nextest runs each test in its own process, in parallel (settings in
  # .config/nextest.toml); it does not run doc tests.
  cargo nextest run --workspace --all-features --no-fail-fast
  cargo test --workspace --all-features --doc
else
  echo "cargo-nextest not found: falling back to cargo test (slower, same tests)" >&2
  cargo test --workspace --all-features --no-fail-fast
fi

echo "== Python package (python/tests)"
# A venv of its own under target/; the extension is built by maturin (debug build:
# fast to compile, fast enough for the tests).
venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade maturin pytest pytest-asyncio fastapi httpx uvicorn prometheus-client
VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" "$venv/bin/maturin" develop -q
# pytest's exit code 5 (no tests collected) is a failure here, like any non-zero code.
"$venv/bin/python" -m pytest python/tests -q

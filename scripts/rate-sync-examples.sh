#!/usr/bin/env bash
# Every example of rate-sync 0.4.2's README.md, docs/ and examples/ run on rate-sync
# itself and on ratesync, each in a fresh subprocess, and compared: the measure of
# "every example that runs on rate-sync runs the same on ratesync, but for the
# documented differences" (docs/migrating-from-rate-sync.md).
#
# The rules (what is a fragment, how a block runs, what is compared and how time is
# normalised) are in scripts/compliance/run_examples.py's docstring; the runner of
# one example is scripts/compliance/example_driver.py. Blocks whose difference is
# deliberate are listed, with the reason, in scripts/compliance/examples_expected.toml.
# The report, with every block's verdict and the outputs of every block that does
# not run the same, is written to target/examples/report.md.
#
# rate-sync's documentation is taken at the tag v0.4.2 from
#   - $RATE_SYNC_SOURCE: a checkout of rate-sync's repository or its git directory
#     (one that has the tag); or a directory of its files (used as it is); else
#   - a clone of $RATE_SYNC_GIT at the tag, kept in target/rate-sync-src.
# (The sdist of rate-sync 0.4.2 has README.md but neither docs/ nor examples/.)
#
# Two venvs under target/examples/, made with $PYTHON (default python3; rate-sync
# declares Python >= 3.12 and is installed with --ignore-requires-python, so on an
# older Python a failure may be the interpreter's): anchor-venv holds rate-sync==0.4.2,
# ratesync-venv this repository's package (maturin develop); both hold the same
# versions of FastAPI, httpx, redis, asyncpg and prometheus_client
# (python/requirements-test.txt). Both import `ratesync`: a migrating user changes
# the installed package, not the imports.
#
# Servers: Redis at $REDIS_URL (default redis://127.0.0.1:6379/0) and PostgreSQL at
# $POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test). Every run of a
# block gets its own Redis key prefix and PostgreSQL table, removed afterwards.
#
#   scripts/rate-sync-examples.sh                     all blocks
#   scripts/rate-sync-examples.sh --only fastapi      blocks whose id contains "fastapi"
#   scripts/rate-sync-examples.sh --list              classify only: ids, modes, fragments
#   scripts/rate-sync-examples.sh --timeout 30        seconds a run may last (default 15)
#
# Exit status: 0 when every block runs the same, is a fragment, fails on rate-sync
# only, fails on both in the same way, or differs as examples_expected.toml says; 1
# otherwise (the UNEXPECTED lines at the end name the blocks).
set -euo pipefail
source_dir=${RATE_SYNC_SOURCE:-}
if [ -n "$source_dir" ] && [ -d "$source_dir" ]; then
  source_dir=$(cd "$source_dir" && pwd)  # before the cd below
fi
cd "$(dirname "$0")/.."

tag=v0.4.2
python=${PYTHON:-python3}
work=target/examples

# --- rate-sync's documentation at the tag -------------------------------------------
if [ -z "$source_dir" ]; then
  source_dir=target/rate-sync-src
  if [ ! -d "$source_dir" ]; then
    git clone -q --depth 1 --branch "$tag" "${RATE_SYNC_GIT:-https://github.com/rate-sync/python}" "$source_dir"
  fi
fi
docs=$work/rate-sync-$tag
rm -rf "$docs"
mkdir -p "$docs"
# A git checkout or git directory of rate-sync's, with the tag: not merely a folder
# inside some other repository (this one).
if git_dir=$(git -C "$source_dir" rev-parse --git-dir 2>/dev/null) &&
  git_dir=$(cd "$source_dir" && cd "$git_dir" && pwd) &&
  git --git-dir="$git_dir" rev-parse --verify -q "$tag^{commit}" >/dev/null; then
  git --git-dir="$git_dir" archive "$tag" README.md docs examples src | tar -x -C "$docs"
elif [ -f "$source_dir/README.md" ] && [ -d "$source_dir/docs" ]; then
  cp -R "$source_dir/README.md" "$source_dir/docs" "$source_dir/examples" "$source_dir/src" "$docs/"
else
  echo "rate-sync-examples: $source_dir is neither a git checkout of rate-sync nor its files" >&2
  exit 2
fi

# --- The two venvs ----------------------------------------------------------------
anchor=$work/anchor-venv
ratesync=$work/ratesync-venv
if [ ! -x "$anchor/bin/python" ]; then
  "$python" -m venv "$anchor"
fi
"$anchor/bin/pip" install -q --ignore-requires-python rate-sync==0.4.2 \
  -r python/requirements-test.txt redis asyncpg
if [ ! -x "$ratesync/bin/python" ]; then
  "$python" -m venv "$ratesync"
fi
"$ratesync/bin/pip" install -q -r python/requirements-test.txt redis asyncpg
VIRTUAL_ENV="$PWD/$ratesync" PATH="$PWD/$ratesync/bin:$PATH" "$ratesync/bin/maturin" develop -q

# --- The run ----------------------------------------------------------------------
# The orchestrator runs in the anchor venv (it reads TOML: tomllib, or rate-sync's
# dependency tomli before Python 3.11).
"$anchor/bin/python" scripts/compliance/run_examples.py \
  --source "$docs" \
  --anchor-python "$PWD/$anchor/bin/python" \
  --ratesync-python "$PWD/$ratesync/bin/python" \
  --expected scripts/compliance/examples_expected.toml \
  --report "$work/report.md" \
  --redis-url "${REDIS_URL:-redis://127.0.0.1:6379/0}" \
  --postgres-url "${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}" \
  "$@"

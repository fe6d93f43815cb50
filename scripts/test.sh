#!/usr/bin/env bash
# The whole test suite: every Rust crate (unit, integration, conformance, property
# and CLI tests, doc tests). The README's test command; CI runs it too.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo nextest --version >/dev/null 2>&1; then
  # nextest runs each test in its own process, in parallel; it does not run doc tests.
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
else
  echo "cargo-nextest not found: falling back to cargo test (slower, same tests)" >&2
  cargo test --workspace --no-fail-fast
fi

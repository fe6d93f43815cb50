#!/usr/bin/env bash
# The Python library rate-sync 0.4.2, the anchor of the Redis, PostgreSQL and Python
# benchmarks, in target/anchor-venv (made on first use). Sourced by those scripts
# from the repository root.
if [ ! -x target/anchor-venv/bin/python ]; then
  python3 -m venv target/anchor-venv
  target/anchor-venv/bin/pip install -q --ignore-requires-python rate-sync==0.4.2 redis asyncpg
fi

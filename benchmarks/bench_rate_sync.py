"""The anchor of the Python, Redis and PostgreSQL benchmarks: `await acquire("api")`
throughput of the Python library rate-sync 0.4.2, the library ratesync replaces.

rate-sync's import name is also `ratesync`, so this runs in its own venv,
target/anchor-venv (benchmarks/anchor-venv.sh makes it):

    target/anchor-venv/bin/python benchmarks/bench_rate_sync.py ENGINE [N] [TASKS]

ENGINE is memory, redis (Redis at 127.0.0.1:6379, database 0) or postgres
(postgresql://root@127.0.0.1:5432/test, the table made on first use). One limiter
whose rate (1e9/s) is far above reach, so every call is admitted and the figure is
the cost of one decision; fail_closed, so a store error raises instead of being
counted as an admission. After one warm-up acquire (connections, table), N acquires
are shared out over TASKS asyncio tasks (default 20000 over 64). Prints one line,

    rate-sync engine=redis tasks=64 acquires=40000 secs=2.345 ops/s=17057

which benchmarks/redis.sh, postgres.sh and python.sh read (`ops/s=(\\d+)`); the
same shape as benchmarks/python_vs_rate_sync.py, which measures ratesync. A failure
(rate-sync under PostgreSQL with several tasks is known to raise
LockNotAvailableError) ends with one line on stderr naming the exception, and exit
status 1.
"""

import asyncio
import sys
import time

ENGINES = {
    "memory": {},
    "redis": {"url": "redis://127.0.0.1:6379/0", "pool_max_size": 64},
    "postgres": {"url": "postgresql://root@127.0.0.1:5432/test", "auto_create": True},
}


def parse_args(argv):
    if not 2 <= len(argv) <= 4 or argv[1] not in ENGINES:
        sys.exit(f"usage: {argv[0]} {'|'.join(ENGINES)} [N] [TASKS]")
    n = int(argv[2]) if len(argv) > 2 else 20000
    tasks = int(argv[3]) if len(argv) > 3 else 64
    if n < 1 or tasks < 1:
        sys.exit("N and TASKS must be at least 1")
    return argv[1], n, min(tasks, n)


async def run(engine, n, tasks):
    import ratesync  # rate-sync 0.4.2, from target/anchor-venv

    ratesync.configure_store("s", strategy=engine, **ENGINES[engine])
    ratesync.configure_limiter(
        "api", store_id="s", rate_per_second=1e9, timeout=30, fail_closed=True
    )
    await ratesync.acquire("api")  # warm-up: connects, creates the table

    async def worker(count):
        for _ in range(count):
            await ratesync.acquire("api")

    # N over TASKS: the first N % TASKS tasks do one acquire more than the others.
    share, extra = divmod(n, tasks)
    counts = [share + (1 if i < extra else 0) for i in range(tasks)]
    started = time.perf_counter()
    await asyncio.gather(*(worker(count) for count in counts))
    return time.perf_counter() - started


def main():
    engine, n, tasks = parse_args(sys.argv)
    try:
        secs = asyncio.run(run(engine, n, tasks))
    except Exception as error:  # one readable line for the calling script
        print(f"rate-sync engine={engine} tasks={tasks} failed: "
              f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"rate-sync engine={engine} tasks={tasks} acquires={n} "
          f"secs={secs:.3f} ops/s={n / secs:.0f}")


if __name__ == "__main__":
    main()

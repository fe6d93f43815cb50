"""`await ratesync.acquire("api")` throughput from Python beside rate-sync 0.4.2.

Same shape as benchmarks/bench_rate_sync.py, which measures rate-sync (64 tasks, a
rate far above reach, fail_closed), so the two figures are comparable; run both in
one go with benchmarks/python.sh.

Usage: python benchmarks/python_vs_rate_sync.py ENGINE [N] [TASKS]
ENGINE: memory | redis (Redis at 127.0.0.1:6379, as the anchor).
"""
import asyncio
import sys
import time

import ratesync


async def main() -> None:
    engine = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    tasks = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    kw = {}
    if engine == "redis":
        kw = {"url": "redis://127.0.0.1:6379/0", "key_prefix": "ratesync_pybench"}
    ratesync.configure_store("s", strategy=engine, **kw)
    ratesync.configure_limiter("api", store_id="s", rate_per_second=1e9, burst=1_000_000,
                               timeout=30, fail_closed=True)
    await ratesync.acquire("api")  # warm / connect
    per = n // tasks

    async def worker() -> None:
        for _ in range(per):
            await ratesync.acquire("api")

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(tasks)])
    dt = time.perf_counter() - t0
    print(f"ratesync engine={engine} tasks={tasks} acquires={per * tasks} "
          f"secs={dt:.3f} ops/s={per * tasks / dt:.0f}")


asyncio.run(main())

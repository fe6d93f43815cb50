"""The API on a Redis store (a redis-server of the tests' own, see conftest.py)."""

import asyncio
import multiprocessing

import pytest

import ratesync
from ratesync import RateLimiterAcquisitionError, RedisRateLimiter, sync


async def test_acquire_and_timeout(redis_store, name):
    ratesync.configure_limiter(name, redis_store, rate_per_second=0.001, burst=2, timeout=0)
    await ratesync.acquire(name)
    await ratesync.acquire(name)
    with pytest.raises(RateLimiterAcquisitionError) as refused:
        await ratesync.acquire(name)
    assert refused.value.retry_after is None or refused.value.retry_after > 0


async def test_check_limiter_peeks_without_consuming(redis_store, name):
    ratesync.configure_limiter(
        name, redis_store, algorithm="sliding_window", limit=2, window_seconds=60
    )
    for _ in range(3):
        peek = await ratesync.check_limiter(name, acquire_if_allowed=False)
        assert peek.allowed and peek.remaining == 2
    assert (await ratesync.check_limiter(name)).remaining == 1
    assert (await ratesync.check_limiter(name)).remaining == 0
    denied = await ratesync.check_limiter(name)
    assert not denied.allowed and denied.reset_in > 0


async def test_async_with_holds_a_slot(redis_store, name):
    ratesync.configure_limiter(name, redis_store, max_concurrent=1, timeout=0)
    async with ratesync.acquire(name):
        with pytest.raises(RateLimiterAcquisitionError):
            await ratesync.acquire(name)
    # Leaving the block waits until Redis has the slot back: an immediate
    # never-waiting attempt finds it free, every time.
    for _ in range(20):
        async with ratesync.acquire(name) as permit:
            assert permit.holds_slot


async def test_check_multi_and_composite_on_redis(redis_store, name):
    ratesync.configure_limiter(f"{name}-a", redis_store, rate_per_second=0.001, burst=3)
    ratesync.configure_limiter(f"{name}-b", redis_store, rate_per_second=0.001, burst=1)
    assert (await ratesync.check_multi_limiters([f"{name}-a", f"{name}-b"])).allowed
    for _ in range(3):
        r = await ratesync.check_multi_limiters([f"{name}-a", f"{name}-b"])
        assert not r.allowed and r.blocking_limiter_id == f"{name}-b"
    assert (await ratesync.get_limiter(f"{name}-a").get_state()).remaining == 2
    composite = ratesync.CompositeRateLimiter({"x": f"{name}-a", "y": f"{name}-b"})
    assert (await composite.check({"x": "k", "y": "k"})).allowed
    assert not (await composite.check({"x": "k", "y": "k"})).allowed
    # The composite decides on each limiter's key of the identifier.
    assert (await ratesync.get_limiter(f"{name}-a").get_state(key="k")).remaining == 2
    # One user's group: every limiter on that user's key, all or nothing.
    per_user = await ratesync.check_multi_limiters([f"{name}-a", f"{name}-b"], key="u1")
    assert per_user.allowed
    refused = await ratesync.check_multi_limiters([f"{name}-a", f"{name}-b"], key="u1")
    assert not refused.allowed
    assert (await ratesync.get_limiter(f"{name}-a").get_state(key="u1")).remaining == 2


async def test_rate_limited_and_sync_on_redis(redis_store, name):
    ratesync.configure_limiter(name, redis_store, rate_per_second=0.001, burst=1)

    @ratesync.rate_limited(name, timeout=0.05, mode="try")
    async def work():
        return 1

    assert await work() == 1
    assert await work() is None
    assert await asyncio.to_thread(sync.try_acquire, name) is None


async def test_redis_rate_limiter_class(redis_url, name):
    kwargs = dict(key_prefix=f"cls-{name}", limit=2, window_seconds=60, default_timeout=0)
    a = RedisRateLimiter(redis_url, name, **kwargs)
    b = RedisRateLimiter(redis_url, name, **kwargs)  # same group on the same Redis
    await a.initialize()
    await b.initialize()
    assert await a.try_acquire()
    assert await b.try_acquire()
    assert not await a.try_acquire()  # the limit is shared through Redis
    with pytest.raises(RateLimiterAcquisitionError):
        await b.acquire()
    state = await b.get_state()
    assert not state.allowed and state.current_usage == 2
    assert a.get_metrics().total_acquisitions == 1 and a.get_metrics().timeouts == 1
    await a.reset()
    assert await b.try_acquire()
    assert name not in ratesync.list_limiters()

    # A rate far above reach: the slot, not the 1 ms spacing of a slower bucket,
    # decides the attempts below.
    conc = RedisRateLimiter(
        redis_url, f"{name}-c", rate_per_second=1e6, max_concurrent=1, key_prefix="c" + name
    )
    await conc.initialize()
    async with conc.acquire_context(timeout=0):
        assert not await conc.try_acquire()
    assert await conc.try_acquire(timeout=0)  # leaving the block released the slot
    await conc.release()
    assert conc.get_metrics().current_concurrent == 0


async def test_sliding_window_class_as_rate_sync(redis_url, name):
    limiter = ratesync.RedisSlidingWindowRateLimiter(
        redis_url, name, limit=1, window_seconds=60, key_prefix="sw" + name
    )
    await limiter.initialize()
    assert await limiter.try_acquire(timeout=0)
    assert not await limiter.try_acquire(timeout=0)


# --- several worker processes share one Redis limit exactly ----------------------------

LIMIT = 60
PROCESSES = 4
TASKS = 16


def _worker(url: str, prefix: str, limiter: str, out: "multiprocessing.Queue[int]") -> None:
    import ratesync as rs

    async def main() -> int:
        rs.configure_store("shared", "redis", url=url, key_prefix=prefix)
        rs.configure_limiter(
            limiter, "shared", algorithm="sliding_window", limit=LIMIT, window_seconds=60
        )

        async def hammer() -> int:
            admitted = 0
            for _ in range(30):
                if (await rs.check_limiter(limiter)).allowed:
                    admitted += 1
            return admitted

        return sum(await asyncio.gather(*(hammer() for _ in range(TASKS))))

    out.put(asyncio.run(main()))


def test_worker_processes_share_a_redis_limit_exactly(redis_url, name):
    # 4 processes x 16 tasks x 30 attempts = 1920 attempts for a limit of 60.
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(redis_url, f"mp-{name}", "shared-sw", out))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    counts = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert all(c > 0 for c in counts) or sum(counts) == LIMIT
    assert sum(counts) == LIMIT


async def test_settles_on_redis(redis_store, name):
    # Redis answers later: the settle is an asyncio future of the running loop.
    ratesync.configure_limiter(name, redis_store, rate_per_second=0.001, burst=10, timeout=0)
    permit = await ratesync.acquire(name, key="u", cost=10)
    await permit.settle(4)
    assert (await ratesync.check_limiter(name, False, key="u")).remaining == 6
    await permit.settle(0)  # the first settle counts
    assert (await ratesync.check_limiter(name, False, key="u")).remaining == 6
    windowed = f"{name}-w"
    ratesync.configure_limiter(
        windowed, redis_store, algorithm="sliding_window", limit=10, window_seconds=60,
        max_concurrent=1, timeout=0,
    )
    async with ratesync.acquire(windowed, cost=8) as permit:
        await permit.settle(2)
        assert permit.holds_slot
    assert (await ratesync.check_limiter(windowed, False)).remaining == 8
    # Without an event loop (a thread of the blocking API) it is done on return.
    blocking = await asyncio.to_thread(lambda: sync.acquire(name, key="t", cost=5).settle(1))
    assert blocking is not None
    assert (await ratesync.check_limiter(name, False, key="t")).remaining == 9


async def test_a_cancelled_settle_keeps_the_permit(redis_store, name):
    ratesync.configure_limiter(
        name, redis_store, rate_per_second=0.001, burst=10, max_concurrent=1, timeout=0
    )
    async with ratesync.acquire(name, cost=10) as permit:
        pending = permit.settle(4)
        pending.cancel()
        await asyncio.sleep(0.1)
        # The permit came back from the cancelled settle, slot and all; the first
        # settle counted (Redis may or may not have had it), so a later one does not.
        assert permit.holds_slot
        await permit.settle(0)
    async with ratesync.acquire(name, timeout=0) as again:
        assert again.holds_slot


async def test_each_loop_gets_its_own_answers(redis_store, name):
    # The extension keeps the bridge a thread used last (docs/design.md#python):
    # loops one after another on one thread, and loops of other threads at the same
    # time, each get the answers of their own calls.
    ratesync.configure_limiter(name, redis_store, rate_per_second=1e6, burst=1_000_000)

    async def burst() -> int:
        async def one() -> bool:
            return (await ratesync.acquire(name)).decision.allowed

        return sum(await asyncio.gather(*(one() for _ in range(50))))

    def loops_in_turn() -> int:
        return asyncio.run(burst()) + asyncio.run(burst()) + asyncio.run(burst())

    counts = await asyncio.gather(
        burst(), asyncio.to_thread(loops_in_turn), asyncio.to_thread(loops_in_turn), burst()
    )
    assert counts == [50, 150, 150, 50]


async def test_an_iterations_calls_handed_over_in_parts_are_decided_exactly(redis_store, name):
    # 100 calls made in one iteration of the loop go to the runtime in parts of 16
    # (docs/design.md#python), so several batches are in flight at once: the limit
    # still admits exactly its 37, and each call gets its own answer.
    ratesync.configure_limiter(
        name, redis_store, algorithm="sliding_window", limit=37, window_seconds=60
    )
    results = await asyncio.gather(*(ratesync.check_limiter(name) for _ in range(100)))
    assert sum(r.allowed for r in results) == 37
    assert sorted(r.remaining for r in results if r.allowed) == list(range(37))


def _acquire_in_child(limiter: str, out: "multiprocessing.Queue[str]") -> None:
    async def main() -> str:
        async def one() -> bool:
            return (await ratesync.acquire(limiter)).decision.allowed

        return f"admitted {sum(await asyncio.gather(*(one() for _ in range(50))))}"

    try:
        out.put(asyncio.run(main()))
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        out.put(repr(error))


async def test_a_child_forked_inside_a_running_loop_uses_its_own_loop(redis_store, name):
    # Forked while this thread's loop runs (and its bridge is the one kept): the
    # child's thread still sees that loop as running on it, but its loop is new.
    ratesync.configure_limiter(name, redis_store, rate_per_second=1e6, burst=1_000_000)
    await ratesync.acquire(name)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_acquire_in_child, args=(name, out))
    child.start()
    assert await asyncio.to_thread(out.get, timeout=60) == "admitted 50"
    await asyncio.to_thread(child.join, 30)
    assert child.exitcode == 0
    # The parent's loop still hears of its results (the child left its reader alone).
    admitted = await asyncio.wait_for(
        asyncio.gather(*(ratesync.acquire(name) for _ in range(200))), 30
    )
    assert len(admitted) == 200

"""The rate-sync API on the memory engine."""

import asyncio
import os
import subprocess
import sys
import threading

import pytest

import ratesync
from ratesync import sync


async def test_acquire_then_timeout_says_when_to_retry(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=1.0, burst=2, timeout=0)
    await ratesync.acquire(name)
    await ratesync.acquire(name)
    with pytest.raises(ratesync.RateLimiterAcquisitionError) as refused:
        await ratesync.acquire(name)
    assert 0 < refused.value.retry_after <= 1.0


async def test_acquire_waits_for_the_next_token(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=20.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(3):
        await ratesync.acquire(name)
    assert loop.time() - start >= 0.09


async def test_check_limiter_peek_consumes_nothing(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=1, timeout=0)
    for _ in range(5):
        peek = await ratesync.check_limiter(name, acquire_if_allowed=False)
        assert peek.allowed and peek.remaining == 1
    taken = await ratesync.check_limiter(name)
    assert taken.allowed and taken.remaining == 0
    refused = await ratesync.check_limiter(name)
    assert not refused.allowed and refused.reset_in > 0


async def test_keys_and_costs(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=3, timeout=0)
    await ratesync.acquire(name, key="a", cost=3)
    await ratesync.acquire(name, key="b")
    with pytest.raises(ratesync.RateLimiterAcquisitionError):
        await ratesync.acquire(name, key="a")
    with pytest.raises(ValueError):
        await ratesync.acquire(name, key="c", cost=4)


async def test_async_with_releases_the_slot(store, name):
    ratesync.configure_limiter(name, store, max_concurrent=1, timeout=0)
    async with ratesync.acquire(name) as permit:
        assert permit.holds_slot
        with pytest.raises(ratesync.RateLimiterAcquisitionError):
            await ratesync.acquire(name)
    async with ratesync.acquire(name):
        pass


async def test_a_waiter_gets_the_released_slot(store, name):
    ratesync.configure_limiter(name, store, max_concurrent=1, timeout=5)

    async def hold():
        async with ratesync.acquire(name):
            await asyncio.sleep(0.05)

    await asyncio.gather(*(hold() for _ in range(4)))


async def test_cancelled_wait_consumes_nothing(store, name):
    ratesync.configure_limiter(name, store, max_concurrent=1)
    async with ratesync.acquire(name):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ratesync.acquire(name), 0.05)
    async with ratesync.acquire(name, timeout=0):
        pass


async def test_manual_release_as_rate_sync(store, name):
    ratesync.configure_limiter(name, store, max_concurrent=1, timeout=0)
    limiter = ratesync.get_limiter(name)
    await ratesync.acquire(name)
    assert not await limiter.try_acquire()
    await limiter.release()
    assert await limiter.try_acquire()
    await limiter.release()
    assert limiter.max_concurrent == 1 and limiter.get_config().store_id == store


def test_memory_state_survives_later_configuration(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, timeout=0)
    assert sync.try_acquire(name) is not None
    ratesync.configure_limiter(name + "x", store, algorithm="sliding_window", limit=2, window_seconds=1)
    ratesync.configure_store(store, "memory")
    ratesync.configure_limiter(name, store, rate_per_second=0.001, timeout=0)
    assert sync.try_acquire(name) is None


def test_configuration_errors(store, name):
    with pytest.raises(ratesync.StoreNotFoundError):
        ratesync.configure_limiter(name, "nowhere", rate_per_second=1)
    with pytest.raises(ratesync.ConfigValidationError, match="rate_per_second"):
        ratesync.configure_limiter(name, store, rate_per_second=-1)
    with pytest.raises(ratesync.ConfigValidationError, match="limit"):
        ratesync.configure_limiter(name, store, rate_per_second=1, limit=3)
    with pytest.raises(ratesync.ConfigValidationError):
        ratesync.configure_store("x", "memory", bogus=1)
    with pytest.raises(ratesync.LimiterNotFoundError):
        ratesync.get_limiter(name)
    with pytest.raises(ratesync.LimiterNotFoundError):
        sync.try_acquire(name)


def test_list_stores_masks_secrets():
    ratesync.configure_store("secret", "redis", url="redis://user:hunter2@127.0.0.1:1/0", password="pw")
    info = ratesync.list_stores()["secret"]
    assert "hunter2" not in repr(info) and "pw" != info["password"]


def test_sync_api_from_threads(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=50, timeout=0)
    admitted = []

    def worker():
        for _ in range(20):
            if sync.try_acquire(name) is not None:
                admitted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 50
    with pytest.raises(ratesync.RateLimiterAcquisitionError):
        sync.acquire(name)
    assert sync.state(name).remaining == 0


def test_sync_acquire_blocks_then_releases(store, name):
    ratesync.configure_limiter(name, store, max_concurrent=1, timeout=2)
    with sync.acquire(name):
        assert sync.try_acquire(name) is None
    with sync.acquire(name, timeout=0):
        pass


def test_asyncio_run_twice(store, name):
    ratesync.configure_limiter(name, store, max_concurrent=1, timeout=2)

    async def main():
        async with ratesync.acquire(name):
            pass
        await ratesync.check_limiter(name, acquire_if_allowed=False)

    asyncio.run(main())
    asyncio.run(main())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_can_acquire(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=100.0, max_concurrent=2, timeout=2)
    asyncio.run(ratesync.check_limiter(name))  # the parent's runtime exists
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            async def child():
                async with ratesync.acquire(name):
                    pass
                await ratesync.acquire(name)

            asyncio.run(child())
            with sync.acquire(name):
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


SHORT_RUN = """
import asyncio, ratesync
ratesync.configure_store("m", "memory")
ratesync.configure_limiter("a", "m", rate_per_second=1000, max_concurrent=2)
async def main():
    async with ratesync.acquire("a"):
        pass
    ratesync.acquire("a")  # never awaited
    await ratesync.acquire("a")
asyncio.run(main())
"""


def test_many_short_interpreter_runs_exit_cleanly():
    for _ in range(20):
        run = subprocess.run([sys.executable, "-c", SHORT_RUN], capture_output=True, timeout=60)
        assert run.returncode == 0, run.stderr.decode()


def test_an_invalid_file_fails_on_first_use_not_at_import(tmp_path):
    (tmp_path / "rate-sync.toml").write_text("[limiters.api]\nstore = 'nowhere'\n")
    script = """
import ratesync
try:
    ratesync.list_limiters()
except ratesync.ConfigValidationError as e:
    assert "limiters.api.store" in str(e), e
    print("raised")
"""
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "RATE_SYNC_CONFIG": ""},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "raised"


def test_load_config_and_coroutines_are_real(tmp_path):
    import inspect

    path = tmp_path / "rs.toml"
    path.write_text(
        "[stores.s]\nengine = 'memory'\n[limiters.f]\nstore = 's'\nrate_per_second = 5\nfail_closed = true\n"
    )
    ratesync.load_config(path)
    assert ratesync.list_limiters()["f"]["fail_closed"] is True
    assert inspect.iscoroutinefunction(ratesync.check_limiter)
    assert inspect.iscoroutinefunction(ratesync.get_limiter("f").acquire)

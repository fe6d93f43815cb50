"""Fixed windows, a sliding window's precision and settles, through the Python API
(memory stores; ``test_redis.py`` settles on Redis)."""

from __future__ import annotations

import math
import threading
import time

import pytest

import ratesync
from ratesync import ConfigValidationError, RateLimiterAcquisitionError, sync

IST = 5 * 3600 + 1800  # +05:30, seconds east of UTC
DAY = 86_400


def next_midnight(offset: int) -> int:
    """The next local midnight at ``offset`` seconds east of UTC, as a Unix time."""
    return (math.floor((time.time() + offset) / DAY) + 1) * DAY - offset


# ---------------------------------------------------------------------------
# Fixed windows


async def test_a_daily_quota_resets_at_local_midnight(store, name):
    ratesync.configure_limiter(
        name, store, algorithm="fixed_window", limit=3, period="day", utc_offset="+05:30",
        timeout=0,
    )
    midnight = next_midnight(IST)
    for remaining in (2, 1, 0):
        taken = await ratesync.check_limiter(name)
        assert taken.allowed and taken.remaining == remaining
        # The real reset: midnight in India, exactly, however long the result lives.
        assert taken.reset_time == midnight and taken.reset_at == midnight
        assert abs(taken.reset_in - (midnight - time.time())) < 2
    refused = await ratesync.check_limiter(name)
    assert not refused.allowed and refused.reset_at == midnight
    with pytest.raises(RateLimiterAcquisitionError) as error:
        await ratesync.acquire(name)
    assert abs(error.value.retry_after - (midnight - time.time())) < 2
    state = await ratesync.get_limiter(name).get_state()
    assert (state.allowed, state.remaining, state.reset_at) == (False, 0, midnight)
    assert state.current_usage == 3


async def test_windows_of_a_length(store, name):
    # Aligned to the Unix epoch: this window of 3600 s ends on the next UTC hour.
    ratesync.configure_limiter(name, store, algorithm="fixed_window", limit=2, window_seconds=3600)
    hour = (math.floor(time.time() / 3600) + 1) * 3600
    assert (await ratesync.check_limiter(name)).reset_at == hour
    # At an offset, windows dividing a day start at local midnight: +05:30 puts the
    # hours at half past, UTC.
    ratesync.configure_limiter(
        f"{name}-ist", store, algorithm="fixed_window", limit=2, window_seconds=3600,
        utc_offset="+05:30",
    )
    half_past = (math.floor((time.time() - 1800) / 3600) + 1) * 3600 + 1800
    assert (await ratesync.check_limiter(f"{name}-ist")).reset_at == half_past


async def test_fixed_windows_read_back_and_clone(store, name):
    ratesync.configure_limiter(
        name, store, algorithm="fixed_window", limit=3, period="week", utc_offset="-08:00"
    )
    info = ratesync.list_limiters()[name]
    assert (info["algorithm"], info["limit"], info["period"], info["utc_offset"]) == (
        "fixed_window", 3, "week", "-08:00",
    )
    assert info["window_seconds"] is None and info["precision"] is None
    config = ratesync.get_limiter(name).get_config()
    assert (config.algorithm, config.period, config.utc_offset) == (
        "fixed_window", "week", "-08:00",
    )
    # A clone keeps the calendar; a window length given replaces the period.
    ratesync.clone_limiter(name, f"{name}-copy")
    assert ratesync.list_limiters()[f"{name}-copy"]["period"] == "week"
    ratesync.clone_limiter(name, f"{name}-hourly", window_seconds=3600)
    hourly = ratesync.list_limiters()[f"{name}-hourly"]
    assert (hourly["period"], hourly["window_seconds"], hourly["utc_offset"]) == (
        None, 3600.0, "-08:00",
    )
    ratesync.configure_limiter(name, store, algorithm="fixed_window", limit=5, window_seconds=7)
    epoch = ratesync.list_limiters()[name]
    assert (epoch["window_seconds"], epoch["utc_offset"], epoch["period"]) == (7.0, None, None)


@pytest.mark.parametrize(
    "options, needles",
    [
        ({"period": "daily"}, ["unknown period `daily`", "did you mean `day`?"]),
        ({"period": "day", "window_seconds": 60}, ["exclude each other"]),
        ({}, ["missing required key `window_seconds` (or `period`"]),
        ({"window_seconds": 7, "utc_offset": "+01:00"}, ["does not divide a day"]),
        ({"period": "day", "utc_offset": "+5:30"}, ["expected a UTC offset such as"]),
        ({"period": "day", "utc_offset": "+19:00"}, ["±18:00"]),
        ({"period": "day", "precision": 10}, ["`precision` is a sliding_window setting"]),
    ],
)
def test_fixed_window_errors(store, name, options, needles):
    with pytest.raises(ConfigValidationError) as error:
        ratesync.configure_limiter(name, store, algorithm="fixed_window", limit=3, **options)
    for needle in needles:
        assert needle in str(error.value)
    assert f"limiters.{name}." in str(error.value)


def test_sliding_window_precision(store, name):
    ratesync.configure_limiter(
        name, store, algorithm="sliding_window", limit=5, window_seconds=60, precision=20
    )
    assert ratesync.get_limiter(name).get_config().precision == 20
    ratesync.configure_limiter(name, store, algorithm="sliding_window", limit=5, window_seconds=60)
    assert ratesync.list_limiters()[name]["precision"] == 100
    with pytest.raises(ConfigValidationError, match="must be at least 4, got 2"):
        ratesync.configure_limiter(
            name, store, algorithm="sliding_window", limit=5, window_seconds=60, precision=2
        )
    with pytest.raises(ConfigValidationError, match="`utc_offset` is a fixed_window setting"):
        ratesync.configure_limiter(
            name, store, algorithm="sliding_window", limit=5, window_seconds=60, utc_offset="UTC"
        )


def test_the_file_configures_them_too(tmp_path):
    path = tmp_path / "rate-sync.toml"
    path.write_text(
        """
[stores.local]
engine = "memory"

[limiters.daily]
store = "local"
algorithm = "fixed_window"
limit = 1000
period = "day"
utc_offset = "+05:30"

[limiters.login]
store = "local"
algorithm = "sliding_window"
limit = 5
window_seconds = 300
precision = 20
"""
    )
    ratesync.load_config(path)
    limiters = ratesync.list_limiters()
    assert (limiters["daily"]["period"], limiters["daily"]["utc_offset"]) == ("day", "+05:30")
    assert limiters["login"]["precision"] == 20
    permit = sync.acquire("daily", key="u")
    assert permit.decision.reset_at == next_midnight(IST)
    path.write_text(path.read_text().replace('"day"', '"fortnight"'))
    with pytest.raises(ConfigValidationError, match=r"rate-sync.toml:9: limiters.daily.period"):
        ratesync.load_config(path)


# ---------------------------------------------------------------------------
# Settle


async def test_a_settle_gives_back_what_the_call_did_not_use(store, name):
    ratesync.configure_limiter(
        name, store, algorithm="fixed_window", limit=10, period="day", timeout=0
    )
    permit = await ratesync.acquire(name, key="u", cost=8)
    assert (await ratesync.check_limiter(name, False, key="u")).remaining == 2
    await permit.settle(3)
    assert (await ratesync.check_limiter(name, False, key="u")).remaining == 7
    # The first settle counts; a settle can only give back.
    await permit.settle(0)
    assert (await ratesync.check_limiter(name, False, key="u")).remaining == 7
    other = await ratesync.acquire(name, key="v", cost=2)
    with pytest.raises(ValueError, match="cannot settle at 3 units, above the cost of 2"):
        await other.settle(3)
    await other.settle(2)


async def test_settle_in_and_after_async_with(store, name):
    ratesync.configure_limiter(name, store, algorithm="sliding_window", limit=10, window_seconds=60)
    async with ratesync.acquire(name, key="u", cost=6) as permit:
        await permit.settle(1)
    assert (await ratesync.check_limiter(name, False, key="u")).remaining == 9
    # Without a slot to release, a permit settles after its block too; or on the
    # context manager.
    context = ratesync.acquire(name, key="v", cost=6)
    async with context as permit:
        pass
    await context.settle(2)
    assert (await ratesync.check_limiter(name, False, key="v")).remaining == 8
    with pytest.raises(RuntimeError, match="nothing to settle"):
        await ratesync.acquire(name, key="w").settle(1)
    # The limiter's context manager settles as well.
    limiter = ratesync.get_limiter(name)
    async with limiter.acquire_context(key="x", cost=5) as permit:
        await permit.settle(5)
    assert (await limiter.get_state(key="x")).remaining == 5
    context = limiter.acquire_context(key="y", cost=5)
    async with context:
        await context.settle(0)
    assert (await limiter.get_state(key="y")).remaining == 10
    permit = await limiter.acquire(key="z", cost=4)
    await permit.settle(1)
    assert (await limiter.get_state(key="z")).remaining == 9


async def test_a_permit_with_a_slot_settles_before_its_release(store, name):
    ratesync.configure_limiter(
        name, store, rate_per_second=0.001, burst=10, max_concurrent=1, timeout=0
    )
    async with ratesync.acquire(name, cost=10) as permit:
        await permit.settle(4)
        assert permit.holds_slot, "a settle keeps the slot"
    assert (await ratesync.check_limiter(name, False)).remaining == 6
    async with ratesync.acquire(name, cost=2) as permit:
        pass
    assert not permit.holds_slot
    with pytest.raises(RuntimeError, match="settle before releasing it"):
        await permit.settle(1)


def test_settle_without_an_event_loop(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=10)
    done = []

    def work():
        permit = sync.acquire(name, cost=10)
        permit.settle(3)  # done on return: nothing to await in a thread
        done.append(sync.state(name).remaining)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert done == [7]


def test_group_permits_do_not_settle(store, name):
    import asyncio

    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=10)
    kept: list = []

    async def take():
        await ratesync._api._decide_all([name], [(name, "", 2)], True, None, kept)
        with pytest.raises(RuntimeError, match="cannot settle"):
            await kept[0].settle(1)

    asyncio.run(take())

"""rate-sync 0.4.2's behaviours that code written for it relies on, in ratesync's own
words: engine classes and their initialization, waiting out a timeout, metrics fed
by every path, configuration merged and reported as configured, store checks at
start-up, fail-open admissions in the log, rate-sync's import paths and extras, and
the quota results report (``docs/design.md#python``)."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import sys
import time

import pytest

import ratesync
from ratesync import (
    MemoryRateLimiter,
    RateLimiterAcquisitionError,
    RateLimiterNotInitializedError,
    StoreUnavailableError,
)

# --- Engine classes constructed directly: initialize() first -------------------------


async def test_an_engine_class_refuses_calls_until_initialized():
    limiter = MemoryRateLimiter("not-ready", rate_per_second=10.0, max_concurrent=2)
    assert not limiter.is_initialized
    with pytest.raises(RateLimiterNotInitializedError):
        await limiter.acquire()
    with pytest.raises(RateLimiterNotInitializedError):
        await limiter.try_acquire(timeout=0)
    with pytest.raises(RateLimiterNotInitializedError):
        await limiter.release()
    with pytest.raises(RateLimiterNotInitializedError):
        async with limiter.acquire_context():
            pass
    with pytest.raises(RuntimeError, match="not initialized"):
        await limiter.get_state()
    await limiter.initialize()
    assert limiter.is_initialized
    assert await limiter.try_acquire(timeout=0)
    await limiter.release()
    await limiter.disconnect()  # rate-sync's clean-up: accepted, harmless


async def test_limiters_of_the_registry_are_ready_at_once(store, name):
    ratesync.configure_limiter(name, store_id=store, rate_per_second=10.0)
    limiter = ratesync.get_limiter(name)
    assert limiter.is_initialized
    assert await limiter.try_acquire(timeout=0)


# --- try_acquire(timeout): wait it out, then False -----------------------------------


async def test_a_refused_try_acquire_waits_out_its_timeout_then_answers_false():
    limiter = MemoryRateLimiter("slow", rate_per_second=1.0)
    await limiter.initialize()
    assert await limiter.try_acquire(timeout=0)
    started = time.perf_counter()
    assert not await limiter.try_acquire(timeout=0.15)
    assert 0.14 <= time.perf_counter() - started < 0.6
    # timeout=0 stays one attempt, answered at once.
    started = time.perf_counter()
    assert not await limiter.try_acquire(timeout=0)
    assert time.perf_counter() - started < 0.05
    assert limiter.get_metrics().timeouts == 2


async def test_a_reset_admits_a_try_acquire_that_waits_out_its_timeout():
    limiter = MemoryRateLimiter("reset-early", rate_per_second=0.5)
    await limiter.initialize()
    assert await limiter.try_acquire(timeout=0)
    waiting = asyncio.ensure_future(limiter.try_acquire(timeout=1.5))
    await asyncio.sleep(0.1)
    reset = time.perf_counter()
    await limiter.reset()
    assert await waiting
    assert time.perf_counter() - reset < 0.6


async def test_the_module_level_acquire_waits_out_its_timeout_too(store, name):
    ratesync.configure_limiter(name, store_id=store, rate_per_second=1.0)
    await ratesync.acquire(name)
    started = time.perf_counter()
    with pytest.raises(RateLimiterAcquisitionError):
        await ratesync.acquire(name, timeout=0.15)
    assert time.perf_counter() - started >= 0.14
    started = time.perf_counter()
    with pytest.raises(RateLimiterAcquisitionError):
        await ratesync.acquire(name, timeout=0)
    assert time.perf_counter() - started < 0.05


# --- Properties -----------------------------------------------------------------------


async def test_window_limiters_expose_limit_and_window_seconds(store, name):
    window = MemoryRateLimiter("w", limit=42, window_seconds=300)
    assert (window.limit, window.window_seconds) == (42, 300)
    bucket = MemoryRateLimiter("b", rate_per_second=5.0)
    assert (bucket.limit, bucket.window_seconds) == (None, None)
    ratesync.configure_limiter(
        name, store_id=store, algorithm="sliding_window", limit=7, window_seconds=60
    )
    configured = ratesync.get_limiter(name)
    assert (configured.limit, configured.window_seconds) == (7, 60)


# --- Metrics --------------------------------------------------------------------------


async def test_a_full_concurrency_cap_is_counted():
    limiter = MemoryRateLimiter("cap", max_concurrent=1)
    await limiter.initialize()
    await limiter.acquire()
    assert not await limiter.try_acquire(timeout=0)
    assert not await limiter.try_acquire(timeout=0.05)
    metrics = limiter.get_metrics()
    assert metrics.max_concurrent_reached == 2 and metrics.timeouts == 2
    await limiter.release()


async def test_a_rate_refusal_is_not_a_full_cap():
    limiter = MemoryRateLimiter("rate-only", rate_per_second=1.0, max_concurrent=5)
    await limiter.initialize()
    await limiter.acquire()
    assert not await limiter.try_acquire(timeout=0)
    assert limiter.get_metrics().max_concurrent_reached == 0
    await limiter.release()


async def test_reset_clears_metrics_and_forgets_held_slots(store, name):
    limiter = MemoryRateLimiter("fresh", max_concurrent=2)
    await limiter.initialize()
    await limiter.acquire()
    await limiter.acquire()
    await limiter.reset()
    metrics = limiter.get_metrics()
    assert (metrics.total_acquisitions, metrics.current_concurrent) == (0, 0)
    assert await limiter.try_acquire(timeout=0) and await limiter.try_acquire(timeout=0)
    await limiter.release()
    await limiter.release()
    assert limiter.get_metrics().total_releases == 2

    ratesync.configure_limiter(name, store_id=store, rate_per_second=1000.0)
    await ratesync.acquire(name)
    await ratesync.get_limiter(name).reset()
    assert ratesync.get_limiter(name).get_metrics().total_acquisitions == 0


async def test_every_path_that_admits_feeds_the_limiters_metrics(store, name):
    # A rate far above reach: only the slots decide.
    ratesync.configure_limiter(name, store_id=store, rate_per_second=1e6, max_concurrent=5)
    metrics = lambda: ratesync.get_limiter(name).get_metrics()  # noqa: E731
    await ratesync.acquire(name)  # holds its slot until release(), as in rate-sync
    assert (metrics().total_acquisitions, metrics().current_concurrent) == (1, 1)
    await ratesync.get_limiter(name).release()
    assert (metrics().current_concurrent, metrics().total_releases) == (0, 1)
    async with ratesync.acquire(name):
        assert metrics().current_concurrent == 1
    assert (metrics().total_acquisitions, metrics().current_concurrent) == (2, 0)
    assert metrics().last_acquisition_at is not None
    assert (await ratesync.check_limiter(name)).allowed
    await ratesync.check_multi_limiters([name])
    assert metrics().total_acquisitions == 4
    await asyncio.to_thread(ratesync.sync.try_acquire, name)
    assert metrics().total_acquisitions == 5


async def test_module_level_waits_and_timeouts_are_counted(store, name):
    ratesync.configure_limiter(name, store_id=store, rate_per_second=10.0)
    await ratesync.acquire(name)
    await ratesync.acquire(name)  # waits about 0.1 s
    with pytest.raises(RateLimiterAcquisitionError):
        await ratesync.acquire(name, timeout=0)
    metrics = ratesync.get_limiter(name).get_metrics()
    assert metrics.total_acquisitions == 2 and metrics.timeouts == 1
    assert metrics.max_wait_time_ms >= 50


async def test_module_level_admissions_reach_the_prometheus_text(store, name):
    from ratesync.contrib.prometheus import metrics_text

    ratesync.configure_limiter(name, store_id=store, rate_per_second=1000.0)
    for _ in range(3):
        await ratesync.acquire(name)
    line = next(
        line
        for line in metrics_text().splitlines()
        if line.startswith("ratesync_admitted_total") and f'limiter="{name}"' in line
    )
    assert line.endswith(" 3")


# --- get_state counts held slots ------------------------------------------------------


async def test_state_counts_the_slots_held(store, name):
    ratesync.configure_limiter(name, store_id=store, max_concurrent=20)
    for _ in range(20):
        await ratesync.acquire(name)
    state = await ratesync.get_limiter(name).get_state()
    assert (state.current_usage, state.remaining, state.allowed) == (20, 0, False)

    both = f"{name}-rate"
    ratesync.configure_limiter(
        both, store_id=store, algorithm="sliding_window", limit=100, window_seconds=60,
        max_concurrent=3,
    )
    for _ in range(2):
        await ratesync.acquire(both)
    state = await ratesync.get_limiter(both).get_state()
    assert (state.current_usage, state.remaining, state.allowed) == (2, 1, True)
    await ratesync.acquire(both)
    state = await ratesync.get_limiter(both).get_state()
    assert (state.current_usage, state.remaining, state.allowed) == (3, 0, False)


# --- Configuration --------------------------------------------------------------------


def test_load_config_adds_to_what_was_configured(tmp_path, store, name):
    ratesync.configure_limiter(name, store_id=store, rate_per_second=5.0)
    path = tmp_path / "rate-sync.toml"
    path.write_text(
        f"""
[stores.{name}-file]
engine = "memory"

[limiters.{name}-a]
store = "{name}-file"
rate_per_second = 2.0
"""
    )
    ratesync.load_config(path)
    limiters = ratesync.list_limiters()
    assert name in limiters and f"{name}-a" in limiters
    assert store in ratesync.list_stores() and f"{name}-file" in ratesync.list_stores()
    # A limiter of the same id is replaced by the file's.
    path.write_text(
        f"""
[stores.{name}-file]
engine = "memory"

[limiters.{name}]
store = "{name}-file"
rate_per_second = 3.0
"""
    )
    ratesync.load_config(path)
    assert ratesync.list_limiters()[name]["rate_per_second"] == 3.0
    assert ratesync.list_limiters()[name]["store_id"] == f"{name}-file"


async def test_a_limiter_the_file_leaves_alone_keeps_its_state(tmp_path, store, name):
    ratesync.configure_limiter(name, store_id=store, rate_per_second=0.001)
    await ratesync.acquire(name)
    path = tmp_path / "other.toml"
    path.write_text(f'[stores.{name}-o]\nengine = "memory"\n')
    ratesync.load_config(path)
    assert not (await ratesync.check_limiter(name)).allowed


@pytest.mark.parametrize("rate", [90.0, 42.5, 1.67, 0.3, 1000.0, 3.0e-3])
def test_rates_are_reported_as_configured(store, name, rate):
    ratesync.configure_limiter(name, store_id=store, rate_per_second=rate)
    assert ratesync.list_limiters()[name]["rate_per_second"] == rate
    assert ratesync.get_limiter(name).rate_per_second == rate
    assert ratesync.get_limiter(name).get_config().rate_per_second == rate


async def test_stores_say_whether_they_were_initialized(name):
    ratesync.configure_store(f"{name}-s", strategy="memory")
    ratesync.configure_limiter(name, store_id=f"{name}-s", rate_per_second=1.0)
    assert ratesync.list_stores()[f"{name}-s"]["initialized"] is False
    await ratesync.initialize_limiter(name)
    assert ratesync.list_stores()[f"{name}-s"]["initialized"] is True


# --- Store checks at start-up and fail-open in the log ----------------------------------

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


async def test_initializing_a_fail_closed_limiter_on_a_store_down_raises(name):
    ratesync.configure_store(f"{name}-down", strategy="redis", url=DOWN)
    ratesync.configure_limiter(
        name, store_id=f"{name}-down", rate_per_second=1.0, fail_closed=True
    )
    with pytest.raises(StoreUnavailableError):
        await ratesync.initialize_limiter(name)
    with pytest.raises(StoreUnavailableError):
        await ratesync.initialize_all_limiters()


async def test_initializing_a_fail_open_limiter_on_a_store_down_warns(name, caplog):
    ratesync.configure_store(f"{name}-down", strategy="redis", url=DOWN)
    ratesync.configure_limiter(name, store_id=f"{name}-down", rate_per_second=1.0)
    with caplog.at_level(logging.WARNING, logger="ratesync"):
        await ratesync.initialize_limiter(name)
    assert any(
        r.name == "ratesync" and name in r.getMessage() and "fails open" in r.getMessage()
        for r in caplog.records
    )


async def _records_within(caplog: pytest.LogCaptureFixture, wanted: str, seconds: float):
    """The records naming ``wanted`` once ``seconds`` have passed (the core's records
    arrive from a thread of the extension)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return [r for r in caplog.records if r.name == "ratesync" and wanted in r.getMessage()]


async def test_fail_open_admissions_are_logged_once_per_interval(name, caplog):
    ratesync.configure_store(f"{name}-down", strategy="redis", url=DOWN)
    ratesync.configure_limiter(name, store_id=f"{name}-down", rate_per_second=1.0)
    with caplog.at_level(logging.WARNING, logger="ratesync"):
        started = time.time()
        for _ in range(50):
            await ratesync.acquire(name)  # admitted: the store is down, fail-open
        records = await _records_within(caplog, f"limiter={name}", 1.0)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].levelno == logging.WARNING
    assert "fail-open" in records[0].getMessage()
    assert records[0].created - started < 1.0


# --- rate-sync's import paths and extras -------------------------------------------------


def test_rate_sync_import_paths_resolve():
    from ratesync.core import RateLimiter, RateLimiterMetrics
    from ratesync.domain.value_objects import combine_identifiers, hash_identifier
    from ratesync.domain.value_objects.identifier import hash_identifier as h

    assert RateLimiter is ratesync.RateLimiter
    assert RateLimiterMetrics is ratesync.RateLimiterMetrics
    assert hash_identifier is h is ratesync.hash_identifier
    assert combine_identifiers is ratesync.combine_identifiers
    assert ratesync.StrategyType is not None and "StrategyType" in ratesync.__all__
    assert ratesync.testing.reset_all_limiters is not None


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_rate_sync_extras_are_declared():
    import tomllib

    pyproject = pathlib.Path(__file__).parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert {"redis", "postgres", "all", "fastapi", "prometheus"} <= set(extras)


# --- The quota results report --------------------------------------------------------------


async def test_results_and_headers_report_a_token_bucket_as_configured(store, name):
    from ratesync.contrib.fastapi import get_rate_limit_headers

    ratesync.configure_limiter(name, store_id=store, rate_per_second=10.0)
    result = await ratesync.check_limiter(name)
    assert (result.allowed, result.limit, result.window) == (True, 10, 1.0)
    headers = get_rate_limit_headers(result)
    assert headers["X-RateLimit-Limit"] == "10"
    assert "q=10" in headers["RateLimit-Policy"] and "w=1" in headers["RateLimit-Policy"]
    refused = await ratesync.check_limiter(name)
    assert (refused.allowed, refused.limit, refused.remaining) == (False, 10, 0)
    assert get_rate_limit_headers(refused)["Retry-After"] == "1"


async def test_header_helpers_take_every_result_of_the_package(store, name):
    from fastapi import Response

    from ratesync.contrib.fastapi import get_rate_limit_headers, set_rate_limit_headers

    ratesync.configure_limiter(
        name, store_id=store, algorithm="sliding_window", limit=5, window_seconds=60
    )
    single = await ratesync.check_limiter(name)
    multi = await ratesync.check_multi_limiters([name])
    for result in (single, multi):
        headers = get_rate_limit_headers(result)
        assert headers["X-RateLimit-Limit"] == "5"
        response = Response()
        set_rate_limit_headers(response, result)
        assert response.headers["X-RateLimit-Remaining"] == headers["X-RateLimit-Remaining"]
    handmade = ratesync.RateLimitResult(allowed=False, limit=100, remaining=0, reset_in=30.0)
    assert get_rate_limit_headers(handmade)["Retry-After"] == "30"


# --- What rate-sync's documented examples read back ------------------------------------


def test_loading_a_missing_file_is_a_file_not_found_error(tmp_path):
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(FileNotFoundError, match="Configuration file not found"):
        ratesync.load_config(missing)
    with pytest.raises(ratesync.ConfigValidationError):
        ratesync.load_config(missing)


def test_list_stores_reports_the_keys_rate_sync_lists():
    ratesync.configure_store("listed-redis", "redis", url="redis://127.0.0.1:6379/3")
    ratesync.configure_store(
        "listed-pg", "postgres", url="postgresql://u@127.0.0.1/db", auto_create=True
    )
    ratesync.configure_limiter(
        "listed-window", store_id="listed-redis", algorithm="sliding_window",
        limit=5, window_seconds=300,
    )
    stores = ratesync.list_stores()
    assert stores["listed-redis"]["db"] == 3, "the URL's database"
    assert {"pool_min_size", "pool_max_size", "timing_margin_ms"} <= set(stores["listed-redis"])
    assert stores["listed-pg"]["auto_create"] is True
    window = ratesync.list_limiters()["listed-window"]["window_seconds"]
    assert window == 300 and isinstance(window, int), "as the file gives it"

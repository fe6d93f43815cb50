"""rate_limited, clones, identifiers, multi-limiter checks, composites, metrics and
the engine classes, on the memory engine."""

import asyncio
import hashlib
import logging

import pytest

import ratesync
from ratesync import (
    CompositeRateLimiter,
    MemoryRateLimiter,
    MultiLimiterResult,
    RateLimiterAcquisitionError,
    rate_limited,
)

# --- identifiers: rate-sync's documented behaviour -----------------------------------


def test_hash_identifier_as_rate_sync():
    expected = hashlib.sha256(b"user@example.com").hexdigest()[:16]
    assert ratesync.hash_identifier("user@example.com") == expected
    # normalized: lowercased and stripped
    assert ratesync.hash_identifier("  User@Example.COM ") == expected
    # salt is prepended as "salt:"
    assert ratesync.hash_identifier("a@b.c", salt="login") == (
        hashlib.sha256(b"login:a@b.c").hexdigest()[:16]
    )
    assert ratesync.hash_identifier("x", salt="login") != ratesync.hash_identifier("x")
    assert ratesync.hash_identifier("x", length=32) == hashlib.sha256(b"x").hexdigest()[:32]
    assert ratesync.hash_identifier("x", algorithm="md5") == hashlib.md5(b"x").hexdigest()[:16]
    assert ratesync.hash_identifier("x", algorithm="sha512") == (
        hashlib.sha512(b"x").hexdigest()[:16]
    )
    # an unknown algorithm falls back to sha256
    assert ratesync.hash_identifier("x", algorithm="nope") == hashlib.sha256(b"x").hexdigest()[:16]


def test_combine_identifiers_as_rate_sync():
    assert ratesync.combine_identifiers("a", "", "b", None, "c") == "a:b:c"
    assert ratesync.combine_identifiers("a", "b", "c", separator="-") == "a-b-c"
    assert ratesync.combine_identifiers("api", 42, "/p") == "api:42:/p"
    assert ratesync.combine_identifiers() == ""


# --- clone_limiter / get_or_clone_limiter / initialize -------------------------------


async def test_clone_limiter_copies_settings_with_own_state(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=1, timeout=0)
    ratesync.clone_limiter(name, f"{name}-a")
    ratesync.clone_limiter(name, f"{name}-fast", rate_per_second=5.0)
    clone = ratesync.get_limiter(f"{name}-a").get_config()
    assert (clone.rate_per_second, clone.burst, clone.store_id, clone.timeout) == (
        0.001,
        1,
        store,
        0,
    )
    assert ratesync.get_limiter(f"{name}-fast").rate_per_second == 5.0
    await ratesync.acquire(name)
    await ratesync.acquire(f"{name}-a")  # its own bucket
    with pytest.raises(ValueError):
        ratesync.clone_limiter(name, f"{name}-a")
    with pytest.raises(ratesync.LimiterNotFoundError):
        ratesync.clone_limiter("no-such-limiter", f"{name}-b")


async def test_clone_sliding_window_override(store, name):
    ratesync.configure_limiter(name, store, algorithm="sliding_window", limit=2, window_seconds=60)
    ratesync.clone_limiter(name, f"{name}-big", limit=10)
    c = ratesync.get_limiter(f"{name}-big").get_config()
    assert (c.algorithm, c.limit, c.window_seconds) == ("sliding_window", 10, 60)


async def test_get_or_clone_limiter(store, name):
    ratesync.configure_limiter(name, store, algorithm="sliding_window", limit=1, window_seconds=60)
    a = await ratesync.get_or_clone_limiter(name, "1.2.3.4")
    assert a.group_id == f"{name}:1.2.3.4" and a.is_initialized
    assert await a.try_acquire(timeout=0)
    again = await ratesync.get_or_clone_limiter(name, "1.2.3.4")
    assert not await again.try_acquire(timeout=0)  # same limiter, same state
    other = await ratesync.get_or_clone_limiter(name, "5.6.7.8")
    assert await other.try_acquire(timeout=0)
    with pytest.raises(ratesync.LimiterNotFoundError):
        await ratesync.get_or_clone_limiter("no-such-base", "x")


async def test_initialize(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=1.0)
    await ratesync.initialize_limiter(name)
    await ratesync.initialize_all_limiters()
    with pytest.raises(ratesync.LimiterNotFoundError):
        await ratesync.initialize_limiter("no-such-limiter")


# --- rate_limited --------------------------------------------------------------------


async def test_rate_limited_fixed_id_wait_mode(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=2, timeout=0)

    @rate_limited(name)
    async def work(x):
        return x * 2

    assert await work(1) == 2 and await work(2) == 4
    with pytest.raises(RateLimiterAcquisitionError):
        await work(3)


async def test_rate_limited_try_mode_returns_none(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=1)

    @rate_limited(name, timeout=0.01, mode="try")
    async def work():
        return "done"

    assert await work() == "done"
    assert await work() is None


async def test_rate_limited_template_clones_per_argument(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=1, timeout=0)

    @rate_limited(name + ":{user_id}")
    async def call(user_id, payload=None):
        return user_id

    assert await call("u1") == "u1"
    assert await call(user_id="u2") == "u2"
    with pytest.raises(RateLimiterAcquisitionError):
        await call("u1")
    assert f"{name}:u1" in ratesync.list_limiters()

    @rate_limited(name + ":{missing}")
    async def bad(user_id):
        return user_id

    with pytest.raises(ValueError):
        await bad("x")


async def test_rate_limited_factory(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=1, timeout=0)
    seen = []

    def factory(tenant):
        seen.append(tenant)
        return ratesync.get_limiter(name)

    @rate_limited(factory)
    async def fetch(tenant, other):
        return other

    assert await fetch("t1", other=3) == 3
    assert seen == ["t1"]
    with pytest.raises(RateLimiterAcquisitionError):
        await fetch("t1", 4)

    kwargs_seen = []

    def kw_factory(**kwargs):
        kwargs_seen.append(kwargs)
        return MemoryRateLimiter("private", rate_per_second=100.0)

    @rate_limited(kw_factory)
    async def other(a, b=2):
        return a + b

    assert await other(1) == 3
    assert kwargs_seen == [{"a": 1, "b": 2}]


async def test_rate_limited_holds_and_releases_slot(store, name):
    ratesync.configure_limiter(name, store, max_concurrent=1, timeout=0)
    gate = asyncio.Event()

    @rate_limited(name)
    async def hold():
        await gate.wait()

    task = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    with pytest.raises(RateLimiterAcquisitionError):
        await hold()
    gate.set()
    await task
    await hold()  # released after the first one ended


async def test_rate_limited_validation_and_unconfigured(caplog):
    with pytest.raises(ValueError):
        rate_limited("x", mode="bogus")
    with pytest.raises(ValueError):
        rate_limited("x", mode="try")
    with pytest.raises(TypeError):
        rate_limited("x")(lambda: None)

    @rate_limited("never-configured-limiter")
    async def free():
        return 1

    with caplog.at_level(logging.WARNING):
        assert await free() == 1
    assert "not configured" in caplog.text


def test_rate_limited_keeps_signature():
    import inspect

    @rate_limited("x")
    async def f(a: int, b: str = "z") -> int:
        return a

    assert list(inspect.signature(f).parameters) == ["a", "b"]
    assert inspect.iscoroutinefunction(f) and f.__name__ == "f"


# --- check_multi_limiters: all or nothing --------------------------------------------


async def test_check_multi_denied_consumes_nothing(store, name):
    ratesync.configure_limiter(f"{name}-a", store, rate_per_second=0.001, burst=3)
    ratesync.configure_limiter(f"{name}-b", store, rate_per_second=0.001, burst=1)
    await ratesync.acquire(f"{name}-b")  # b is exhausted
    for _ in range(5):
        result = await ratesync.check_multi_limiters([f"{name}-a", f"{name}-b"])
        assert isinstance(result, MultiLimiterResult)
        assert not result.allowed
        assert result.blocking_limiter_id == f"{name}-b"
        assert result.remaining == 0 and result.retry_after >= 1
        assert [r.limiter_id for r in result.results] == [f"{name}-a", f"{name}-b"]
    # a was never consumed (rate-sync consumed one per call)
    state = await ratesync.get_limiter(f"{name}-a").get_state()
    assert state.remaining == 3


async def test_check_multi_allowed_consumes_one_each(store, name):
    ratesync.configure_limiter(f"{name}-a", store, rate_per_second=0.001, burst=3)
    ratesync.configure_limiter(f"{name}-b", store, rate_per_second=0.001, burst=2)
    ok = await ratesync.check_multi_limiters([f"{name}-a", f"{name}-b"])
    assert ok.allowed and ok.blocking_limiter_id is None
    assert ok.remaining == 1 and ok.limit == 2  # most restrictive: b
    peek = await ratesync.check_multi_limiters([f"{name}-a", f"{name}-b"], acquire_if_allowed=False)
    assert peek.allowed and [r.remaining for r in peek.results] == [2, 1]
    assert (await ratesync.check_multi_limiters([f"{name}-a", f"{name}-b"])).allowed
    denied = await ratesync.check_multi_limiters([f"{name}-a", f"{name}-b"])
    assert not denied.allowed and denied.blocking_limiter_id == f"{name}-b"
    assert (await ratesync.get_limiter(f"{name}-a").get_state()).remaining == 1


async def test_check_multi_skips_unknown_and_empty(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, burst=1)
    result = await ratesync.check_multi_limiters([name, "no-such-limiter"])
    assert result.allowed and len(result.results) == 2
    empty = await ratesync.check_multi_limiters([])
    assert empty.allowed and (empty.limit, empty.remaining, empty.reset_in) == (1000, 999, 60.0)


async def test_check_multi_releases_concurrency_slots(store, name):
    ratesync.configure_limiter(name, store, max_concurrent=1)
    for _ in range(3):
        assert (await ratesync.check_multi_limiters([name])).allowed


# --- CompositeRateLimiter ------------------------------------------------------------


async def test_composite_denied_consumes_nothing(store, name):
    ratesync.configure_limiter(
        f"{name}-ip", store, algorithm="sliding_window", limit=5, window_seconds=60
    )
    ratesync.configure_limiter(
        f"{name}-email", store, algorithm="sliding_window", limit=1, window_seconds=60
    )
    composite = CompositeRateLimiter({"by_ip": f"{name}-ip", "by_email": f"{name}-email"})
    ids = {"by_ip": "1.2.3.4", "by_email": "1.2.3.4:abc"}
    first = await composite.check(ids)
    assert first.allowed and first.triggered_by is None
    assert first.results["by_email"].remaining == 0
    assert first.most_restrictive is first.results["by_email"]
    for _ in range(3):
        denied = await composite.check(ids)
        assert not denied.allowed and denied.triggered_by == "by_email"
    # Each limiter decides on the key of its identifier (no clone per identifier).
    ip = await ratesync.get_limiter(f"{name}-ip").get_state(key="1.2.3.4")
    assert ip.remaining == 4  # only the admitted check consumed
    other = await composite.check({"by_ip": "5.6.7.8", "by_email": "5.6.7.8:abc"})
    assert other.allowed, "another user's group has its own state"
    with pytest.raises(ValueError):
        await composite.check({"by_ip": "x"})
    with pytest.raises(ValueError):
        CompositeRateLimiter({})


async def test_composite_strategies(store, name):
    ratesync.configure_limiter(f"{name}-a", store, rate_per_second=0.001, burst=1)
    ratesync.configure_limiter(f"{name}-b", store, rate_per_second=0.001, burst=2)
    ids = {"a": "k", "b": "k"}
    anyp = CompositeRateLimiter({"a": f"{name}-a", "b": f"{name}-b"}, strategy="any_must_pass")
    assert (await anyp.check(ids)).allowed  # takes from a and b
    second = await anyp.check(ids)  # a denies, b allows: allowed, b consumed
    assert second.allowed and not second.results["a"].allowed
    third = await anyp.check(ids)
    assert not third.allowed and third.triggered_by == "all"
    allp = CompositeRateLimiter({"a": f"{name}-a", "b": f"{name}-b"}, strategy="all_must_pass")
    result = await allp.check(ids)
    assert not result.allowed and result.triggered_by == "a"
    assert result.most_restrictive is result.results["a"]


# --- get_limiter metrics and engine classes ------------------------------------------


async def test_get_limiter_methods_and_metrics(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=50.0, burst=1, max_concurrent=2)
    limiter = ratesync.get_limiter(name)
    await limiter.acquire()
    await limiter.acquire(timeout=1.0)  # waits ~20 ms for the next token
    m = ratesync.get_limiter(name).get_metrics()  # shared by every object of the id
    assert m.total_acquisitions == 2 and m.current_concurrent == 2
    assert m.max_wait_time_ms > 5 and m.avg_wait_time_ms == m.total_wait_time_ms / 2
    assert not await limiter.try_acquire(timeout=0)
    assert m.timeouts == 1
    await limiter.release()
    await limiter.release()
    await limiter.release()  # no-op
    assert m.current_concurrent == 0 and m.total_releases == 2
    await asyncio.sleep(0.03)
    async with limiter.acquire_context(timeout=1.0):
        assert m.current_concurrent == 1
    assert m.current_concurrent == 0 and m.total_acquisitions == 3


@pytest.mark.parametrize("use_sliding", [False, True])
async def test_memory_rate_limiter_class(use_sliding):
    if use_sliding:
        limiter = MemoryRateLimiter("cls-sw", limit=2, window_seconds=60, default_timeout=0.05)
    else:
        limiter = MemoryRateLimiter("cls-tb", rate_per_second=0.001, default_timeout=0.05)
    assert not limiter.is_initialized
    await limiter.initialize()
    assert limiter.is_initialized
    cfg = limiter.get_config()
    assert cfg.algorithm == ("sliding_window" if use_sliding else "token_bucket")
    assert cfg.timeout == 0.05 and limiter.default_timeout == 0.05
    n = 2 if use_sliding else 1
    for _ in range(n):
        await limiter.acquire()
    state = await limiter.get_state()
    assert not state.allowed and state.remaining == 0 and state.current_usage == n
    with pytest.raises(RateLimiterAcquisitionError):
        await limiter.acquire()
    assert not await limiter.try_acquire(timeout=0)
    metrics = limiter.get_metrics()
    assert metrics.total_acquisitions == n and metrics.timeouts == 2
    await limiter.reset()
    assert await limiter.try_acquire(timeout=0)
    # private: another instance with the same id has its own state, and nothing is
    # added to the shared configuration
    other = MemoryRateLimiter("cls-tb", rate_per_second=0.001)
    await other.initialize()
    assert await other.try_acquire()
    assert "cls-tb" not in ratesync.list_limiters()


async def test_memory_rate_limiter_concurrency_and_context():
    limiter = MemoryRateLimiter("cls-conc", rate_per_second=1000.0, max_concurrent=1)
    await limiter.initialize()
    async with limiter.acquire_context(timeout=0.01):
        assert limiter.get_metrics().current_concurrent == 1
        with pytest.raises(RateLimiterAcquisitionError):
            async with limiter.acquire_context(timeout=0.01):
                pass
    assert await limiter.try_acquire()
    assert not await limiter.try_acquire(timeout=0.01)
    await limiter.release()
    assert await limiter.try_acquire()
    await limiter.release()
    assert limiter.get_metrics().total_releases == 3


def test_memory_rate_limiter_rejects_bad_settings():
    with pytest.raises(ratesync.ConfigValidationError):
        MemoryRateLimiter("bad", rate_per_second=-1.0)


async def test_engine_classes_import_from_rate_sync_paths():
    from ratesync.engines.memory import MemoryRateLimiter as M
    from ratesync.engines.nats import NatsRateLimiter  # noqa: F401
    from ratesync.engines.postgres import PostgresRateLimiter  # noqa: F401
    from ratesync.engines.redis import RedisRateLimiter  # noqa: F401

    assert M is MemoryRateLimiter

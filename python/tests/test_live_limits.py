"""Live limits (``docs/design.md#shadow-mode``): a limiter in shadow mode decides
every call but refuses none, and says which it would have refused."""

import pytest

import ratesync
from ratesync.contrib.fastapi import get_rate_limit_headers


async def test_a_shadow_limiter_admits_everything_and_counts_what_it_would_refuse(store, name):
    ratesync.configure_limiter(
        name, store_id=store, algorithm="sliding_window", limit=3, window_seconds=600, shadow=True
    )
    admitted = [await ratesync.get_limiter(name).try_acquire() for _ in range(6)]
    assert admitted == [True] * 6
    metrics = ratesync.get_limiter(name).get_metrics()
    assert (metrics.total_acquisitions, metrics.shadow_denied, metrics.timeouts) == (6, 3, 0)
    assert ratesync.get_limiter(name).get_config().shadow is True
    # The state is what enforcing would have left: 3 taken, not 6.
    state = await ratesync.get_limiter(name).get_state()
    assert state.current_usage == 3


async def test_shadow_results_are_admitted_and_tell_what_enforcing_would_say(store, name):
    ratesync.configure_limiter(name, store_id=store, rate_per_second=1.0, shadow=True)
    first = await ratesync.check_limiter(name)
    second = await ratesync.check_limiter(name)
    assert first.allowed and second.allowed
    headers = get_rate_limit_headers(second)
    assert "Retry-After" not in headers, "no refusal to explain"
    assert ratesync.get_limiter(name).get_metrics().shadow_denied == 1


def test_the_sync_api_counts_shadow_admissions(store, name):
    ratesync.configure_limiter(name, store_id=store, max_concurrent=1, shadow=True)
    held = ratesync.sync.try_acquire(name)
    second = ratesync.sync.try_acquire(name)
    assert held is not None and second is not None
    assert held.holds_slot and not second.holds_slot
    assert second.decision.shadow_denied_by == "concurrency"
    assert ratesync.get_limiter(name).get_metrics().shadow_denied == 1
    held.release()


def test_shadow_must_be_a_boolean(store, name):
    with pytest.raises(ratesync.ConfigValidationError, match="shadow"):
        ratesync.configure_limiter(name, store_id=store, rate_per_second=1.0, shadow="yes")


async def test_an_override_gives_its_keys_their_own_limit(store, name):
    ratesync.configure_limiter(
        name,
        store_id=store,
        rate_per_second=0.01,
        burst=2,
        overrides=[{"keys": ["vip"], "burst": 10}],
    )
    limiter = ratesync.get_limiter(name)
    vip = [await limiter.try_acquire(key="vip") for _ in range(11)]
    other = [await limiter.try_acquire(key="someone") for _ in range(3)]
    assert vip == [True] * 10 + [False]
    assert other == [True, True, False]
    result = await ratesync.check_limiter(name, key="vip")
    assert (result.allowed, result.limit) == (False, 18), "its own quota: 18 per 1800 s"
    assert ratesync.list_limiters()[name]["overrides"] == [
        {
            "keys": ["vip"],
            "rate_per_second": 0.01,
            "burst": 10,
            "limit": None,
            "window_seconds": None,
            "precision": None,
            "period": None,
            "utc_offset": None,
            "max_concurrent": None,
        }
    ]


def test_an_invalid_override_names_itself(store, name):
    with pytest.raises(ratesync.ConfigValidationError, match=r"overrides\[0\]"):
        ratesync.configure_limiter(
            name, store_id=store, rate_per_second=1.0, overrides=[{"burst": 10}]
        )

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


# --- Hot reload (docs/design.md#hot-reload) --------------------------------------------

_STORE = '[stores.live]\nengine = "memory"\n\n'


def _window(name: str, limit: int, **extra: object) -> str:
    lines = [
        f"[limiters.{name}]",
        'store = "live"',
        'algorithm = "sliding_window"',
        f"limit = {limit}",
        "window_seconds = 600",
    ]
    lines += [f"{key} = {str(value).lower()}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def _save(path, text: str) -> None:
    """As editors save: a new file renamed over the old one."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)


async def _until(condition, what: str, within: float = 5.0) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not applied within {within} s: {what}"
        await asyncio.sleep(0.02)


async def test_a_followed_file_applies_edits_keeps_state_and_refuses_broken_ones(
    tmp_path, caplog
):
    import asyncio
    import logging

    api, vip, trial = (f"api{id(tmp_path)}", f"vip{id(tmp_path)}", f"trial{id(tmp_path)}")
    path = tmp_path / "rate-sync.toml"
    path.write_text(_STORE + _window(api, 5))
    ratesync.load_config(path, watch=True)
    limiter = ratesync.get_limiter(api)
    assert [await limiter.try_acquire(key="k") for _ in range(6)] == [True] * 5 + [False]

    _save(path, _STORE + _window(api, 8))
    await _until(lambda: ratesync.get_limiter(api).limit == 8, "limit 8")
    again = [await ratesync.get_limiter(api).try_acquire(key="k") for _ in range(4)]
    assert again == [True, True, True, False], "the same key gets exactly 3 more"

    with caplog.at_level(logging.ERROR, logger="ratesync"):
        _save(path, _STORE + f'[limiters.{api}]\nstore = "live"\nlimit = "eight"\n')
        refusals = lambda: [r for r in caplog.records if "reload refused" in r.getMessage()]
        await _until(lambda: refusals(), "the broken edit logged")
        await asyncio.sleep(1.0)
        assert len(refusals()) == 1, "logged once, not at every read of the file"
    assert ratesync.get_limiter(api).limit == 8, "the running limits stay"
    fresh = [await ratesync.get_limiter(api).try_acquire(key="new") for _ in range(9)]
    assert fresh == [True] * 8 + [False]

    # An override, and a limiter in shadow mode, added by an edit.
    bucket = (
        f'[limiters.{vip}]\nstore = "live"\nrate_per_second = 0.001\nburst = 2\n'
        f'[[limiters.{vip}.overrides]]\nkeys = ["vip"]\nburst = 10\n'
    )
    _save(path, _STORE + _window(api, 8) + bucket + _window(trial, 3, shadow=True))
    await _until(lambda: trial in ratesync.list_limiters(), "two limiters added")
    vips = ratesync.get_limiter(vip)
    assert sum([await vips.try_acquire(key="vip") for _ in range(11)]) == 10
    assert sum([await vips.try_acquire(key="other") for _ in range(3)]) == 2
    shadowed = ratesync.get_limiter(trial)
    assert [await shadowed.try_acquire(key="k") for _ in range(6)] == [True] * 6
    assert shadowed.get_metrics().shadow_denied == 3

    # Removed from the file: not configured any more.
    _save(path, _STORE + _window(api, 8))
    await _until(lambda: trial not in ratesync.list_limiters(), "trial removed")
    with pytest.raises(ratesync.LimiterNotFoundError):
        await ratesync.acquire(trial)
    await asyncio.sleep(0)


async def test_a_resolver_gives_keys_their_rule(store, name):
    asked: list[str] = []

    def plans(key: str):
        asked.append(key)
        if key.startswith("gold:"):
            return {"burst": 10}
        if key == "broken":
            return {"limit": 3}  # not a token-bucket field: the limiter's rule applies
        if key == "raises":
            raise RuntimeError("the plans database is down")
        return None

    ratesync.configure_limiter(name, store_id=store, rate_per_second=0.001, burst=2)
    ratesync.set_resolver(name, plans, cache_size=100)
    limiter = ratesync.get_limiter(name)
    assert sum([await limiter.try_acquire(key="gold:acme") for _ in range(11)]) == 10
    assert sum([await limiter.try_acquire(key="someone") for _ in range(3)]) == 2
    assert sum([await limiter.try_acquire(key="broken") for _ in range(3)]) == 2
    assert sum([await limiter.try_acquire(key="raises") for _ in range(3)]) == 2
    assert sorted(set(asked)) == ["broken", "gold:acme", "raises", "someone"]
    assert len(asked) == 4, "each key asked once while cached"

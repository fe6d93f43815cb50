"""ratesync.testing and the identity of get_limiter objects."""

import pytest

import ratesync
from ratesync.testing import reset_all_limiters, reset_backend_store, reset_limiter


async def exhaust(name: str) -> None:
    await ratesync.acquire(name)
    with pytest.raises(ratesync.RateLimiterAcquisitionError):
        await ratesync.acquire(name)


async def test_reset_limiter_gives_a_fresh_limit(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, timeout=0)
    await exhaust(name)
    await reset_limiter(name)
    await ratesync.acquire(name)
    await reset_limiter(ratesync.get_limiter(name))
    await ratesync.acquire(name)


async def test_reset_limiter_can_reset_one_key(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=0.001, timeout=0)
    for key in ("a", "b"):
        await ratesync.acquire(name, key=key)
    await reset_limiter(name, key="a")
    await ratesync.acquire(name, key="a")
    with pytest.raises(ratesync.RateLimiterAcquisitionError):
        await ratesync.acquire(name, key="b")


async def test_reset_all_limiters_resets_clones_too(tmp_path, name, monkeypatch):
    config = tmp_path / "rate-sync.toml"
    config.write_text(
        f'[stores.m]\nengine = "memory"\n\n'
        f'[limiters.{name}]\nstore = "m"\nrate_per_second = 0.001\ntimeout = 0\n'
    )
    ratesync.load_config(config)
    # Only this test's limiters: the registry is process-wide, a file adds to it (as
    # in rate-sync), and other tests leave stores behind whose servers they stopped.
    every = ratesync.testing._native.list_limiters
    monkeypatch.setattr(
        ratesync.testing._native,
        "list_limiters",
        lambda: {k: v for k, v in every().items() if k.startswith(name)},
    )
    clone = await ratesync.get_or_clone_limiter(name, "tenant")
    await exhaust(name)
    await exhaust(clone.group_id)
    await reset_all_limiters()
    await ratesync.acquire(name)
    await ratesync.acquire(clone.group_id)


async def test_reset_backend_store_touches_only_that_store(name):
    ratesync.configure_store(f"{name}-a", "memory")
    ratesync.configure_store(f"{name}-b", "memory")
    ratesync.configure_limiter(f"{name}-on-a", f"{name}-a", rate_per_second=0.001, timeout=0)
    ratesync.configure_limiter(f"{name}-on-b", f"{name}-b", rate_per_second=0.001, timeout=0)
    await exhaust(f"{name}-on-a")
    await exhaust(f"{name}-on-b")
    await reset_backend_store(f"{name}-a")
    await ratesync.acquire(f"{name}-on-a")
    with pytest.raises(ratesync.RateLimiterAcquisitionError):
        await ratesync.acquire(f"{name}-on-b")
    with pytest.raises(ratesync.StoreNotFoundError):
        await reset_backend_store(f"{name}-missing")


def test_get_limiter_hands_out_one_object_per_id(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=1.0)
    assert ratesync.get_limiter(name) is ratesync.get_limiter(name)


def test_redefining_a_limiter_gives_a_new_object_with_the_new_settings(store, name):
    ratesync.configure_limiter(name, store, rate_per_second=1.0)
    before = ratesync.get_limiter(name)
    ratesync.configure_limiter(name, store, rate_per_second=5.0)
    after = ratesync.get_limiter(name)
    assert after is not before
    assert after.rate_per_second == 5.0


async def test_reset_all_limiters_names_the_limiters_it_could_not_reset(tmp_path, name):
    config = tmp_path / "rate-sync.toml"
    config.write_text(
        '[stores.m]\nengine = "memory"\n\n'
        '[stores.down]\nengine = "redis"\nurl = "redis://127.0.0.1:1/0"\n'
        "socket_timeout = 0.2\n\n"
        f'[limiters.{name}]\nstore = "m"\nrate_per_second = 0.001\ntimeout = 0\n\n'
        f'[limiters.{name}-down]\nstore = "down"\nrate_per_second = 1.0\nfail_closed = true\n'
    )
    ratesync.load_config(config)
    await exhaust(name)
    with pytest.raises(ratesync.RateLimiterError, match=f"{name}-down"):
        await reset_all_limiters()
    await ratesync.acquire(name)  # the reachable one was reset all the same

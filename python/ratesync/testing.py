"""Helpers for the tests of applications that use ratesync (rate-sync's names).

    import pytest
    from ratesync.testing import reset_all_limiters

    @pytest.fixture(autouse=True)
    async def fresh_limits():
        await reset_all_limiters()
        yield

Resets go to the store itself, so they work on every engine, and on shared stores
they affect every process using the limiter: point tests at a store of their own.
"""

from __future__ import annotations

import logging

from ratesync import _native
from ratesync._api import RateLimiter, get_limiter
from ratesync.exceptions import RateLimiterError, StoreNotFoundError

logger = logging.getLogger(__name__)


async def reset_limiter(limiter: RateLimiter | str, *, key: str | None = None) -> None:
    """Forgets the state of one limiter (a ``RateLimiter`` or its id): every key,
    or only ``key``."""
    if isinstance(limiter, str):
        limiter = get_limiter(limiter)
    await limiter.reset(key=key)


async def reset_all_limiters() -> None:
    """Forgets the state of every configured limiter (clones included).

    Every limiter is tried; if some could not be reset (their store is down), a
    ``RateLimiterError`` names them afterwards, so no test runs on stale state
    unknowingly."""
    await _reset_each(list(_native.list_limiters()))


async def reset_backend_store(store_id: str) -> None:
    """Forgets the state of every limiter on store ``store_id``.

    Unlike rate-sync, which deleted every key under the store's prefix (including
    other applications' limiters sharing it), this resets exactly the limiters this
    process has configured on that store. ``StoreNotFoundError`` when the store is
    not configured."""
    if store_id not in _native.list_stores():
        raise StoreNotFoundError(store_id)
    await _reset_each(
        [
            limiter_id
            for limiter_id, settings in _native.list_limiters().items()
            if settings["store_id"] == store_id
        ]
    )


async def _reset_each(limiter_ids: list[str]) -> None:
    failed: list[str] = []
    for limiter_id in limiter_ids:
        try:
            await reset_limiter(limiter_id)
        except RateLimiterError as error:
            logger.warning("ratesync: could not reset limiter %r: %s", limiter_id, error)
            failed.append(f"{limiter_id!r} ({error})")
    if failed:
        raise RateLimiterError("could not reset " + "; ".join(failed))


__all__ = ["reset_all_limiters", "reset_backend_store", "reset_limiter"]

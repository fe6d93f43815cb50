"""The module-level API of rate-sync 0.4.2: configuration, ``acquire``, checks.

Every decision is the core's: memory limiters decide synchronously in the calling
thread; network limiters run on the extension's runtime and are awaited as asyncio
futures, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from ratesync import _native
from ratesync._native import Permit
from ratesync.exceptions import RateLimiterAcquisitionError, StoreUnavailableError
from ratesync.schemas import LimiterReadOnlyConfig, LimiterState, RateLimitResult


def configure_store(store_id: str, strategy: str, **kwargs: Any) -> None:
    """Adds (or redefines) a store, validated as ``[stores.<id>]`` of a file.

    Redefining it with the same settings keeps its state."""
    _native.configure_store(store_id, strategy, kwargs)


def configure_limiter(
    limiter_id: str,
    store_id: str,
    rate_per_second: float | None = None,
    max_concurrent: int | None = None,
    timeout: float | None = None,
    algorithm: str = "token_bucket",
    limit: int | None = None,
    window_seconds: float | None = None,
    fail_closed: bool = False,
    burst: int | None = None,
    lease_ttl: float | None = None,
) -> None:
    """Adds (or redefines) a limiter, validated as ``[limiters.<id>]`` of a file."""
    options: dict[str, Any] = {"store": store_id, "algorithm": algorithm}
    for name, value in (
        ("rate_per_second", rate_per_second),
        ("burst", burst),
        ("max_concurrent", max_concurrent),
        ("limit", limit),
        ("window_seconds", window_seconds),
        ("timeout", timeout),
        ("lease_ttl", lease_ttl),
    ):
        if value is not None:
            options[name] = value
    options["fail_closed"] = fail_closed
    _native.configure_limiter(limiter_id, options)


def load_config(path: str | os.PathLike[str] | None = None) -> None:
    """Loads ``path`` (or the discovered file), replacing the whole configuration.

    All or nothing: an invalid file raises ``ConfigValidationError`` and changes nothing."""
    _native.load_config(None if path is None else os.fspath(path))


def list_stores() -> dict[str, dict[str, Any]]:
    """Every store and its settings; passwords, tokens and URL credentials masked."""
    return _native.list_stores()


def list_limiters() -> dict[str, dict[str, Any]]:
    """Every limiter and its settings."""
    return _native.list_limiters()


async def _acquire(limiter_id: str, timeout: float | None, key: str, cost: int) -> Permit:
    permit = _native.attempt_local(limiter_id, key, cost)
    if permit is not None:
        return permit
    loop = asyncio.get_running_loop()
    return await _native.acquire_async(loop, limiter_id, key, cost, timeout)


async def _attempt(limiter_id: str, key: str, cost: int) -> Permit | None:
    if _native.is_local(limiter_id):
        return _native.attempt_local(limiter_id, key, cost)
    return await _native.attempt_async(asyncio.get_running_loop(), limiter_id, key, cost)


async def _state(limiter_id: str, key: str, cost: int) -> _native.Decision:
    if _native.is_local(limiter_id):
        return _native.state_blocking(limiter_id, key, cost)
    return await _native.state_async(asyncio.get_running_loop(), limiter_id, key, cost)


class AcquireContext:
    """What ``acquire`` returns: ``await`` it for a ``Permit``, or use it as
    ``async with`` to hold the permit (and its concurrency slot) for the block."""

    __slots__ = ("_limiter_id", "_timeout", "_key", "_cost", "_permit")

    def __init__(self, limiter_id: str, timeout: float | None, key: str, cost: int) -> None:
        self._limiter_id = limiter_id
        self._timeout = timeout
        self._key = key
        self._cost = cost
        self._permit: Permit | None = None

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._hold().__await__()

    async def _hold(self) -> Permit:
        permit = await _acquire(self._limiter_id, self._timeout, self._key, self._cost)
        if permit.holds_slot:
            # Like rate-sync: the slot stays taken until `get_limiter(id).release()`.
            _HELD.setdefault(self._limiter_id, []).append(permit)
        return permit

    async def __aenter__(self) -> Permit:
        self._permit = await _acquire(self._limiter_id, self._timeout, self._key, self._cost)
        return self._permit

    async def __aexit__(self, *exc: object) -> None:
        if self._permit is not None:
            self._permit.release()
            self._permit = None


# Permits taken by a bare `await acquire(...)` on concurrency limiters, released by
# `RateLimiter.release()` (rate-sync's manual pattern).
_HELD: dict[str, list[Permit]] = {}


def _forget_held_in_child() -> None:
    _HELD.clear()


def acquire(
    limiter_id: str, timeout: float | None = None, *, key: str | None = None, cost: int = 1
) -> AcquireContext:
    """Waits for a slot of ``limiter_id`` (``timeout`` seconds; ``None`` = the
    limiter's own). Raises ``RateLimiterAcquisitionError`` on timeout."""
    return AcquireContext(limiter_id, timeout, key or "", cost)


async def check_limiter(
    limiter_id: str,
    acquire_if_allowed: bool = True,
    timeout: float = 0,
    *,
    key: str | None = None,
    cost: int = 1,
) -> RateLimitResult:
    """Checks a limiter. With ``acquire_if_allowed=False`` it is a peek: nothing is
    consumed (rate-sync consumed a token there)."""
    key = key or ""
    if not acquire_if_allowed:
        d = await _state(limiter_id, key, cost)
        return _result(limiter_id, d)
    try:
        if timeout and timeout > 0:
            permit: Permit | None = await _acquire(limiter_id, timeout, key, cost)
        else:
            permit = await _attempt(limiter_id, key, cost)
    except StoreUnavailableError:
        raise
    except RateLimiterAcquisitionError:
        permit = None
    if permit is None:
        return _result(limiter_id, await _state(limiter_id, key, cost))
    permit.release()
    return _result(limiter_id, permit.decision)


def _result(limiter_id: str, d: _native.Decision) -> RateLimitResult:
    reset_in = d.reset_after if d.allowed else d.retry_after
    return RateLimitResult(
        allowed=d.allowed,
        limit=d.limit,
        remaining=d.remaining,
        reset_in=reset_in,
        limiter_id=limiter_id,
    )


class RateLimiter:
    """A configured limiter (``get_limiter``), with rate-sync's limiter methods."""

    def __init__(self, limiter_id: str) -> None:
        self._id = limiter_id
        self._config = _native.limiter_config(limiter_id)

    @property
    def group_id(self) -> str:
        return self._id

    @property
    def rate_per_second(self) -> float | None:
        return self._config["rate_per_second"]

    @property
    def max_concurrent(self) -> int | None:
        return self._config["max_concurrent"]

    @property
    def default_timeout(self) -> float | None:
        return self._config["timeout"]

    @property
    def fail_closed(self) -> bool:
        return self._config["fail_closed"]

    @property
    def is_initialized(self) -> bool:
        return True

    async def initialize(self) -> None:
        """Nothing to do: stores connect on first use."""

    async def acquire(
        self, timeout: float | None = None, *, key: str | None = None, cost: int = 1
    ) -> Permit:
        return await acquire(self._id, timeout, key=key, cost=cost)

    async def try_acquire(
        self, timeout: float = 0, *, key: str | None = None, cost: int = 1
    ) -> bool:
        try:
            if timeout and timeout > 0:
                await acquire(self._id, timeout, key=key, cost=cost)
                return True
            permit = await _attempt(self._id, key or "", cost)
        except StoreUnavailableError:
            raise
        except RateLimiterAcquisitionError:
            return False
        if permit is not None and permit.holds_slot:
            _HELD.setdefault(self._id, []).append(permit)
        return permit is not None

    async def release(self) -> None:
        """Releases one slot taken by ``acquire``/``try_acquire`` (no-op if none)."""
        held = _HELD.get(self._id)
        if held:
            held.pop().release()

    def acquire_context(
        self, *, timeout: float | None = None, key: str | None = None, cost: int = 1
    ) -> AcquireContext:
        return AcquireContext(self._id, timeout, key or "", cost)

    async def get_state(self, *, key: str | None = None) -> LimiterState:
        d = await _state(self._id, key or "", 1)
        return LimiterState(
            allowed=d.allowed,
            remaining=d.remaining,
            reset_at=int(time.time() + d.reset_after),
            current_usage=d.limit - d.remaining,
        )

    def get_config(self) -> LimiterReadOnlyConfig:
        c = self._config
        return LimiterReadOnlyConfig(
            id=self._id,
            algorithm=c["algorithm"],
            store_id=c["store_id"],
            rate_per_second=c["rate_per_second"],
            max_concurrent=c["max_concurrent"],
            timeout=c["timeout"],
            limit=c["limit"],
            window_seconds=c["window_seconds"],
            fail_closed=c["fail_closed"],
            burst=c["burst"],
        )


def get_limiter(limiter_id: str) -> RateLimiter:
    """The limiter ``limiter_id``; ``LimiterNotFoundError`` if not configured."""
    return RateLimiter(limiter_id)


os.register_at_fork(after_in_child=_forget_held_in_child)

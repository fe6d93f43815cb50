"""The module-level API of rate-sync 0.4.2: configuration, ``acquire``, checks.

Every decision is the core's: memory limiters decide synchronously in the calling
thread; network limiters run on the extension's runtime and are awaited as asyncio
futures, so the event loop never blocks.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ratesync import _bridge, _native
from ratesync._native import Permit
from ratesync.exceptions import (
    LimiterNotFoundError,
    RateLimiterAcquisitionError,
    StoreUnavailableError,
)
from ratesync.schemas import (
    LimiterReadOnlyConfig,
    LimiterState,
    MultiLimiterResult,
    RateLimiterMetrics,
    RateLimitResult,
)


def configure_store(store_id: str, strategy: str, **kwargs: Any) -> None:
    """Adds (or redefines) a store, validated as ``[stores.<id>]`` of a file.

    Redefining it with the same settings keeps its state."""
    _native.configure_store(store_id, strategy, kwargs)
    _INSTANCES.clear()  # a limiter's engine may have changed with its store


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
    _INSTANCES.pop(limiter_id, None)


def load_config(path: str | os.PathLike[str] | None = None) -> None:
    """Loads ``path`` (or the discovered file), replacing the whole configuration.

    All or nothing: an invalid file raises ``ConfigValidationError`` and changes nothing."""
    _native.load_config(None if path is None else os.fspath(path))
    _INSTANCES.clear()


def list_stores() -> dict[str, dict[str, Any]]:
    """Every store and its settings; passwords, tokens and URL credentials masked."""
    return _native.list_stores()


def list_limiters() -> dict[str, dict[str, Any]]:
    """Every limiter and its settings."""
    return _native.list_limiters()


def _is_local(limiter_id: str) -> bool:
    """Whether the limiter decides in this process (memory engine), from its cached
    ``get_limiter`` object: one dictionary lookup, no call into the extension."""
    return get_limiter(limiter_id)._local


async def _acquire(limiter_id: str, timeout: float | None, key: str, cost: int) -> Permit:
    if _is_local(limiter_id):
        permit = _native.attempt_local(limiter_id, key, cost)
        if permit is not None:
            return permit
    return await _native.acquire_async(_bridge.current(), limiter_id, key, cost, timeout)


async def _attempt(limiter_id: str, key: str, cost: int) -> Permit | None:
    if _is_local(limiter_id):
        return _native.attempt_local(limiter_id, key, cost)
    return await _native.attempt_async(_bridge.current(), limiter_id, key, cost)


async def _state(limiter_id: str, key: str, cost: int) -> _native.Decision:
    if _is_local(limiter_id):
        return _native.state_blocking(limiter_id, key, cost)
    return await _native.state_async(_bridge.current(), limiter_id, key, cost)


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
        permit, self._permit = self._permit, None
        if permit is not None:
            await release_permit(permit)


async def release_permit(permit: Permit) -> None:
    """Gives back a permit's slot and waits until its store has it back (nothing to
    wait for without a slot or on the memory engine)."""
    releasing = permit.release_async(_bridge.current())
    if releasing is not None:
        await releasing


# Permits taken by a bare `await acquire(...)` on concurrency limiters, released by
# `RateLimiter.release()` (rate-sync's manual pattern).
_HELD: dict[str, list[Permit]] = {}


def _forget_held_in_child() -> None:
    for held in _HELD.values():
        held.clear()


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


def _result(limiter_id: str, d: _native.Decision, force_denied: bool = False) -> RateLimitResult:
    allowed = d.allowed and not force_denied
    reset_in = d.reset_after if allowed else max(d.retry_after, 0.0)
    return RateLimitResult(
        allowed=allowed,
        limit=d.limit,
        remaining=d.remaining,
        reset_in=reset_in,
        limiter_id=limiter_id,
    )


class RateLimiter:
    """A configured limiter (``get_limiter``), with rate-sync's limiter methods.

    ``acquire``/``try_acquire`` on a limiter with ``max_concurrent`` keep the slot
    until ``release()`` (rate-sync's manual pattern); ``acquire_context`` releases it
    at the end of the block. ``get_metrics`` counts what went through this object's
    methods (shared by every ``get_limiter`` object of the same id)."""

    _target: Any  # the limiter's name, or a private `_native.LimiterHandle`

    def __init__(self, limiter_id: str) -> None:
        self._id = limiter_id
        self._target = limiter_id
        self._config = _native.limiter_config(limiter_id)
        self._local = _native.is_local(limiter_id)
        self._initialized = True
        self._metrics = _METRICS.setdefault(limiter_id, RateLimiterMetrics())
        self._held = _HELD.setdefault(limiter_id, [])

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
    def algorithm(self) -> str:
        return self._config["algorithm"]

    @property
    def is_initialized(self) -> bool:
        return self._initialized

    async def initialize(self) -> None:
        """Nothing to connect: stores connect on first use."""
        self._initialized = True

    async def _take(self, timeout: float | None, key: str, cost: int) -> Permit:
        """Waits for a permit (``timeout`` None = the limiter's own), counting it."""
        metrics = self._metrics
        permit = _native.attempt_local(self._target, key, cost) if self._local else None
        if permit is None:
            start = time.perf_counter()
            try:
                permit = await _native.acquire_async(
                    _bridge.current(), self._target, key, cost, timeout
                )
            except StoreUnavailableError:
                raise
            except RateLimiterAcquisitionError:
                metrics.record_timeout()
                raise
            metrics.record_acquisition((time.perf_counter() - start) * 1000.0)
        else:
            metrics.record_acquisition(0.0)
        if permit.holds_slot:
            metrics.record_concurrent_acquire()
        return permit

    async def _try(self, key: str, cost: int) -> Permit | None:
        """One attempt, never waits; counts a refusal as rate-sync's ``timeouts``."""
        if self._local:
            permit = _native.attempt_local(self._target, key, cost)
        else:
            permit = await _native.attempt_async(
                _bridge.current(), self._target, key, cost
            )
        if permit is None:
            self._metrics.record_timeout()
            return None
        self._metrics.record_acquisition(0.0)
        if permit.holds_slot:
            self._metrics.record_concurrent_acquire()
        return permit

    def _give_back(self, permit: Permit) -> None:
        if permit.holds_slot:
            permit.release()
            self._metrics.record_concurrent_release()

    async def _give_back_awaited(self, permit: Permit) -> None:
        if permit.holds_slot:
            self._metrics.record_concurrent_release()
            await release_permit(permit)

    async def acquire(
        self, timeout: float | None = None, *, key: str | None = None, cost: int = 1
    ) -> Permit:
        """Waits for a slot; ``RateLimiterAcquisitionError`` on timeout. A
        concurrency slot stays taken until ``release()``."""
        permit = await self._take(timeout, key or "", cost)
        if permit.holds_slot:
            self._held.append(permit)
        return permit

    async def try_acquire(
        self, timeout: float = 0, *, key: str | None = None, cost: int = 1
    ) -> bool:
        """``True`` if admitted within ``timeout`` seconds (0: one attempt)."""
        if timeout and timeout > 0:
            try:
                await self.acquire(timeout, key=key, cost=cost)
            except StoreUnavailableError:
                raise
            except RateLimiterAcquisitionError:
                return False
            return True
        permit = await self._try(key or "", cost)
        if permit is None:
            return False
        if permit.holds_slot:
            self._held.append(permit)
        return True

    async def release(self) -> None:
        """Releases one slot taken by ``acquire``/``try_acquire`` (no-op if none)."""
        if self._held:
            self._give_back(self._held.pop())

    def acquire_context(
        self, *, timeout: float | None = None, key: str | None = None, cost: int = 1
    ) -> _LimiterContext:
        """``async with limiter.acquire_context(timeout=...)``: holds the slot for
        the block and releases it after."""
        return _LimiterContext(self, timeout, key or "", cost)

    async def get_state(self, *, key: str | None = None) -> LimiterState:
        """The current state (a peek: nothing consumed)."""
        if self._local:
            d = _native.state_blocking(self._target, key or "", 1)
        else:
            d = await _native.state_async(_bridge.current(), self._target, key or "", 1)
        return LimiterState(
            allowed=d.allowed,
            remaining=d.remaining,
            reset_at=int(time.time() + d.reset_after),
            current_usage=d.limit - d.remaining,
        )

    async def reset(self, *, key: str | None = None) -> None:
        """Forgets the state of ``key`` (or of every key): a fresh limiter."""
        await _native.reset_async(_bridge.current(), self._target, key)

    async def reset_all(self) -> None:
        await self.reset()

    def get_metrics(self) -> RateLimiterMetrics:
        return self._metrics

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._id!r})"


class _LimiterContext:
    __slots__ = ("_limiter", "_timeout", "_key", "_cost", "_permit")

    def __init__(self, limiter: RateLimiter, timeout: float | None, key: str, cost: int) -> None:
        self._limiter = limiter
        self._timeout = timeout
        self._key = key
        self._cost = cost
        self._permit: Permit | None = None

    async def __aenter__(self) -> Permit:
        self._permit = await self._limiter._take(self._timeout, self._key, self._cost)
        return self._permit

    async def __aexit__(self, *exc: object) -> None:
        permit, self._permit = self._permit, None
        if permit is not None:
            await self._limiter._give_back_awaited(permit)


_METRICS: dict[str, RateLimiterMetrics] = {}


# One `RateLimiter` per id, as rate-sync hands out (`get_limiter(a) is get_limiter(a)`);
# dropped when its limiter or any store is redefined, or a file is loaded.
_INSTANCES: dict[str, RateLimiter] = {}


def get_limiter(limiter_id: str) -> RateLimiter:
    """The limiter ``limiter_id``; ``LimiterNotFoundError`` if not configured."""
    limiter = _INSTANCES.get(limiter_id)
    if limiter is None:
        limiter = _INSTANCES[limiter_id] = RateLimiter(limiter_id)
    return limiter


def clone_limiter(
    source_id: str,
    new_id: str,
    *,
    rate_per_second: float | None = None,
    max_concurrent: int | None = None,
    timeout: float | None = None,
    limit: int | None = None,
    window_seconds: float | None = None,
) -> None:
    """Adds limiter ``new_id`` with the settings of ``source_id`` (and the given
    overrides), on the same store (and so the same store client). Its state is its own.

    ``LimiterNotFoundError`` if ``source_id`` does not exist, ``ValueError`` if
    ``new_id`` does."""
    source = _native.limiter_config(source_id)
    if new_id in _native.list_limiters():
        raise ValueError(
            f"Limiter '{new_id}' already exists. Cannot clone to an existing limiter ID."
        )
    options: dict[str, Any] = {
        "store": source["store_id"],
        "algorithm": source["algorithm"],
        "fail_closed": source["fail_closed"],
    }
    for name, override in (
        ("rate_per_second", rate_per_second),
        ("max_concurrent", max_concurrent),
        ("timeout", timeout),
        ("limit", limit),
        ("window_seconds", window_seconds),
    ):
        value = override if override is not None else source[name]
        if value is not None:
            options[name] = value
    # The source's burst goes with its rate; a new rate gets the default burst.
    if rate_per_second is None and source["burst"] is not None:
        options["burst"] = source["burst"]
    if options.get("max_concurrent") is not None:
        options["lease_ttl"] = source["lease_ttl"]
    _native.configure_limiter(new_id, options)


async def get_or_clone_limiter(base_limiter_id: str, unique_id: str) -> RateLimiter:
    """The limiter ``"{base_limiter_id}:{unique_id}"``, cloned from the base on first use."""
    dynamic_id = f"{base_limiter_id}:{unique_id}"
    try:
        return get_limiter(dynamic_id)
    except LimiterNotFoundError:
        pass
    try:
        clone_limiter(base_limiter_id, dynamic_id)
    except ValueError:
        pass  # cloned meanwhile by another task
    return get_limiter(dynamic_id)


async def initialize_limiter(limiter_id: str) -> None:
    """Checks that ``limiter_id`` exists (stores connect on first use)."""
    _native.limiter_config(limiter_id)


async def initialize_all_limiters() -> None:
    """Checks the configuration (raises the error of an invalid discovered file)."""
    _native.list_limiters()


async def check_multi_limiters(
    limiter_ids: list[str],
    acquire_if_allowed: bool = True,
    timeout: float = 0,
) -> MultiLimiterResult:
    """Checks several limiters; allowed only if all allow. All or nothing: when one
    denies, nothing is consumed from any (rate-sync consumed from the others).

    A limiter that is not configured is skipped as allowing (as rate-sync does)."""
    targets: list[tuple[str, Any, bool]] = []
    results: list[RateLimitResult | None] = []
    for limiter_id in limiter_ids:
        try:
            local = _native.is_local(limiter_id)
        except LimiterNotFoundError:
            results.append(
                RateLimitResult(
                    allowed=True, limit=1000, remaining=999, reset_in=60.0, limiter_id=limiter_id
                )
            )
            continue
        targets.append((limiter_id, limiter_id, local))
        results.append(None)
    decided = await _all_or_nothing(targets, acquire_if_allowed, timeout)
    it = iter(decided)
    merged = [r if r is not None else next(it) for r in results]
    return MultiLimiterResult.from_results(merged)


async def _all_or_nothing(
    targets: list[tuple[str, Any, bool]],
    take: bool,
    timeout: float | None,
    keep: list[Permit] | None = None,
) -> list[RateLimitResult]:
    """Peeks every target (label, limiter name or handle, is_local); if all allow and
    ``take``, acquires one unit from each, in order.

    Residual race (documented): another client may consume between the peek and the
    acquisitions. If an acquisition is then refused, the concurrency slots already
    taken are released, but rate units already consumed from the earlier limiters
    cannot be given back (the core has no refund); the result says denied, blocked by
    the limiter that refused.

    With ``keep``, the permits of a success are appended to it instead of released
    (their concurrency slots stay taken until the caller releases them)."""
    bridge = _bridge.current()
    peeks = []
    for _, target, local in targets:
        if local:
            peeks.append(_native.state_blocking(target, "", 1))
        else:
            peeks.append(await _native.state_async(bridge, target, "", 1))
    if not all(d.allowed for d in peeks) or not take:
        return [_result(label, d) for (label, _, _), d in zip(targets, peeks)]
    permits: list[Permit] = []
    for index, (label, target, local) in enumerate(targets):
        try:
            if timeout and timeout > 0:
                permit: Permit | None = await _native.acquire_async(bridge, target, "", 1, timeout)
            elif local:
                permit = _native.attempt_local(target, "", 1)
            else:
                permit = await _native.attempt_async(bridge, target, "", 1)
        except StoreUnavailableError:
            for taken in permits:
                taken.release()
            raise
        except RateLimiterAcquisitionError:
            permit = None
        if permit is None:
            for taken in permits:
                taken.release()
            out = [_result(lbl, p.decision) for (lbl, _, _), p in zip(targets, permits)]
            if local:
                d = _native.state_blocking(target, "", 1)
            else:
                d = await _native.state_async(bridge, target, "", 1)
            out.append(_result(label, d, force_denied=True))
            rest = zip(targets[index + 1 :], peeks[index + 1 :])
            out.extend(_result(lbl, pk) for (lbl, _, _), pk in rest)
            return out
        permits.append(permit)
    for permit in permits:
        if keep is not None:
            keep.append(permit)
        else:
            permit.release()
    return [_result(label, p.decision) for (label, _, _), p in zip(targets, permits)]


os.register_at_fork(after_in_child=_forget_held_in_child)

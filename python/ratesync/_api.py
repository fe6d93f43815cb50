"""The module-level API of rate-sync 0.4.2: configuration, ``acquire``, checks.

Every decision is the core's, through one native call per operation
(``_native.acquire``, ``attempt``, ``state``, ``reset``, ``acquire_all``): a store
that answers at once (memory) gives its answer directly, on the calling thread;
any other answer is a future of the running loop (`_native.Pending`), so the loop never
blocks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator
from typing import Any

from ratesync import _native
from ratesync._native import Permit
from ratesync.exceptions import (
    ConfigFileNotFoundError,
    LimiterNotFoundError,
    RateLimiterAcquisitionError,
    RateLimiterNotInitializedError,
    StoreUnavailableError,
)
from ratesync.schemas import (
    LimiterReadOnlyConfig,
    LimiterState,
    MultiLimiterResult,
    RateLimiterMetrics,
    RateLimitResult,
)

logger = logging.getLogger("ratesync")


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
    *,
    period: str | None = None,
    utc_offset: str | None = None,
    precision: int | None = None,
    shadow: bool = False,
    overrides: list[dict[str, Any]] | None = None,
) -> None:
    """Adds (or redefines) a limiter, validated as ``[limiters.<id>]`` of a file.

    Besides rate-sync's algorithms, ``algorithm="fixed_window"``: ``limit`` units per
    window of ``window_seconds`` (aligned to the Unix epoch), or per calendar
    ``period`` (``"day"``, ``"week"`` from Monday, ``"month"``); ``utc_offset``
    (``"+05:30"``, ``"-08:00"``, ``"UTC"``) moves the windows to local midnight (a
    ``window_seconds`` must then divide a day). ``precision``: the runs a sliding
    window keeps per key (4 to 1000, default 100). ``shadow=True``: calls the limit
    would refuse are admitted without consuming anything, and counted in
    ``get_metrics().shadow_denied``. ``overrides``: rules of their own for some keys,
    each a dict as a ``[[limiters.ID.overrides]]`` table (``keys`` and/or
    ``key_prefix``, and the rule fields it changes: ``{"keys": ["vip"], "burst": 10}``);
    the first that matches a key decides it."""
    options: dict[str, Any] = {"store": store_id, "algorithm": algorithm}
    for name, value in (
        ("rate_per_second", rate_per_second),
        ("burst", burst),
        ("max_concurrent", max_concurrent),
        ("limit", limit),
        ("window_seconds", window_seconds),
        ("period", period),
        ("utc_offset", utc_offset),
        ("precision", precision),
        ("timeout", timeout),
        ("lease_ttl", lease_ttl),
        ("overrides", overrides),
    ):
        if value is not None:
            options[name] = value
    options["fail_closed"] = fail_closed
    options["shadow"] = shadow
    _native.configure_limiter(limiter_id, options)
    _INSTANCES.pop(limiter_id, None)


def load_config(path: str | os.PathLike[str] | None = None, *, watch: bool = False) -> None:
    """Loads ``path`` (or the discovered file) into the configuration, as rate-sync
    does: its stores and limiters are added to those configured before, and replace
    those of the same ids (a store or limiter redefined with the same settings keeps
    its state).

    All or nothing: an invalid file raises ``ConfigValidationError`` and changes nothing.

    ``watch=True`` follows the file: each valid edit is applied within about a second,
    as a whole (a limiter whose algorithm is unchanged keeps its keys' state; one the
    file no longer has raises ``LimiterNotFoundError``); an invalid edit is logged on
    ``logging.getLogger("ratesync")`` and the running limits stay.

    A ``path`` with no file raises ``ConfigFileNotFoundError`` (a ``FileNotFoundError``,
    as in rate-sync)."""
    if path is not None and not os.path.exists(path):
        raise ConfigFileNotFoundError(f"Configuration file not found: {os.fspath(path)}")
    _native.load_config(None if path is None else os.fspath(path), watch)
    _INSTANCES.clear()


def list_stores() -> dict[str, dict[str, Any]]:
    """Every store and its settings; passwords, tokens and URL credentials masked.
    ``initialized``: whether one of its limiters was initialized or used (stores
    connect on first use)."""
    stores = _native.list_stores()
    used = set(_USED_STORES)
    for limiter_id, settings in _native.list_limiters().items():
        if limiter_id in _METRICS or limiter_id in _INSTANCES:
            used.add(settings["store_id"])
    for store_id, info in stores.items():
        info["initialized"] = store_id in used
    return stores


def list_limiters() -> dict[str, dict[str, Any]]:
    """Every limiter and its settings."""
    return _native.list_limiters()


async def _answer(result: Any) -> Any:
    """A native call's answer: itself, or awaited when the store answers later."""
    if result.__class__ is _native.Pending:
        return await result
    return result


def _wait(
    target: Any,
    metrics: RateLimiterMetrics,
    timeout: float | None,
    key: str,
    cost: int,
    context: AcquireContext | None = None,
) -> Generator[Any, None, Permit]:
    """Waits for a permit (``timeout`` None = the limiter's own), counted in
    ``metrics`` as rate-sync counts (the acquisition and its wait, the slot taken, or
    the timeout and a full concurrency cap): by the extension, where it makes the
    answer, so the count costs no Python code. One generator frame, which
    ``AcquireContext.__await__`` returns as it is: awaiting the store's future only
    when there is one (``docs/design.md#python``). For a bare ``await`` of
    ``context``, the permit is kept there, and one holding a slot is kept for
    ``RateLimiter.release()``."""
    answer = _native.acquire(True, target, key, cost, timeout, metrics._counters)
    if answer.__class__ is not Permit:
        answer = yield from answer
    if context is not None:
        context._permit = answer
        if answer.holds_slot:
            # Like rate-sync: the slot stays taken until `get_limiter(id).release()`.
            _HELD.setdefault(target, []).append(answer)
    return answer


class _take:
    """``_wait`` as an awaitable, for the callers other than ``AcquireContext``."""

    __slots__ = ("_args",)

    def __init__(
        self, target: Any, metrics: RateLimiterMetrics, timeout: float | None, key: str, cost: int
    ) -> None:
        self._args = (target, metrics, timeout, key, cost)

    def __await__(self) -> Generator[Any, None, Permit]:
        return _wait(*self._args)


async def _attempt_counted(
    target: Any, metrics: RateLimiterMetrics, key: str, cost: int
) -> Permit | None:
    """One attempt: its permit, or ``None`` when refused; counted in ``metrics`` as
    ``_take`` counts (a refusal as rate-sync's ``timeouts``)."""
    return await _answer(
        _native.attempt(True, target, key, cost, metrics._counters)
    )


def _metrics_of(limiter_id: str) -> RateLimiterMetrics:
    """The metrics of the configured limiter ``limiter_id``: those
    ``get_limiter(limiter_id).get_metrics()`` returns, fed by every call on it."""
    metrics = _METRICS.get(limiter_id)
    if metrics is None:
        metrics = _METRICS[limiter_id] = RateLimiterMetrics()
    return metrics


async def _state(target: Any, key: str, cost: int) -> _native.Decision:
    return await _answer(_native.state(True, target, key, cost))


async def _acquire_all(
    calls: list[tuple[Any, str, int]], timeout: float | None
) -> _native.GroupOutcome:
    """Every call ``(limiter name or handle, key, cost)`` admitted together or none:
    one attempt when ``timeout`` is falsy, else waiting up to ``timeout`` seconds."""
    wait = bool(timeout and timeout > 0)
    return await _answer(
        _native.acquire_all(True, calls, wait, timeout if wait else None)
    )


async def _settle(permit: Permit | None, used: int) -> None:
    """Settles the permit of a context at ``used`` units (``docs/design.md#settle``)."""
    if permit is None:
        raise RuntimeError("nothing to settle: the call has not been admitted yet")
    await permit.settle(used)


class AcquireContext:
    """What ``acquire`` returns: ``await`` it for a ``Permit``, or use it as
    ``async with`` to hold the permit (and its concurrency slot) for the block.

    A cost that is an estimate is settled once the work is done, on the permit or
    here: ``async with acquire("llm", key=user, cost=4000) as permit: ...`` then
    ``await permit.settle(used)`` gives back ``4000 - used``
    (``docs/design.md#settle``). A limiter with ``max_concurrent`` settles inside the
    block: leaving it releases the permit."""

    __slots__ = ("_limiter_id", "_timeout", "_key", "_cost", "_permit")

    def __init__(self, limiter_id: str, timeout: float | None, key: str, cost: int) -> None:
        self._limiter_id = limiter_id
        self._timeout = timeout
        self._key = key
        self._cost = cost
        self._permit: Permit | None = None

    def __await__(self) -> Generator[Any, None, Permit]:
        # Counted in the limiter's metrics, as rate-sync's module-level `acquire`
        # counts through its limiter: the documented monitoring reads them there.
        limiter_id = self._limiter_id
        return _wait(
            limiter_id, _metrics_of(limiter_id), self._timeout, self._key, self._cost, self
        )

    async def __aenter__(self) -> Permit:
        limiter_id = self._limiter_id
        self._permit = await _take(
            limiter_id, _metrics_of(limiter_id), self._timeout, self._key, self._cost
        )
        return self._permit

    async def __aexit__(self, *exc: object) -> None:
        # The permit stays known: without a slot it can still settle after the block.
        if self._permit is not None:
            await release_permit(self._permit, _metrics_of(self._limiter_id))

    async def settle(self, used: int) -> None:
        """Settles the admitted call at ``used`` units: ``Permit.settle``."""
        await _settle(self._permit, used)


async def release_permit(permit: Permit, metrics: RateLimiterMetrics | None = None) -> None:
    """Gives back a permit's slot and waits until its store has it back (nothing to
    wait for without a slot or on a store that answers at once); the release is
    counted in ``metrics``, when given."""
    if metrics is not None and permit.holds_slot:
        metrics.record_concurrent_release()
    await _answer(permit.release_wait(True))


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
    calls = [(limiter_id, key or "", cost)]
    [result] = await _decide_all([limiter_id], calls, acquire_if_allowed, timeout)
    return result


def _result(
    limiter_id: str,
    d: _native.Decision | None,
    force_denied: bool = False,
    target: Any = None,
    key: str = "",
) -> RateLimitResult:
    """The result of decision ``d`` for ``key`` on the limiter ``target`` (a configured
    limiter's id, by default ``limiter_id``), labelled ``limiter_id``. ``limit`` is the
    quota users configured for the key (``_native.limiter_quota``, the core's ``RateQuota``): a token
    bucket's rate over a round window, not its burst."""
    if d is None:
        # The store could not say (a reservation-based store refused meanwhile).
        return RateLimitResult(
            allowed=False, limit=0, remaining=0, reset_in=0.0, limiter_id=limiter_id
        )
    limit, window = d.limit, None
    name = limiter_id if target is None else target
    if isinstance(name, str):
        try:
            quota = _native.limiter_quota(name, key)
        except LimiterNotFoundError:
            quota = None
        if quota is not None:
            limit, window = quota
    allowed = d.allowed and not force_denied
    reset_in = d.reset_after if allowed else max(d.retry_after, 0.0)
    return RateLimitResult(
        allowed=allowed,
        limit=limit,
        remaining=min(d.remaining, limit),
        reset_in=reset_in,
        limiter_id=limiter_id,
        reset_time=d.reset_at if allowed else d.retry_at,
        window=window,
    )


class RateLimiter:
    """A configured limiter (``get_limiter``), with rate-sync's limiter methods.

    ``acquire``/``try_acquire`` on a limiter with ``max_concurrent`` keep the slot
    until ``release()`` (rate-sync's manual pattern); ``acquire_context`` releases it
    at the end of the block. ``get_metrics`` counts every call on the limiter: this
    object's methods, the module-level ``acquire``, ``check_limiter`` and the FastAPI
    integration (shared by every ``get_limiter`` object of the same id)."""

    _target: Any  # the limiter's name, or a private `_native.LimiterHandle`

    def __init__(self, limiter_id: str) -> None:
        self._id = limiter_id
        self._target = limiter_id
        self._config = _native.limiter_config(limiter_id)
        self._initialized = True
        self._held = _HELD.setdefault(limiter_id, [])

    @property
    def group_id(self) -> str:
        return self._id

    @property
    def rate_per_second(self) -> float | None:
        return self._config["rate_per_second"]

    @property
    def limit(self) -> int | None:
        """A window limiter's units per window (``None`` for a token bucket)."""
        return self._config["limit"]

    @property
    def window_seconds(self) -> float | None:
        """A window limiter's window, in seconds (``None`` for a token bucket or a
        calendar period)."""
        return self._config["window_seconds"]

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
        """Checks that the limiter's store answers (``initialize_limiter``)."""
        await _check_store(self._target, self._id, self.fail_closed)
        self._initialized = True

    def _check_ready(self) -> None:
        """rate-sync's guard: an engine class used before ``initialize()``."""
        if not self._initialized:
            raise RateLimiterNotInitializedError(self._id)

    async def _take(self, timeout: float | None, key: str, cost: int) -> Permit:
        """Waits for a permit (``timeout`` None = the limiter's own), counting it."""
        return await _take(self._target, self.get_metrics(), timeout, key, cost)

    async def _try(self, key: str, cost: int) -> Permit | None:
        """One attempt, never waits; counts a refusal as rate-sync's ``timeouts``
        (and a full concurrency cap as ``max_concurrent_reached``)."""
        return await _attempt_counted(self._target, self.get_metrics(), key, cost)

    def _give_back(self, permit: Permit) -> None:
        if permit.holds_slot:
            permit.release()
            self.get_metrics().record_concurrent_release()

    async def acquire(
        self, timeout: float | None = None, *, key: str | None = None, cost: int = 1
    ) -> Permit:
        """Waits for a slot; ``RateLimiterAcquisitionError`` on timeout. A
        concurrency slot stays taken until ``release()``."""
        self._check_ready()
        permit = await self._take(timeout, key or "", cost)
        if permit.holds_slot:
            self._held.append(permit)
        return permit

    async def try_acquire(
        self, timeout: float = 0, *, key: str | None = None, cost: int = 1
    ) -> bool:
        """``True`` if admitted within ``timeout`` seconds, else ``False`` once the
        timeout has passed: a call that cannot be admitted in time waits it out (a
        release or a reset may admit it meanwhile), as in rate-sync, so that
        ``while not await limiter.try_acquire(timeout=0.1)`` polls at that pace.
        ``timeout=0``: one attempt, answered at once."""
        self._check_ready()
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
        self._check_ready()
        if self._held:
            self._give_back(self._held.pop())

    def acquire_context(
        self, *, timeout: float | None = None, key: str | None = None, cost: int = 1
    ) -> _LimiterContext:
        """``async with limiter.acquire_context(timeout=...)``: holds the slot for
        the block and releases it after."""
        return _LimiterContext(self, timeout, key or "", cost)

    async def get_state(self, *, key: str | None = None) -> LimiterState:
        """The current state (a peek: nothing consumed). Held concurrency slots
        count: ``current_usage`` is the larger of the rate's usage and the slots
        held, ``remaining`` the smaller of what the rate and the free slots allow
        (rate-sync's figures). The store counts the slots of a limiter that only
        caps concurrency; beside a rate, the slots this process holds count (as in
        rate-sync), and a full cap anywhere shows as ``remaining=0``."""
        if not self._initialized:
            raise RuntimeError(f"Rate limiter '{self._id}' not initialized")
        d = await _state(self._target, key or "", 1)
        remaining = d.remaining
        usage = d.limit - d.remaining
        cap = self.max_concurrent
        has_rate = self.rate_per_second is not None or self.limit is not None
        if cap is not None and has_rate:
            held = cap if d.denied_by == "concurrency" else self.get_metrics().current_concurrent
            remaining = min(remaining, max(0, cap - held))
            usage = max(usage, held)
        return LimiterState(
            allowed=d.allowed and remaining > 0,
            remaining=remaining,
            reset_at=int(d.reset_at),
            current_usage=usage,
        )

    async def reset(self, *, key: str | None = None) -> None:
        """Forgets the state of ``key`` (or of every key): a fresh limiter. A reset
        of every key also clears the limiter's metrics and forgets the slots taken
        by ``acquire`` (the reset freed them), as rate-sync's reset does."""
        await _answer(_native.reset(True, self._target, key))
        if key is None:
            self._clear_metrics()
            self._held.clear()

    async def reset_all(self) -> None:
        await self.reset()

    def get_metrics(self) -> RateLimiterMetrics:
        return _metrics_of(self._id)

    def _clear_metrics(self) -> None:
        _METRICS[self._id] = RateLimiterMetrics()

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
            precision=c.get("precision"),
            period=c.get("period"),
            utc_offset=c.get("utc_offset"),
            shadow=c.get("shadow", False),
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
        self._limiter._check_ready()
        self._permit = await self._limiter._take(self._timeout, self._key, self._cost)
        return self._permit

    async def __aexit__(self, *exc: object) -> None:
        # The permit stays known: without a slot it can still settle after the block.
        if self._permit is not None:
            await release_permit(self._permit, self._limiter.get_metrics())

    async def settle(self, used: int) -> None:
        """Settles the admitted call at ``used`` units: ``Permit.settle``."""
        await _settle(self._permit, used)


_METRICS: dict[str, RateLimiterMetrics] = {}


# One `RateLimiter` per id, as rate-sync hands out (`get_limiter(a) is get_limiter(a)`);
# dropped when its limiter or any store is redefined, or a file is loaded.
_INSTANCES: dict[str, RateLimiter] = {}
_RELOADS_SEEN = 0


def get_limiter(limiter_id: str) -> RateLimiter:
    """The limiter ``limiter_id``; ``LimiterNotFoundError`` if not configured."""
    global _RELOADS_SEEN
    reloads = _native.reloads()
    if reloads != _RELOADS_SEEN:
        # A followed file changed: the objects handed out describe the old one.
        _INSTANCES.clear()
        _RELOADS_SEEN = reloads
    limiter = _INSTANCES.get(limiter_id)
    if limiter is None:
        limiter = _INSTANCES[limiter_id] = RateLimiter(limiter_id)
    return limiter


def set_resolver(
    limiter_id: str,
    resolver: Callable[[str], dict[str, Any] | None],
    *,
    cache_size: int = 10_000,
) -> None:
    """Gives keys of limiter ``limiter_id`` rules of their own from ``resolver(key)``,
    for tiers that live elsewhere (a database of plans): ``None`` for the limiter's own
    rule, or a dict of the rule fields an override may set (``{"burst": 200}``),
    validated as an override of the limiter. A key no override of the configuration
    matches is asked about once while its answer stays among the ``cache_size`` kept.
    A resolver that raises, or answers what does not validate, leaves the key to the
    limiter's rule (logged on ``logging.getLogger("ratesync")``). It is called from
    the calls of the limiter: keep it fast (a lookup, not a query per call)."""
    _native.set_resolver(limiter_id, resolver, cache_size)
    _INSTANCES.pop(limiter_id, None)


def clone_limiter(
    source_id: str,
    new_id: str,
    *,
    rate_per_second: float | None = None,
    max_concurrent: int | None = None,
    timeout: float | None = None,
    limit: int | None = None,
    window_seconds: float | None = None,
    period: str | None = None,
    utc_offset: str | None = None,
    precision: int | None = None,
) -> None:
    """Adds limiter ``new_id`` with the settings of ``source_id`` (and the given
    overrides), on the same store (and so the same store client). Its state is its own.
    A fixed window's ``window_seconds`` and ``period`` exclude each other: the one
    given replaces the source's other.

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
        "shadow": source["shadow"],
    }
    if window_seconds is not None:
        source = {**source, "period": None}
    if period is not None:
        source = {**source, "window_seconds": None}
    for name, override in (
        ("rate_per_second", rate_per_second),
        ("max_concurrent", max_concurrent),
        ("timeout", timeout),
        ("limit", limit),
        ("window_seconds", window_seconds),
        ("period", period),
        ("utc_offset", utc_offset),
        ("precision", precision),
    ):
        value = override if override is not None else source.get(name)
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


# Stores one of whose limiters was initialized or used (`list_stores()["initialized"]`).
_USED_STORES: set[str] = set()


async def _check_store(target: Any, limiter_id: str, fail_closed: bool) -> None:
    """Asks the limiter's store for its state once, so that a store that cannot
    answer (unreachable, or its schema missing) shows at start-up, not at the first
    call: ``StoreUnavailableError`` for a ``fail_closed`` limiter; a warning on the
    ``ratesync`` logger for a fail-open one, whose calls will be admitted without a
    decision until the store answers (``docs/design.md#failure-policy``)."""
    try:
        await _state(target, "", 1)
    except StoreUnavailableError as error:
        if fail_closed:
            raise
        logger.warning(
            "limiter %r: its store cannot answer (%s); it fails open: calls are "
            "admitted without a limit until the store answers",
            limiter_id,
            error,
        )


async def initialize_limiter(limiter_id: str) -> None:
    """Checks that ``limiter_id`` exists and that its store answers (stores connect
    on first use): ``LimiterNotFoundError``, or ``StoreUnavailableError`` when the
    store of a ``fail_closed`` limiter is unreachable or its schema is missing (a
    fail-open one logs a warning on the ``ratesync`` logger)."""
    config = _native.limiter_config(limiter_id)
    await _check_store(limiter_id, limiter_id, config["fail_closed"])
    _USED_STORES.add(config["store_id"])


async def initialize_all_limiters() -> None:
    """``initialize_limiter`` for every configured limiter (raises the error of an
    invalid discovered file, and the first ``StoreUnavailableError``)."""
    for limiter_id in _native.list_limiters():
        await initialize_limiter(limiter_id)


async def check_multi_limiters(
    limiter_ids: list[str],
    acquire_if_allowed: bool = True,
    timeout: float = 0,
    *,
    key: str | None = None,
) -> MultiLimiterResult:
    """Checks several limiters; allowed only if all allow. All or nothing, decided
    by the store: when one denies, nothing is consumed from any (rate-sync consumed
    from the others). ``key`` checks every limiter on that key (one user's group).

    A limiter that is not configured is skipped as allowing (as rate-sync does)."""
    known: list[str] = []
    results: list[RateLimitResult | None] = []
    for limiter_id in limiter_ids:
        try:
            _native.limiter_config(limiter_id)
        except LimiterNotFoundError:
            results.append(
                RateLimitResult(
                    allowed=True, limit=1000, remaining=999, reset_in=60.0, limiter_id=limiter_id
                )
            )
            continue
        known.append(limiter_id)
        results.append(None)
    calls = [(limiter_id, key or "", 1) for limiter_id in known]
    decided = iter(await _decide_all(known, calls, acquire_if_allowed, timeout))
    merged = [r if r is not None else next(decided) for r in results]
    return MultiLimiterResult.from_results(merged)


async def _decide_all(
    labels: list[str],
    calls: list[tuple[Any, str, int]],
    take: bool,
    timeout: float | None,
    keep: list[Permit] | None = None,
) -> list[RateLimitResult]:
    """One result per call, labelled. With ``take``, every call is admitted together
    or none is (the core's ``acquire_all``), waiting up to ``timeout``; without, each
    is a peek. The permits of an admission are released, or with ``keep`` appended
    to it (their concurrency slots stay taken until the caller releases them)."""
    if not take or not calls:
        peeks = [await _state(target, key, cost) for target, key, cost in calls]
        return [
            _result(label, d, target=call[0], key=call[1])
            for label, d, call in zip(labels, peeks, calls)
        ]
    outcome = await _acquire_all(calls, timeout)
    if outcome.admitted:
        for (target, _key, _cost), permit in zip(calls, outcome.permits):
            if isinstance(target, str):
                _metrics_of(target)._counters.count_group_admission(permit)
            if keep is not None:
                keep.append(permit)
            else:
                permit.release()
    elif outcome.index is not None and isinstance(calls[outcome.index][0], str):
        refusal = outcome.decisions[outcome.index]
        _metrics_of(calls[outcome.index][0])._counters.count_refusal(
            refusal.denied_by if refusal else None
        )
    return [
        _result(label, d, force_denied=(i == outcome.index), target=call[0], key=call[1])
        for i, (label, d, call) in enumerate(zip(labels, outcome.decisions, calls))
    ]


os.register_at_fork(after_in_child=_forget_held_in_child)

"""Stub of the extension module (crates/ratesync-python)."""

import asyncio
from typing import Any, Awaitable, Callable, Iterable, Sequence

class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    # retry_after / reset_after as Unix times (seconds), fixed at the decision; a
    # fixed window's reset_at is the end of its window.
    retry_at: float
    reset_at: float
    denied_by: str | None
    # What a limiter in shadow mode would have refused the admitted call by.
    shadow_denied_by: str | None

class Permit:
    decision: Decision
    holds_slot: bool
    def release(self) -> None: ...
    def release_wait(self, bridge: LoopBridge | None) -> asyncio.Future[None] | None: ...
    # Gives back `cost - used` (docs/design.md#settle); without an event loop it is
    # done on return. ValueError above the cost.
    def settle(self, used: int) -> Awaitable[None]: ...
    def __enter__(self) -> Permit: ...
    def __exit__(self, *args: object) -> bool: ...

class LimiterHandle: ...

class Counters:
    """The counters behind ``RateLimiterMetrics`` (rate-sync's fields and methods)."""

    total_acquisitions: int
    total_wait_time_ms: float
    avg_wait_time_ms: float
    max_wait_time_ms: float
    cas_failures: int
    timeouts: int
    last_acquisition_at: float | None
    current_concurrent: int
    max_concurrent_reached: int
    total_releases: int
    shadow_denied: int
    def record_acquisition(self, wait_time_ms: float) -> None: ...
    def record_cas_failure(self) -> None: ...
    def record_timeout(self) -> None: ...
    def record_concurrent_acquire(self) -> None: ...
    def record_concurrent_release(self) -> None: ...
    def record_max_concurrent_reached(self) -> None: ...

class GroupOutcome:
    admitted: bool
    permits: list[Permit]
    decisions: list[Decision | None]
    index: int | None

class LoopBridge:
    """One event loop's end of the runtime bridge (see ``ratesync._bridge``)."""

    def __init__(self, event_loop: asyncio.AbstractEventLoop) -> None: ...
    def fileno(self) -> int | None: ...

Target = str | LimiterHandle

def private_limiter(
    name: str, engine: str, store_options: dict[str, Any], limiter_options: dict[str, Any]
) -> LimiterHandle: ...

# One entry per operation: the answer itself when the store answers at once, else an
# asyncio future of `bridge`'s loop (`bridge` None: block the calling thread). An
# `acquire` that cannot be admitted within its timeout waits it out (rate-sync's
# contract); a zero timeout is one attempt. `acquire` and `attempt` count the call in
# `metrics` when given (the slot taken too with `slot`), as rate-sync counts.
def acquire(
    bridge: LoopBridge | None,
    limiter_id: Target,
    key: str,
    cost: int,
    timeout: float | None,
    metrics: Counters | None = None,
    slot: bool = True,
) -> Permit | asyncio.Future[Permit]: ...
# A refusal is None.
def attempt(
    bridge: LoopBridge | None,
    limiter_id: Target,
    key: str,
    cost: int,
    metrics: Counters | None = None,
    slot: bool = True,
) -> Permit | None | asyncio.Future[Permit | None]: ...
def state(
    bridge: LoopBridge | None, limiter_id: Target, key: str, cost: int
) -> Decision | asyncio.Future[Decision]: ...
def reset(
    bridge: LoopBridge | None, limiter_id: Target, key: str | None
) -> None | asyncio.Future[None]: ...
def acquire_all(
    bridge: LoopBridge | None,
    calls: list[tuple[Target, str, int]],
    wait: bool,
    timeout: float | None,
) -> GroupOutcome | asyncio.Future[GroupOutcome]: ...
def after_fork_in_child() -> None: ...
def shutdown() -> None: ...
def discover_on_import() -> None: ...
def load_config(path: str | None = None, watch: bool = False) -> str | None: ...
def reloads() -> int: ...
def set_resolver(
    limiter_id: str, resolver: Callable[[str], dict[str, Any] | None], cache_size: int = 10_000
) -> None: ...
def configure_store(store_id: str, engine: str, options: dict[str, Any]) -> None: ...
def configure_limiter(limiter_id: str, options: dict[str, Any]) -> None: ...
def list_stores() -> dict[str, dict[str, Any]]: ...
def list_limiters() -> dict[str, dict[str, Any]]: ...
def trusted_proxy_networks() -> list[str]: ...
def limiter_config(limiter_id: str) -> dict[str, Any]: ...
def limiter_quota(limiter_id: str, key: str = "") -> tuple[int, float] | None: ...
def prometheus_text() -> str: ...

# ratesync.contrib.fastapi's HTTP helpers, from the core's ratesync::http.
class TrustedProxies:
    """Trusted proxy networks; ``ValueError`` names an entry that is not a network
    (``strict=False``: such entries are left out and listed in ``skipped``)."""

    skipped: list[str]
    def __init__(self, networks: Sequence[str], strict: bool = True) -> None: ...
    def is_empty(self) -> bool: ...
    def __contains__(self, ip: str) -> bool: ...

def client_ip(
    peer: str,
    headers: Iterable[Sequence[bytes]] | Iterable[Sequence[str]],
    trusted: TrustedProxies | list[str],
) -> str | None: ...
def validate_ip(text: str) -> str | None: ...

# (policy, allowed, limit, remaining, retry_after, reset_after, quota_unit, window)
HeaderLimit = tuple[str, bool, int, int, float, float, str | None, float | None]

def rate_limit_headers(limits: list[HeaderLimit], legacy: bool = True) -> dict[str, str]: ...
def rate_limit_times(limit: HeaderLimit) -> tuple[int, int, int]: ...

"""The engine classes that code written for rate-sync constructs directly
(``MemoryRateLimiter("api", rate_per_second=10)``), with rate-sync's constructor
keywords and methods.

Each instance decides with a limiter of its own, on a store of its own, in a private
registry of the core: nothing is added to ``list_limiters()``. Two
``RedisRateLimiter`` with the same URL, ``key_prefix`` and ``group_id`` share their
limit across processes, as in rate-sync. A forked child rebuilds them (fresh memory
state, new connections).

The classes cover every engine (``MemoryRateLimiter``, ``RedisRateLimiter``,
``RedisSlidingWindowRateLimiter``, ``PostgresRateLimiter``, ``NatsRateLimiter``); an
engine left out of a build of the extension raises ``EngineNotAvailableError``.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from ratesync import _native
from ratesync._api import RateLimiter
from ratesync.schemas import RateLimiterMetrics

_LIVE: weakref.WeakSet[_EngineRateLimiter] = weakref.WeakSet()


class _EngineRateLimiter(RateLimiter):
    _engine = ""

    def __init__(
        self,
        group_id: str,
        store_options: dict[str, Any],
        *,
        rate_per_second: float | None,
        limit: int | None,
        window_seconds: float | None,
        max_concurrent: int | None,
        default_timeout: float | None,
        fail_closed: bool,
    ) -> None:
        algorithm = (
            "sliding_window" if limit is not None or window_seconds is not None else "token_bucket"
        )
        limiter_options: dict[str, Any] = {"algorithm": algorithm, "fail_closed": fail_closed}
        for name, value in (
            ("rate_per_second", rate_per_second),
            ("limit", limit),
            ("window_seconds", window_seconds),
            ("max_concurrent", max_concurrent),
            ("timeout", default_timeout),
        ):
            if value is not None:
                limiter_options[name] = value
        self._id = group_id
        self._store_options = store_options
        self._limiter_options = limiter_options
        self._build()
        self._config = {
            "algorithm": algorithm,
            "store_id": self._engine,
            "rate_per_second": rate_per_second,
            "max_concurrent": max_concurrent,
            "timeout": default_timeout,
            "limit": limit,
            "window_seconds": window_seconds,
            "fail_closed": fail_closed,
            "burst": None,
        }
        # As in rate-sync: usable once `await limiter.initialize()` has checked the
        # store; before, calls raise `RateLimiterNotInitializedError`.
        self._initialized = False
        self._metrics = RateLimiterMetrics()
        self._held = []
        _LIVE.add(self)

    def _build(self) -> None:
        self._target = _native.private_limiter(
            self._id, self._engine, self._store_options, self._limiter_options
        )

    def _rebuild_in_child(self) -> None:
        self._held.clear()
        self._metrics.current_concurrent = 0
        self._build()

    def get_metrics(self) -> RateLimiterMetrics:
        return self._metrics

    def _clear_metrics(self) -> None:
        self._metrics = RateLimiterMetrics()

    async def disconnect(self) -> None:
        """rate-sync's clean-up call. The store's connections belong to this object
        and close with it; until then the limiter stays usable."""


class MemoryRateLimiter(_EngineRateLimiter):
    """In-process limiter: token bucket (``rate_per_second``) or sliding window
    (``limit`` + ``window_seconds``), with optional ``max_concurrent``."""

    _engine = "memory"

    def __init__(
        self,
        group_id: str,
        rate_per_second: float | None = None,
        limit: int | None = None,
        window_seconds: float | None = None,
        max_concurrent: int | None = None,
        default_timeout: float | None = None,
        fail_closed: bool = False,
    ) -> None:
        super().__init__(
            group_id,
            {},
            rate_per_second=rate_per_second,
            limit=limit,
            window_seconds=window_seconds,
            max_concurrent=max_concurrent,
            default_timeout=default_timeout,
            fail_closed=fail_closed,
        )


class RedisRateLimiter(_EngineRateLimiter):
    """Redis limiter (token bucket or sliding window), rate-sync's keywords."""

    _engine = "redis"

    def __init__(
        self,
        url: str,
        group_id: str,
        rate_per_second: float | None = None,
        limit: int | None = None,
        window_seconds: float | None = None,
        max_concurrent: int | None = None,
        db: int = 0,
        password: str | None = None,
        pool_min_size: int = 2,
        pool_max_size: int = 10,
        key_prefix: str = "rate_limit",
        timing_margin_ms: float = 10.0,
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 5.0,
        default_timeout: float | None = None,
        fail_closed: bool = False,
    ) -> None:
        store_options = {
            "url": url,
            "db": db,
            "password": password,
            "pool_min_size": pool_min_size,
            "pool_max_size": pool_max_size,
            "key_prefix": key_prefix,
            "timing_margin_ms": timing_margin_ms,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
        }
        super().__init__(
            group_id,
            store_options,
            rate_per_second=rate_per_second,
            limit=limit,
            window_seconds=window_seconds,
            max_concurrent=max_concurrent,
            default_timeout=default_timeout,
            fail_closed=fail_closed,
        )


class RedisSlidingWindowRateLimiter(RedisRateLimiter):
    """rate-sync's Redis sliding-window class: ``limit`` + ``window_seconds``."""

    def __init__(
        self,
        url: str,
        group_id: str,
        limit: int,
        window_seconds: float,
        db: int = 0,
        password: str | None = None,
        pool_min_size: int = 2,
        pool_max_size: int = 10,
        key_prefix: str = "rate_limit",
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 5.0,
        default_timeout: float | None = None,
        fail_closed: bool = False,
    ) -> None:
        super().__init__(
            url,
            group_id,
            limit=limit,
            window_seconds=window_seconds,
            db=db,
            password=password,
            pool_min_size=pool_min_size,
            pool_max_size=pool_max_size,
            key_prefix=key_prefix,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            default_timeout=default_timeout,
            fail_closed=fail_closed,
        )


class PostgresRateLimiter(_EngineRateLimiter):
    """PostgreSQL limiter (token bucket or sliding window), rate-sync's keywords.

    Two instances with the same database, ``schema_name``, ``table_name`` and
    ``group_id`` share their limit across processes. With ``auto_create=False`` the
    table must exist (``ratesync migrate``)."""

    _engine = "postgres"

    def __init__(
        self,
        connection_url: str,
        group_id: str,
        rate_per_second: float | None = None,
        limit: int | None = None,
        window_seconds: float | None = None,
        max_concurrent: int | None = None,
        table_name: str = "rate_limiter_state",
        schema_name: str = "public",
        auto_create: bool = False,
        pool_min_size: int = 2,
        pool_max_size: int = 10,
        timing_margin_ms: float = 10.0,
        default_timeout: float | None = None,
        fail_closed: bool = False,
    ) -> None:
        store_options = {
            "url": connection_url,
            "table_name": table_name,
            "schema_name": schema_name,
            "auto_create": auto_create,
            "pool_min_size": pool_min_size,
            "pool_max_size": pool_max_size,
            "timing_margin_ms": timing_margin_ms,
        }
        super().__init__(
            group_id,
            store_options,
            rate_per_second=rate_per_second,
            limit=limit,
            window_seconds=window_seconds,
            max_concurrent=max_concurrent,
            default_timeout=default_timeout,
            fail_closed=fail_closed,
        )


class NatsRateLimiter(_EngineRateLimiter):
    """NATS JetStream KV limiter (token bucket or sliding window), rate-sync's
    keywords. ``url`` may list several servers, comma-separated."""

    _engine = "nats"

    def __init__(
        self,
        url: str,
        group_id: str,
        rate_per_second: float | None = None,
        limit: int | None = None,
        window_seconds: float | None = None,
        max_concurrent: int | None = None,
        token: str | None = None,
        bucket_name: str = "rate_limits",
        auto_create: bool = False,
        retry_interval: float | None = None,
        max_retries: int | None = None,
        timing_margin_ms: float = 10.0,
        default_timeout: float | None = None,
        fail_closed: bool = False,
    ) -> None:
        store_options = {
            "url": url,
            "token": token,
            "bucket_name": bucket_name,
            "auto_create": auto_create,
            "retry_interval": retry_interval,
            "max_retries": max_retries,
            "timing_margin_ms": timing_margin_ms,
        }
        super().__init__(
            group_id,
            store_options,
            rate_per_second=rate_per_second,
            limit=limit,
            window_seconds=window_seconds,
            max_concurrent=max_concurrent,
            default_timeout=default_timeout,
            fail_closed=fail_closed,
        )


def _rebuild_all_in_child() -> None:
    for limiter in list(_LIVE):
        try:
            limiter._rebuild_in_child()
        except Exception:  # noqa: BLE001 - a child must not die in a fork hook
            pass


os.register_at_fork(after_in_child=_rebuild_all_in_child)

__all__ = [
    "MemoryRateLimiter",
    "RedisRateLimiter",
    "RedisSlidingWindowRateLimiter",
    "PostgresRateLimiter",
    "NatsRateLimiter",
]

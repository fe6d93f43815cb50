"""ratesync: the API of the Python library rate-sync on the ratesync Rust core.

    >>> from ratesync import configure_store, configure_limiter, acquire
    >>> configure_store("local", strategy="memory")
    >>> configure_limiter("api", store_id="local", rate_per_second=10.0, burst=5)
    >>> await acquire("api")                     # waits per the limiter's timeout
    >>> async with acquire("db", key="user-42"): # holds a concurrency slot inside
    ...     ...

Configuration is discovered on import (``$RATE_SYNC_CONFIG``, ``./rate-sync.toml``,
``./config/rate-sync.toml``); an invalid file raises ``ConfigValidationError`` on
first use, never at import. Threads (and Celery) use ``ratesync.sync``.
"""

from __future__ import annotations

import atexit
import os

from ratesync import _native

# A forked child (gunicorn --preload, multiprocessing) starts its own runtime and
# store clients, before any other fork hook of the package runs.
os.register_at_fork(after_in_child=_native.after_fork_in_child)

from ratesync._api import (  # noqa: E402
    AcquireContext,
    RateLimiter,
    acquire,
    check_limiter,
    check_multi_limiters,
    clone_limiter,
    configure_limiter,
    configure_store,
    get_limiter,
    get_or_clone_limiter,
    initialize_all_limiters,
    initialize_limiter,
    list_limiters,
    list_stores,
    load_config,
    set_resolver,
)
from ratesync.composite import (  # noqa: E402
    CompositeLimitCheck,
    CompositeRateLimiter,
    StrategyType,
)
from ratesync.decorators import rate_limited  # noqa: E402
from ratesync.engines import (  # noqa: E402
    MemoryRateLimiter,
    NatsRateLimiter,
    PostgresRateLimiter,
    RedisRateLimiter,
    RedisSlidingWindowRateLimiter,
)
from ratesync.identifiers import combine_identifiers, hash_identifier  # noqa: E402
from ratesync._native import Decision, Permit  # noqa: E402
from ratesync.exceptions import (  # noqa: E402
    ConfigFileNotFoundError,
    ConfigValidationError,
    EngineNotAvailableError,
    LimiterNotFoundError,
    RateLimiterAcquisitionError,
    RateLimiterAlreadyConfiguredError,
    RateLimiterError,
    RateLimiterNotConfiguredError,
    RateLimiterNotInitializedError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from ratesync.schemas import (  # noqa: E402
    LimiterReadOnlyConfig,
    LimiterState,
    MultiLimiterResult,
    RateLimiterMetrics,
    RateLimitResult,
)
from ratesync import sync, testing  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "AcquireContext",
    "Decision",
    "Permit",
    "RateLimiter",
    "RateLimitResult",
    "LimiterReadOnlyConfig",
    "LimiterState",
    "MultiLimiterResult",
    "RateLimiterMetrics",
    "CompositeRateLimiter",
    "CompositeLimitCheck",
    "StrategyType",
    "MemoryRateLimiter",
    "RedisRateLimiter",
    "RedisSlidingWindowRateLimiter",
    "PostgresRateLimiter",
    "NatsRateLimiter",
    "rate_limited",
    "clone_limiter",
    "get_or_clone_limiter",
    "initialize_limiter",
    "initialize_all_limiters",
    "check_multi_limiters",
    "hash_identifier",
    "combine_identifiers",
    "EngineNotAvailableError",
    "load_config",
    "set_resolver",
    "configure_store",
    "configure_limiter",
    "check_limiter",
    "acquire",
    "get_limiter",
    "list_stores",
    "list_limiters",
    "sync",
    "testing",
    "RateLimiterError",
    "RateLimiterNotConfiguredError",
    "RateLimiterNotInitializedError",
    "RateLimiterAcquisitionError",
    "RateLimiterAlreadyConfiguredError",
    "ConfigValidationError",
    "ConfigFileNotFoundError",
    "StoreNotFoundError",
    "LimiterNotFoundError",
    "StoreUnavailableError",
]

# At exit no result is handed back to a finalizing interpreter.
atexit.register(_native.shutdown)

_native.discover_on_import()

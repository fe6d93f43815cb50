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
from ratesync._api import (
    AcquireContext,
    RateLimiter,
    acquire,
    check_limiter,
    configure_limiter,
    configure_store,
    get_limiter,
    list_limiters,
    list_stores,
    load_config,
)
from ratesync._native import Decision, Permit
from ratesync.exceptions import (
    ConfigValidationError,
    LimiterNotFoundError,
    RateLimiterAcquisitionError,
    RateLimiterAlreadyConfiguredError,
    RateLimiterError,
    RateLimiterNotConfiguredError,
    RateLimiterNotInitializedError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from ratesync.schemas import LimiterReadOnlyConfig, LimiterState, RateLimitResult
from ratesync import sync

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
    "load_config",
    "configure_store",
    "configure_limiter",
    "check_limiter",
    "acquire",
    "get_limiter",
    "list_stores",
    "list_limiters",
    "sync",
    "RateLimiterError",
    "RateLimiterNotConfiguredError",
    "RateLimiterNotInitializedError",
    "RateLimiterAcquisitionError",
    "RateLimiterAlreadyConfiguredError",
    "ConfigValidationError",
    "StoreNotFoundError",
    "LimiterNotFoundError",
    "StoreUnavailableError",
]

# A forked child (gunicorn --preload, multiprocessing) starts its own runtime and
# store clients; at exit no result is handed back to a finalizing interpreter.
os.register_at_fork(after_in_child=_native.after_fork_in_child)
atexit.register(_native.shutdown)

_native.discover_on_import()

"""FastAPI integration (rate-sync's ``ratesync.contrib.fastapi`` names and call shapes).

    app.add_exception_handler(RateLimitExceededError, rate_limit_exception_handler)

    @app.get("/api/data")
    async def get_data(_: None = Depends(RateLimitDependency("api"))): ...

Refusals answer 429 with ``Retry-After`` (whole seconds, rounded up), the IETF
``RateLimit-Policy: "api";q=100;w=60`` / ``RateLimit: "api";r=0;t=3`` headers
(draft-ietf-httpapi-ratelimit-headers-09/-10 form) and ``X-RateLimit-Limit``,
``-Remaining``, ``-Reset`` (Unix time), every value from the limiter's decision. A
fail-closed limiter whose store is down answers 503. Concurrency slots are released
when the request ends. Client IPs honour forwarding headers only from
``[fastapi] trusted_proxy_networks`` (see ``get_client_ip``). Needs ``fastapi``
(``pip install ratesync[fastapi]``); ``import ratesync`` does not.
"""

from __future__ import annotations

try:
    import starlette.requests  # noqa: F401

    FASTAPI_AVAILABLE = True
except ImportError:  # pragma: no cover - FastAPI is optional
    FASTAPI_AVAILABLE = False

from ratesync.contrib.fastapi.composite import CompositeRateLimitDependency
from ratesync.contrib.fastapi.dependencies import (
    IdentifierExtractor,
    RateLimitDependency,
    rate_limit,
)
from ratesync.contrib.fastapi.handlers import (
    RateLimitExceededError,
    RateLimitStoreUnavailableError,
    create_rate_limit_response,
    create_unavailable_response,
    rate_limit_exception_handler,
)
from ratesync.contrib.fastapi.headers import (
    RateLimitResult,
    get_rate_limit_headers,
    set_rate_limit_headers,
)
from ratesync.contrib.fastapi.ip_utils import (
    DEFAULT_TRUSTED_PROXY_NETWORKS,
    combine_identifiers,
    configure_fastapi,
    get_client_ip,
    get_trusted_proxy_networks,
    hash_identifier,
    is_private_ip,
    validate_ip,
)
from ratesync.contrib.fastapi.middleware import RateLimitMiddleware

COMPOSITE_AVAILABLE = True

__all__ = [
    "FASTAPI_AVAILABLE",
    "COMPOSITE_AVAILABLE",
    "RateLimitDependency",
    "CompositeRateLimitDependency",
    "IdentifierExtractor",
    "rate_limit",
    "RateLimitExceededError",
    "RateLimitStoreUnavailableError",
    "rate_limit_exception_handler",
    "create_rate_limit_response",
    "create_unavailable_response",
    "RateLimitResult",
    "set_rate_limit_headers",
    "get_rate_limit_headers",
    "get_client_ip",
    "configure_fastapi",
    "get_trusted_proxy_networks",
    "validate_ip",
    "is_private_ip",
    "hash_identifier",
    "combine_identifiers",
    "DEFAULT_TRUSTED_PROXY_NETWORKS",
    "RateLimitMiddleware",
]

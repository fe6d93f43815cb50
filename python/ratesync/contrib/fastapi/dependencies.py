"""``RateLimitDependency`` / ``rate_limit``: a FastAPI dependency per endpoint.

Each client (by default its IP, see ``get_client_ip``) is a key of the limiter
(rate-sync cloned a limiter per client; the state is the same, per client). The
dependency yields: a concurrency slot it took is held while the request runs and
released when it ends (rate-sync leaked it)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Union

from ratesync.contrib.fastapi import _check
from ratesync.contrib.fastapi.handlers import (
    RateLimitExceededError,
    RateLimitStoreUnavailableError,
)
from ratesync.contrib.fastapi.headers import set_rate_limit_headers
from ratesync.contrib.fastapi.ip_utils import get_client_ip
from ratesync._api import _metrics_of, release_permit
from ratesync.exceptions import LimiterNotFoundError, StoreUnavailableError

try:
    from starlette.requests import Request
    from starlette.responses import Response

    FASTAPI_AVAILABLE = True
except ImportError:  # pragma: no cover - FastAPI is optional
    Request = None  # type: ignore[misc, assignment]
    Response = None  # type: ignore[misc, assignment]
    FASTAPI_AVAILABLE = False

logger = logging.getLogger(__name__)

IdentifierExtractor = Callable[["Request"], Union[str, Awaitable[str]]]


class RateLimitDependency:
    """``Depends(RateLimitDependency("api"))``: admits the request or raises
    ``RateLimitExceededError`` (429 with ``rate_limit_exception_handler``).

    ``timeout``: seconds to wait for a slot (0: refuse at once). ``fail_open``: on an
    unexpected error (e.g. the limiter is not configured) the request goes through
    without headers; with ``False`` a ``RuntimeError`` is raised. A ``fail_closed``
    limiter whose store is down always answers 503 (``RateLimitStoreUnavailableError``).
    ``cost`` (beyond rate-sync): units taken per request."""

    def __init__(
        self,
        limiter_id: str,
        identifier_extractor: IdentifierExtractor | None = None,
        timeout: float = 0,
        fail_open: bool = True,
        trusted_proxies: list[str] | None = None,
        *,
        cost: int = 1,
    ) -> None:
        if not FASTAPI_AVAILABLE:
            raise RuntimeError(
                "FastAPI/Starlette not installed. Install with: pip install ratesync[fastapi]"
            )
        self.limiter_id = limiter_id
        self.identifier_extractor = identifier_extractor
        self.timeout = timeout
        self.fail_open = fail_open
        self.trusted_proxies = trusted_proxies
        self.cost = cost

    async def __call__(self, request: Request, response: Response) -> AsyncIterator[None]:
        identifier = await self._get_identifier(request)
        try:
            permit, result = await _check.check(
                self.limiter_id, identifier, self.cost, self.timeout
            )
        except StoreUnavailableError as e:
            raise RateLimitStoreUnavailableError(self.limiter_id, str(e)) from e
        except Exception as e:
            self._on_error(e)
            yield None
            return
        if permit is None:
            raise RateLimitExceededError(
                identifier=identifier,
                limit=result.limit,
                remaining=result.remaining,
                reset_at=result.reset_at,
                retry_after=result.retry_after,
                limiter_id=self.limiter_id,
                result=result,
            )
        set_rate_limit_headers(response, result)
        try:
            yield None
        finally:
            await release_permit(permit, _metrics_of(self.limiter_id))

    def _on_error(self, error: Exception) -> None:
        if isinstance(error, LimiterNotFoundError):
            logger.warning("Rate limiter '%s' not configured", self.limiter_id)
        else:
            logger.error("Rate limit check failed for '%s': %s", self.limiter_id, error)
        if not self.fail_open:
            raise RuntimeError(f"Rate limiter '{self.limiter_id}' failed: {error}") from error

    async def _get_identifier(self, request: Request) -> str:
        if self.identifier_extractor is None:
            return get_client_ip(request, self.trusted_proxies)
        result = self.identifier_extractor(request)
        if inspect.isawaitable(result):
            result = await result
        return str(result)


def rate_limit(
    limiter_id: str,
    identifier_extractor: IdentifierExtractor | None = None,
    timeout: float = 0,
    fail_open: bool = True,
    trusted_proxies: list[str] | None = None,
    *,
    cost: int = 1,
) -> RateLimitDependency:
    """``Depends(rate_limit("api"))``: a ``RateLimitDependency``."""
    return RateLimitDependency(
        limiter_id=limiter_id,
        identifier_extractor=identifier_extractor,
        timeout=timeout,
        fail_open=fail_open,
        trusted_proxies=trusted_proxies,
        cost=cost,
    )


__all__ = ["IdentifierExtractor", "RateLimitDependency", "rate_limit"]

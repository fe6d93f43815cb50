"""``CompositeRateLimitDependency``: several limits on one endpoint, all or nothing
(when one refuses, none is consumed), with every limit in the IETF headers.
Concurrency slots are held while the request runs and released when it ends."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Union

from ratesync import _native
from ratesync._api import release_permit
from ratesync.composite import CompositeRateLimiter, StrategyType
from ratesync.contrib.fastapi import _check
from ratesync.contrib.fastapi.handlers import (
    RateLimitExceededError,
    RateLimitStoreUnavailableError,
)
from ratesync.contrib.fastapi.headers import RateLimitResult, set_rate_limit_headers
from ratesync.exceptions import StoreUnavailableError
from ratesync.schemas import RateLimitResult as CoreResult

try:
    from starlette.requests import Request
    from starlette.responses import Response

    FASTAPI_AVAILABLE = True
except ImportError:  # pragma: no cover - FastAPI is optional
    Request = None  # type: ignore[misc, assignment]
    Response = None  # type: ignore[misc, assignment]
    FASTAPI_AVAILABLE = False

logger = logging.getLogger(__name__)

IdentifierExtractor = Callable[["Request"], Union[dict[str, str], Awaitable[dict[str, str]]]]


class CompositeRateLimitDependency:
    """``Depends(CompositeRateLimitDependency({"by_ip": "login_ip", "by_email":
    "login_email"}, identifier_extractor=...))``; the extractor (sync or async)
    returns ``{check name: identifier}``. Strategies as ``CompositeRateLimiter``."""

    def __init__(
        self,
        limiters: dict[str, str],
        identifier_extractor: IdentifierExtractor,
        strategy: StrategyType = "most_restrictive",
        timeout: float | None = None,
        fail_open: bool = True,
    ) -> None:
        if not FASTAPI_AVAILABLE:
            raise RuntimeError(
                "FastAPI/Starlette not installed. Install with: pip install ratesync[fastapi]"
            )
        self.composite = CompositeRateLimiter(limiters, strategy)
        self.identifier_extractor = identifier_extractor
        self.timeout = timeout
        self.fail_open = fail_open

    async def __call__(self, request: Request, response: Response) -> AsyncIterator[None]:
        held: list[_native.Permit] = []
        try:
            identifiers = await self._get_identifiers(request)
            outcome = await self.composite._check(identifiers, self.timeout, keep=held)
        except StoreUnavailableError as e:
            await _release(held)
            raise RateLimitStoreUnavailableError("composite", str(e)) from e
        except Exception as e:
            await _release(held)
            logger.error("Composite rate limit check failed: %s", e, exc_info=True)
            if not self.fail_open:
                raise RuntimeError(f"Composite rate limiter failed: {e}") from e
            yield None
            return
        results = {name: self._convert(name, r) for name, r in outcome.results.items()}
        main_name = next(n for n, r in outcome.results.items() if r is outcome.most_restrictive)
        main = results[main_name]
        others = tuple(r for n, r in results.items() if n != main_name)
        if not outcome.allowed:
            await _release(held)
            if main.allowed:  # any_must_pass: every limit refused; report the first
                main = next(iter(results.values()))
            raise RateLimitExceededError(
                identifier=str(identifiers),
                limit=main.limit,
                remaining=0,
                reset_at=main.reset_at,
                retry_after=main.retry_after,
                limiter_id=outcome.triggered_by or "composite",
                result=main,
                others=others,
            )
        set_rate_limit_headers(response, main, *others)
        try:
            yield None
        finally:
            await _release(held)

    def _convert(self, name: str, r: CoreResult) -> RateLimitResult:
        return RateLimitResult(
            allowed=r.allowed,
            limit=r.limit,
            remaining=r.remaining if r.allowed else 0,
            reset_in=r.reset_in,
            retry_after_seconds=None if r.allowed else r.reset_in,
            policy=name,
            window=r.window,
            quota_unit=_check.quota_unit(self.composite.limiters[name]),
        )

    async def _get_identifiers(self, request: Request) -> dict[str, str]:
        result = self.identifier_extractor(request)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, dict):
            raise ValueError(f"identifier_extractor must return dict, got {type(result)}")
        return result


async def _release(held: list[_native.Permit]) -> None:
    while held:
        await release_permit(held.pop())


__all__ = ["CompositeRateLimitDependency", "IdentifierExtractor"]

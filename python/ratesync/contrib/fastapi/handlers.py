"""429 for a refused request, 503 for a fail-closed store outage."""

from __future__ import annotations

import logging
from typing import Any

from ratesync.contrib.fastapi.headers import RateLimitResult, get_rate_limit_headers

try:
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    FASTAPI_AVAILABLE = True
except ImportError:  # pragma: no cover - FastAPI is optional
    Request = None  # type: ignore[misc, assignment]
    JSONResponse = None  # type: ignore[misc, assignment]
    HTTPException = Exception  # type: ignore[misc, assignment]
    FASTAPI_AVAILABLE = False

logger = logging.getLogger(__name__)


class RateLimitExceededError(Exception):
    """A rate limit was exceeded; ``rate_limit_exception_handler`` makes it a 429.

    ``result`` (beyond rate-sync) carries the decision, for the IETF headers; without
    it the headers are built from ``limit``, ``remaining`` and ``retry_after``."""

    def __init__(
        self,
        identifier: str,
        limit: int,
        remaining: int,
        reset_at: int,
        retry_after: int,
        limiter_id: str | None = None,
        *,
        result: RateLimitResult | None = None,
        others: tuple[RateLimitResult, ...] = (),
    ) -> None:
        self.identifier = identifier
        self.limit = limit
        self.remaining = remaining
        self.reset_at = reset_at
        self.retry_after = retry_after
        self.limiter_id = limiter_id
        self.result = result
        self.others = others
        super().__init__(
            f"Rate limit exceeded for {identifier}: {remaining}/{limit} (retry in {retry_after}s)"
        )

    def to_result(self) -> RateLimitResult:
        if self.result is not None:
            return self.result
        return RateLimitResult(
            allowed=False,
            limit=self.limit,
            remaining=self.remaining,
            reset_in=float(self.retry_after),
            retry_after_seconds=float(self.retry_after),
            policy=self.limiter_id,
        )


class RateLimitStoreUnavailableError(HTTPException):  # type: ignore[misc, valid-type]
    """The store of a ``fail_closed`` limiter is unreachable: HTTP 503.

    An ``HTTPException``, so FastAPI answers 503 without a handler of its own."""

    def __init__(self, limiter_id: str | None, message: str = "") -> None:
        self.limiter_id = limiter_id
        super().__init__(
            status_code=503,
            detail=[
                {
                    "type": "rate_limiter_unavailable",
                    "msg": "Rate limiter store unavailable.",
                    "context": {"limiter": limiter_id},
                }
            ],
        )
        self.message = message


def _body(message: str, result: RateLimitResult, limiter_id: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {"retry_after_seconds": result.retry_after}
    if result.quota_unit == "requests":
        context["limit"] = result.limit
    if limiter_id:
        context["limiter"] = limiter_id
    return {"detail": [{"type": "rate_limit_exceeded", "msg": message, "context": context}]}


async def rate_limit_exception_handler(_request: Request, exc: Exception) -> JSONResponse:
    """``app.add_exception_handler(RateLimitExceededError, rate_limit_exception_handler)``:
    a 429 with ``Retry-After``, ``RateLimit``/``RateLimit-Policy`` and ``X-RateLimit-*``.

    ``exc`` is typed ``Exception`` because Starlette types every handler so: with
    ``RateLimitExceededError`` there, that line fails a strict type check."""
    if not FASTAPI_AVAILABLE:
        raise RuntimeError(
            "FastAPI/Starlette not installed. Install with: pip install ratesync[fastapi]"
        )
    if not isinstance(exc, RateLimitExceededError):
        raise TypeError(
            f"rate_limit_exception_handler handles RateLimitExceededError, not {type(exc).__name__}"
        )
    result = exc.to_result()
    logger.warning(
        "Rate limit exceeded: identifier=%s, limiter=%s, limit=%d, retry_after=%ds",
        exc.identifier,
        exc.limiter_id or "unknown",
        result.limit,
        result.retry_after,
    )
    return JSONResponse(
        status_code=429,
        content=_body(
            f"Rate limit exceeded. Retry in {result.retry_after} seconds.", result, exc.limiter_id
        ),
        headers=get_rate_limit_headers(result, *exc.others),
    )


def create_rate_limit_response(
    result: RateLimitResult,
    message: str | None = None,
    identifier: str | None = None,
    limiter_id: str | None = None,
) -> JSONResponse:
    """A 429 response for ``result`` (as ``rate_limit_exception_handler``)."""
    if not FASTAPI_AVAILABLE:
        raise RuntimeError(
            "FastAPI/Starlette not installed. Install with: pip install ratesync[fastapi]"
        )
    if message is None:
        message = f"Rate limit exceeded. Retry in {result.retry_after} seconds."
    if identifier:
        logger.warning(
            "Rate limit exceeded: identifier=%s, limiter=%s, limit=%d",
            identifier,
            limiter_id or "unknown",
            result.limit,
        )
    return JSONResponse(
        status_code=429,
        content=_body(message, result, limiter_id),
        headers=get_rate_limit_headers(result),
    )


def create_unavailable_response(limiter_id: str | None) -> JSONResponse:
    """The 503 of a fail-closed store outage."""
    exc = RateLimitStoreUnavailableError(limiter_id)
    return JSONResponse(status_code=503, content={"detail": exc.detail})


__all__ = [
    "RateLimitExceededError",
    "RateLimitStoreUnavailableError",
    "create_rate_limit_response",
    "create_unavailable_response",
    "rate_limit_exception_handler",
]

"""``RateLimitMiddleware``: rate limits every (matching) HTTP request at the ASGI
level, by client IP; answers 429 (or 503 for a fail-closed store outage) itself and
adds the headers to admitted responses. A concurrency slot is held until the
response is sent, then released."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ratesync.contrib.fastapi import _check
from ratesync.contrib.fastapi.handlers import (
    create_rate_limit_response,
    create_unavailable_response,
)
from ratesync.contrib.fastapi.headers import get_rate_limit_headers
from ratesync.contrib.fastapi.ip_utils import get_client_ip
from ratesync._api import _metrics_of, release_permit
from ratesync.exceptions import LimiterNotFoundError, StoreUnavailableError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:
    from starlette.datastructures import MutableHeaders
    from starlette.requests import Request

    FASTAPI_AVAILABLE = True
except ImportError:  # pragma: no cover - FastAPI is optional
    Request = None  # type: ignore[misc, assignment]
    MutableHeaders = None  # type: ignore[misc, assignment]
    FASTAPI_AVAILABLE = False

logger = logging.getLogger(__name__)

PathMatcher = Callable[[str], bool]


def _create_path_matcher(
    include_paths: list[str] | None = None, exclude_paths: list[str] | None = None
) -> PathMatcher:
    include = [re.compile(p) for p in include_paths] if include_paths else None
    exclude = [re.compile(p) for p in exclude_paths or []]

    def matcher(path: str) -> bool:
        if any(p.match(path) for p in exclude):
            return False
        return include is None or any(p.match(path) for p in include)

    return matcher


class RateLimitMiddleware:
    """``app.add_middleware(RateLimitMiddleware, limiter_id="global",
    exclude_paths=[r"^/health$"])``. Exclusions win over inclusions."""

    def __init__(
        self,
        app: ASGIApp,
        limiter_id: str,
        include_paths: list[str] | None = None,
        exclude_paths: list[str] | None = None,
        fail_open: bool = True,
        trusted_proxies: list[str] | None = None,
    ) -> None:
        if not FASTAPI_AVAILABLE:
            raise RuntimeError(
                "FastAPI/Starlette not installed. Install with: pip install ratesync[fastapi]"
            )
        self.app = app
        self.limiter_id = limiter_id
        self.fail_open = fail_open
        self.trusted_proxies = trusted_proxies
        self._path_matcher = _create_path_matcher(include_paths, exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._path_matcher(scope.get("path", "/")):
            await self.app(scope, receive, send)
            return
        identifier = get_client_ip(Request(scope), self.trusted_proxies)
        try:
            permit, result = await _check.check(self.limiter_id, identifier)
        except StoreUnavailableError:
            await create_unavailable_response(self.limiter_id)(scope, receive, send)
            return
        except Exception as e:
            if isinstance(e, LimiterNotFoundError):
                logger.warning("Rate limiter '%s' not configured", self.limiter_id)
            else:
                logger.error("Rate limit check failed for '%s': %s", self.limiter_id, e)
            if not self.fail_open:
                raise
            await self.app(scope, receive, send)
            return
        if permit is None:
            response = create_rate_limit_response(
                result=result, identifier=identifier, limiter_id=self.limiter_id
            )
            await response(scope, receive, send)
            return
        extra = get_rate_limit_headers(result)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for header, value in extra.items():
                    if header not in headers:
                        headers.append(header, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            await release_permit(permit, _metrics_of(self.limiter_id))


__all__ = ["RateLimitMiddleware"]

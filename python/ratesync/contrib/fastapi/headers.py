"""Rate limit headers, with values taken from the limiter's real decision.

Headers set (see ``docs`` of the package README):

* ``RateLimit-Policy: "<policy>";q=<quota>;w=<window seconds>`` and
  ``RateLimit: "<policy>";r=<remaining>;t=<seconds>`` in the form of
  draft-ietf-httpapi-ratelimit-headers-09/-10 (structured-field lists whose items
  are the quoted policy name with the ``q``/``w`` and ``r``/``t`` parameters).
  ``w`` is the window of a window limiter, or ``ceil(burst / rate)`` (the time to
  refill an empty bucket) for a token bucket; omitted when the limiter has no
  window (concurrency only). ``t`` is the time until the quota is available again
  (denied) or fully reset (allowed), in whole seconds rounded up.
* ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (Unix
  timestamp, rounded up), as rate-sync.
* ``Retry-After`` (whole seconds, rounded up, at least 1) on a refusal.

A limiter that only caps concurrency has no quota over time: it sets none of the
quota headers, only ``Retry-After`` when it refuses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

try:
    from starlette.responses import Response

    FASTAPI_AVAILABLE = True
except ImportError:  # pragma: no cover - FastAPI is optional
    Response = None  # type: ignore[misc, assignment]
    FASTAPI_AVAILABLE = False


@dataclass(frozen=True)
class RateLimitResult:
    """Result of a rate limit check (rate-sync's shape, plus the decision's details).

    ``reset_in``: seconds until the limit resets (allowed) or until a retry can
    succeed (denied). ``retry_after_seconds``: the decision's exact retry delay, when
    known. ``policy`` / ``window``: the name and window (seconds) of the IETF policy."""

    allowed: bool
    limit: int
    remaining: int
    reset_in: float  # seconds
    retry_after_seconds: float | None = None
    policy: str | None = None
    window: float | None = None
    #: False for a limiter that only caps concurrency: it has no quota over time,
    #: so it gets no ``RateLimit``/``X-RateLimit-*`` headers (only ``Retry-After``).
    quota: bool = True

    @property
    def reset_at(self) -> int:
        """Unix timestamp (rounded up) when the limit resets."""
        return math.ceil(time.time() + max(self.reset_in, 0.0))

    @property
    def retry_after(self) -> int:
        """Whole seconds for ``Retry-After``: rounded up, at least 1."""
        delay = self.retry_after_seconds if self.retry_after_seconds is not None else self.reset_in
        return max(1, math.ceil(delay - 1e-9))

    @property
    def reset_seconds(self) -> int:
        """The ``t`` of the ``RateLimit`` header (whole seconds, rounded up)."""
        if not self.allowed:
            return self.retry_after
        return max(0, math.ceil(self.reset_in - 1e-9))


def _sf_string(value: str) -> str:
    """A structured-field string (RFC 8941): quoted, ``\\`` and ``"`` escaped."""
    cleaned = "".join(c for c in value if 0x20 <= ord(c) < 0x7F)
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _policy_item(result: RateLimitResult) -> str:
    item = f"{_sf_string(result.policy or 'default')};q={result.limit}"
    if result.window is not None and result.window > 0:
        item += f";w={max(1, math.ceil(result.window - 1e-9))}"
    return item


def _state_item(result: RateLimitResult) -> str:
    remaining = 0 if not result.allowed else max(result.remaining, 0)
    return f"{_sf_string(result.policy or 'default')};r={remaining};t={result.reset_seconds}"


def get_rate_limit_headers(
    result: RateLimitResult, *others: RateLimitResult
) -> dict[str, str]:
    """The headers of ``result`` (and, for several limits, each of ``others`` in the
    IETF lists; the ``X-RateLimit-*`` values are those of the first limit with a
    quota, ``Retry-After`` is ``result``'s). Limits without a quota (concurrency
    only) appear in none of the quota headers."""
    quotas = [r for r in (result, *others) if r.quota]
    headers: dict[str, str] = {}
    if quotas:
        first = quotas[0]
        headers["RateLimit-Policy"] = ", ".join(_policy_item(r) for r in quotas)
        headers["RateLimit"] = ", ".join(_state_item(r) for r in quotas)
        headers["X-RateLimit-Limit"] = str(first.limit)
        headers["X-RateLimit-Remaining"] = str(0 if not first.allowed else max(first.remaining, 0))
        headers["X-RateLimit-Reset"] = str(first.reset_at)
    if not result.allowed:
        headers["Retry-After"] = str(result.retry_after)
    return headers


def set_rate_limit_headers(
    response: Response, result: RateLimitResult, *others: RateLimitResult
) -> None:
    """Sets the headers of ``get_rate_limit_headers`` on ``response``."""
    if not FASTAPI_AVAILABLE:
        raise RuntimeError(
            "FastAPI/Starlette not installed. Install with: pip install ratesync[fastapi]"
        )
    for header, value in get_rate_limit_headers(result, *others).items():
        response.headers[header] = value


__all__ = ["RateLimitResult", "get_rate_limit_headers", "set_rate_limit_headers"]

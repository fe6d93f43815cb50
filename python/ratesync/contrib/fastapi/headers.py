"""Rate limit headers, with values taken from the limiter's real decision.

The headers are made by the Rust core (``ratesync::http::rate_limit_headers``,
through the extension), the same bytes as the Rust tower layer:

* ``RateLimit-Policy: "<policy>";q=<quota>;w=<window seconds>`` and
  ``RateLimit: "<policy>";r=<remaining>;t=<seconds>`` in the form of
  draft-ietf-httpapi-ratelimit-headers (structured-field lists whose items are the
  quoted policy name with the ``q``/``w`` and ``r``/``t`` parameters). ``q`` per
  ``w`` seconds is the quota users configured: a window limiter's limit and window,
  a token bucket's rate over a round window (10/s is ``q=10;w=1`` whatever its
  burst); ``w`` is omitted when the window is not known. ``t`` is the time
  until the quota is available again (denied) or fully reset (allowed), in whole
  seconds rounded up.
* A limiter that only caps concurrency is the draft's concurrent-requests quota:
  ``"<policy>";q=<max_concurrent>;qu="concurrent-requests"`` and
  ``"<policy>";r=<free slots>``, without ``w`` or ``t``.
* ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (Unix
  timestamp, rounded up), as rate-sync, of the first limit on a rate.
* ``Retry-After`` (whole seconds, rounded up, at least 1) on a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ratesync import _native

try:
    from starlette.responses import Response

    FASTAPI_AVAILABLE = True
except ImportError:  # pragma: no cover - FastAPI is optional
    Response = None  # type: ignore[misc, assignment]
    FASTAPI_AVAILABLE = False


@dataclass(frozen=True, init=False)
class RateLimitResult:
    """Result of a rate limit check (rate-sync's shape, plus the decision's details).

    ``reset_in``: seconds until the limit resets (allowed) or until a retry can
    succeed (denied). ``retry_after_seconds``: the decision's exact retry delay, when
    known. ``policy`` / ``window``: the name and window (seconds) of the IETF policy.
    ``quota_unit``: what the quota counts: ``"requests"`` (a rate; the default),
    ``"concurrent-requests"`` (a limiter that only caps concurrency: ``limit`` is
    its cap, ``remaining`` its free slots) or ``None`` (no quota known: the result
    gets no ``RateLimit``/``X-RateLimit-*`` headers, only ``Retry-After``)."""

    allowed: bool
    limit: int
    remaining: int
    reset_in: float  # seconds
    retry_after_seconds: float | None = None
    policy: str | None = None
    window: float | None = None
    quota_unit: str | None = "requests"

    def __init__(
        self,
        allowed: bool,
        limit: int,
        remaining: int,
        reset_in: float,
        retry_after_seconds: float | None = None,
        policy: str | None = None,
        window: float | None = None,
        quota_unit: str | None = "requests",
    ) -> None:
        for field, value in (
            ("allowed", allowed),
            ("limit", limit),
            ("remaining", remaining),
            ("reset_in", reset_in),
            ("retry_after_seconds", retry_after_seconds),
            ("policy", policy),
            ("window", window),
            ("quota_unit", quota_unit),
        ):
            object.__setattr__(self, field, value)
        self._times()  # checked by the core: a ValueError for an unknown quota_unit

    @property
    def reset_at(self) -> int:
        """Unix timestamp (rounded up) when the limit resets (denied: when a retry
        can succeed): ``X-RateLimit-Reset``."""
        return self._times()[2]

    @property
    def retry_after(self) -> int:
        """Whole seconds for ``Retry-After``: rounded up, at least 1."""
        return self._times()[0]

    @property
    def reset_seconds(self) -> int:
        """The ``t`` of the ``RateLimit`` header (whole seconds, rounded up)."""
        return self._times()[1]

    def _limit(self) -> tuple:
        """This result as the extension takes a limit."""
        retry = self.retry_after_seconds if self.retry_after_seconds is not None else self.reset_in
        return (
            self.policy or "default",
            bool(self.allowed),
            self.limit,
            self.remaining,
            retry,
            self.reset_in,
            self.quota_unit,
            self.window,
        )

    def _times(self) -> tuple[int, int, int]:
        return _native.rate_limit_times(self._limit())


class _AnyResult(Protocol):
    """What rate-sync's header helpers read of a result: ``check_limiter``'s
    ``ratesync.RateLimitResult``, ``check_multi_limiters``' ``MultiLimiterResult``
    or this module's ``RateLimitResult``."""

    allowed: bool
    limit: int
    remaining: int
    reset_in: float


def _limit_of(result: _AnyResult) -> tuple[Any, ...]:
    """Any result as the extension takes a limit: this module's own, or one with
    rate-sync's fields (named after its limiter, with its policy window if known)."""
    if isinstance(result, RateLimitResult):
        return result._limit()
    allowed = bool(result.allowed)
    reset_in = float(result.reset_in)
    return (
        getattr(result, "limiter_id", None) or getattr(result, "blocking_limiter_id", None)
        or "default",
        allowed,
        int(result.limit),
        int(result.remaining),
        reset_in,
        reset_in,
        "requests",
        getattr(result, "window", None),
    )


def get_rate_limit_headers(result: _AnyResult, *others: _AnyResult) -> dict[str, str]:
    """The headers of ``result`` (and, for several limits, each of ``others`` in the
    IETF lists; the ``X-RateLimit-*`` values are those of the first limit on a rate,
    ``Retry-After`` is ``result``'s). Limits whose ``quota_unit`` is ``None`` appear
    in none of the quota headers. ``result`` may be any result of the package, as
    in rate-sync: ``check_limiter``'s and ``check_multi_limiters``' too."""
    return _native.rate_limit_headers([_limit_of(r) for r in (result, *others)], True)


def set_rate_limit_headers(
    response: Response, result: _AnyResult, *others: _AnyResult
) -> None:
    """Sets the headers of ``get_rate_limit_headers`` on ``response``."""
    if not FASTAPI_AVAILABLE:
        raise RuntimeError(
            "FastAPI/Starlette not installed. Install with: pip install ratesync[fastapi]"
        )
    for header, value in get_rate_limit_headers(result, *others).items():
        response.headers[header] = value


__all__ = ["RateLimitResult", "get_rate_limit_headers", "set_rate_limit_headers"]

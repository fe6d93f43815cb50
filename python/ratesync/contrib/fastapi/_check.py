"""One rate limit decision for the FastAPI integration, with its real numbers."""

from __future__ import annotations

from ratesync import _api, _native
from ratesync._native import Decision, Permit
from ratesync.contrib.fastapi.headers import RateLimitResult
from ratesync.exceptions import RateLimiterAcquisitionError, StoreUnavailableError


def to_result(decision: Decision, allowed: bool, policy: str, key: str) -> RateLimitResult:
    """The result of ``decision`` of limiter ``policy`` for ``key``, its quota the one
    configured for the key (``_native.limiter_quota``: a token bucket's rate per
    window, not its burst)."""
    quota = _native.limiter_quota(policy, key)
    limit, window = quota if quota is not None else (decision.limit, None)
    return RateLimitResult(
        allowed=allowed,
        limit=limit,
        remaining=min(decision.remaining, limit) if allowed else 0,
        reset_in=decision.reset_after if allowed else max(decision.retry_after, 0.0),
        retry_after_seconds=None if allowed else max(decision.retry_after, 0.0),
        policy=policy,
        window=window,
        quota_unit="requests" if quota is not None else "concurrent-requests",
    )


def quota_unit(limiter_id: str) -> str:
    """What the limiter's quota counts: ``"requests"`` over time for a limiter with a
    rate, else (concurrency only) ``"concurrent-requests"``."""
    return "requests" if _native.limiter_quota(limiter_id) is not None else "concurrent-requests"


async def check(
    limiter_id: str, key: str, cost: int = 1, timeout: float = 0
) -> tuple[Permit | None, RateLimitResult]:
    """Takes ``cost`` units of ``limiter_id`` for ``key`` (waiting up to ``timeout``).

    Returns the permit (``None`` if refused; the caller releases it) and the result.
    Raises ``LimiterNotFoundError`` and ``StoreUnavailableError`` (fail-closed outage)."""
    # Counted in the limiter's metrics, as every admission is (`get_metrics()`).
    metrics = _api._metrics_of(limiter_id)
    permit: Permit | None
    try:
        if timeout and timeout > 0:
            permit = await _api._take(limiter_id, metrics, timeout, key, cost)
        else:
            permit = await _api._attempt_counted(limiter_id, metrics, key, cost)
    except StoreUnavailableError:
        raise
    except RateLimiterAcquisitionError:
        permit = None
    if permit is not None:
        return permit, to_result(permit.decision, True, limiter_id, key)
    decision = await _api._state(limiter_id, key, cost)
    return None, to_result(decision, False, limiter_id, key)

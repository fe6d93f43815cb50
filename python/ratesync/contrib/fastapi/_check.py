"""One rate limit decision for the FastAPI integration, with its real numbers."""

from __future__ import annotations

from typing import Any

from ratesync import _api, _native, _policy
from ratesync._native import Decision, Permit
from ratesync.contrib.fastapi.headers import RateLimitResult
from ratesync.exceptions import RateLimiterAcquisitionError, StoreUnavailableError


def policy_window(config: dict[str, Any], limit: int) -> float | None:
    """The IETF policy window (``ratesync._policy``): the limiter's window (a fixed
    window's period), or for a token bucket the whole seconds over which its rate
    is its quota; ``None`` for concurrency only."""
    return _policy.quota(config, limit)[1]


def to_result(
    decision: Decision, allowed: bool, policy: str, config: dict[str, Any]
) -> RateLimitResult:
    """The result of ``decision``, its quota the one configured (a token bucket's
    rate per window, not its burst)."""
    limit, window = _policy.quota(config, decision.limit)
    return RateLimitResult(
        allowed=allowed,
        limit=limit,
        remaining=min(decision.remaining, limit) if allowed else 0,
        reset_in=decision.reset_after if allowed else max(decision.retry_after, 0.0),
        retry_after_seconds=None if allowed else max(decision.retry_after, 0.0),
        policy=policy,
        window=window,
        quota_unit=quota_unit(config),
    )


def has_quota(config: dict[str, Any]) -> bool:
    """Whether the limiter limits a rate (not only concurrency)."""
    return config.get("rate_per_second") is not None or config.get("limit") is not None


def quota_unit(config: dict[str, Any]) -> str:
    """What the limiter's quota counts: ``"requests"`` over time for a limiter with a
    rate, else (concurrency only) ``"concurrent-requests"``."""
    return "requests" if has_quota(config) else "concurrent-requests"


async def check(
    limiter_id: str, key: str, cost: int = 1, timeout: float = 0
) -> tuple[Permit | None, RateLimitResult]:
    """Takes ``cost`` units of ``limiter_id`` for ``key`` (waiting up to ``timeout``).

    Returns the permit (``None`` if refused; the caller releases it) and the result.
    Raises ``LimiterNotFoundError`` and ``StoreUnavailableError`` (fail-closed outage)."""
    config = _native.limiter_config(limiter_id)
    # Counted in the limiter's metrics, as every admission is (`get_metrics()`).
    metrics = _api._metrics_of(limiter_id)
    permit: Permit | None
    try:
        if timeout and timeout > 0:
            permit = await _api._take_counted(limiter_id, lambda: metrics, timeout, key, cost)
        else:
            answer = await _api._attempt_or_refusal(limiter_id, key, cost)
            if isinstance(answer, Permit):
                permit = answer
                metrics.record_acquisition(0.0)
                if permit.holds_slot:
                    metrics.record_concurrent_acquire()
            else:
                permit = None
                _api._count_refusal(metrics, answer.denied_by)
    except StoreUnavailableError:
        raise
    except RateLimiterAcquisitionError:
        permit = None
    if permit is not None:
        return permit, to_result(permit.decision, True, limiter_id, config)
    decision = await _api._state(limiter_id, key, cost)
    return None, to_result(decision, False, limiter_id, config)

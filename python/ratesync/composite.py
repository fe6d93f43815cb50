"""``CompositeRateLimiter``, as in rate-sync, but all or nothing: when the strategy
denies, no limiter is consumed (rate-sync consumed a slot from every limiter that
allowed, even when the request was refused). The decision is the core's, one group
in the store (``docs/design.md#groups``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ratesync import _api
from ratesync.schemas import RateLimitResult

StrategyType = Literal["most_restrictive", "all_must_pass", "any_must_pass"]


@dataclass(frozen=True)
class CompositeLimitCheck:
    """Outcome of ``CompositeRateLimiter.check``."""

    allowed: bool
    results: dict[str, RateLimitResult]
    most_restrictive: RateLimitResult
    triggered_by: str | None


class CompositeRateLimiter:
    """Several limiters checked together, each on the key of its identifier (one
    user's group: ``{"by_ip": "login_ip", "by_email": "login_email"}`` checked with
    ``{"by_ip": ip, "by_email": f"{ip}:{email}"}``). rate-sync made a clone limiter
    per identifier; keys keep one limiter per rule however many users there are.

    Strategies: ``most_restrictive`` / ``all_must_pass`` (all must allow; one unit is
    taken from each, or from none), ``any_must_pass`` (allowed if one allows; one unit
    is taken from each limiter that allows, and from none when all deny)."""

    def __init__(
        self,
        limiters: dict[str, str],
        strategy: StrategyType = "most_restrictive",
    ) -> None:
        if not limiters:
            raise ValueError("At least one limiter must be provided")
        if strategy not in ("most_restrictive", "all_must_pass", "any_must_pass"):
            raise ValueError(f"unknown strategy {strategy!r}")
        self.limiters = limiters
        self.strategy = strategy

    async def check(
        self,
        identifiers: dict[str, str],
        timeout: float | None = None,
    ) -> CompositeLimitCheck:
        return await self._check(identifiers, timeout)

    async def _check(
        self,
        identifiers: dict[str, str],
        timeout: float | None = None,
        keep: list[Any] | None = None,
    ) -> CompositeLimitCheck:
        """``check``; with ``keep``, the permits taken are appended to it, not released."""
        if set(identifiers.keys()) != set(self.limiters.keys()):
            raise ValueError(
                f"Identifier keys {set(identifiers.keys())} "
                f"must match limiter keys {set(self.limiters.keys())}"
            )
        names = list(self.limiters)
        calls = [(self.limiters[name], identifiers[name], 1) for name in names]
        if self.strategy == "any_must_pass":
            peeked = await _api._decide_all(names, calls, False, None)
            passing = [i for i, r in enumerate(peeked) if r.allowed]
            taken = await _api._decide_all(
                [names[i] for i in passing], [calls[i] for i in passing], True, timeout, keep
            )
            by_name = {r.limiter_id: r for r in taken}
            listed = [by_name.get(r.limiter_id, r) for r in peeked]
        else:
            listed = await _api._decide_all(names, calls, True, timeout, keep)
        results = {
            name: RateLimitResult(
                r.allowed,
                r.limit,
                r.remaining,
                r.reset_in,
                reset_time=r.reset_time,
                window=r.window,
            )
            for name, r in zip(names, listed)
        }
        return self._apply_strategy(results)

    def _apply_strategy(self, results: dict[str, RateLimitResult]) -> CompositeLimitCheck:
        most_restrictive = min(results.values(), key=lambda r: r.remaining)
        if self.strategy == "any_must_pass":
            allowed = any(r.allowed for r in results.values())
            return CompositeLimitCheck(
                allowed=allowed,
                results=results,
                most_restrictive=most_restrictive,
                triggered_by=None if allowed else "all",
            )
        blocked = next((name for name, r in results.items() if not r.allowed), None)
        if blocked is not None and self.strategy == "all_must_pass":
            most_restrictive = results[blocked]
        return CompositeLimitCheck(
            allowed=blocked is None,
            results=results,
            most_restrictive=most_restrictive,
            triggered_by=blocked,
        )


__all__ = ["CompositeRateLimiter", "CompositeLimitCheck", "StrategyType"]

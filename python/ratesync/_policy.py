"""The policy a limiter's results report: the quota users configured, in the
``q`` units per ``w`` seconds of the IETF ``RateLimit`` headers
(``docs/design.md#python``).

A window limiter reports its ``limit`` per ``window_seconds`` (a calendar period
per its longest length). A token bucket's decisions count its burst, which is what
it admits at once but not what was configured: a 10/s bucket of burst 1 would
report a limit of 1. It reports its rate instead, as whole units over a window of
whole seconds: the smallest of a few round windows over which the rate is a whole
number of units no smaller than the burst (10/s is 10 per 1 s; 100 per minute,
configured as 1.6667/s, is 100 per 60 s; 1/s with a burst of 10 is 10 per 10 s). Its
``remaining`` (units it would admit now, at most its burst) fits within that quota.
A limiter that only caps concurrency reports its cap.
"""

from __future__ import annotations

import math
from typing import Any

# Round windows, in seconds, tried in order.
_WINDOWS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)
_PERIOD_SECONDS = {"day": 86_400.0, "week": 7 * 86_400.0, "month": 31 * 86_400.0}


def token_bucket_quota(rate_per_second: float, burst: int) -> tuple[int, float]:
    """``(q, w)``: ``q`` units per ``w`` seconds for a bucket of ``rate_per_second``
    and ``burst``, ``q >= burst``."""
    burst = max(int(burst), 1)
    for window in _WINDOWS:
        units = rate_per_second * window
        whole = round(units)
        if whole >= burst and abs(units - whole) <= 1e-6 * units:
            return whole, float(window)
    # No round window gives whole units: the shortest whole-second window holding
    # the burst, and what the rate brings in over it.
    window = max(1, math.ceil(burst / rate_per_second))
    return max(burst, math.floor(rate_per_second * window)), float(window)


def quota(config: dict[str, Any], decided_limit: int) -> tuple[int, float | None]:
    """``(q, w)`` of a limiter's configuration (``limiter_config``); a decision's
    ``limit`` (``decided_limit``) where the configuration gives no rate."""
    rate = config.get("rate_per_second")
    if rate:
        return token_bucket_quota(float(rate), config.get("burst") or 1)
    if config.get("window_seconds"):
        return decided_limit, float(config["window_seconds"])
    if config.get("period"):
        return decided_limit, _PERIOD_SECONDS[config["period"]]
    return decided_limit, None

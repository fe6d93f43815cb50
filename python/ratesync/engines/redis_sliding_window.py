"""rate-sync import path."""

from ratesync.engines import RedisSlidingWindowRateLimiter

__all__ = ["RedisSlidingWindowRateLimiter"]

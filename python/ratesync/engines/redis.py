"""rate-sync import path."""

from ratesync.engines import RedisRateLimiter

__all__ = ["RedisRateLimiter"]

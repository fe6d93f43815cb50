"""rate-sync import path."""

from ratesync.engines import MemoryRateLimiter

__all__ = ["MemoryRateLimiter"]

"""rate-sync import path."""

from ratesync.engines import PostgresRateLimiter

__all__ = ["PostgresRateLimiter"]

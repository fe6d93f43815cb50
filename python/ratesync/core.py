"""rate-sync's import path of the limiter interface and its metrics
(``from ratesync.core import RateLimiter, RateLimiterMetrics``): the same classes as
the package root's."""

from ratesync._api import RateLimiter
from ratesync.schemas import RateLimiterMetrics

__all__ = ["RateLimiter", "RateLimiterMetrics"]

"""Import path of the NATS engine class."""

from ratesync.engines import NatsRateLimiter

__all__ = ["NatsRateLimiter"]

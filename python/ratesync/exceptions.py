"""Exceptions, as in rate-sync 0.4.2 (same classes, same attributes), plus
``StoreUnavailableError`` for a fail-closed store outage."""

from __future__ import annotations


class RateLimiterError(Exception):
    """Base class of every ratesync error."""


class RateLimiterNotConfiguredError(RateLimiterError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"Rate limiter '{name}' is not configured.")


class RateLimiterNotInitializedError(RateLimiterError):
    def __init__(self, name: str | None = None) -> None:
        self.name = name
        super().__init__("Rate limiter was not initialized. Call initialize() first.")


class RateLimiterAcquisitionError(RateLimiterError):
    """No slot: refused, timed out, or (subclass) the store is unavailable.

    ``retry_after`` (seconds) says when to try again, when the store said so;
    ``denied_by`` what refused: ``"rate"``, ``"concurrency"`` (every slot held) or
    ``None`` when not known."""

    def __init__(
        self,
        message: str,
        group_id: str | None = None,
        attempts: int | None = None,
        retry_after: float | None = None,
        denied_by: str | None = None,
    ) -> None:
        self.group_id = group_id
        self.attempts = attempts
        self.retry_after = retry_after
        self.denied_by = denied_by
        super().__init__(message)


class StoreUnavailableError(RateLimiterAcquisitionError):
    """The store failed and the limiter is ``fail_closed`` (HTTP 503, not 429)."""


class RateLimiterAlreadyConfiguredError(RateLimiterError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"Rate limiter '{name}' was already configured. "
            f"To reconfigure, remove the existing configuration first."
        )


class ConfigValidationError(RateLimiterError, ValueError):
    """Invalid configuration (file or code); the message lists every problem."""

    def __init__(
        self,
        message: str,
        field: str | None = None,
        expected: str | None = None,
        received: str | None = None,
    ) -> None:
        self.field = field
        self.expected = expected
        self.received = received
        full_message = message
        if field and expected and received:
            full_message = f"{message} (field='{field}', expected={expected}, received={received})"
        super().__init__(full_message)


class ConfigFileNotFoundError(ConfigValidationError, FileNotFoundError):
    """``load_config(path)`` with no file at ``path``: a ``FileNotFoundError`` as in
    rate-sync, and a ``ConfigValidationError`` as every other configuration problem."""


class StoreNotFoundError(RateLimiterError):
    def __init__(self, store_id: str) -> None:
        self.store_id = store_id
        super().__init__(
            f"Store '{store_id}' not found. Configure it first using configure_store()."
        )


class LimiterNotFoundError(RateLimiterError):
    def __init__(self, limiter_id: str) -> None:
        self.limiter_id = limiter_id
        super().__init__(
            f"Limiter '{limiter_id}' not found. "
            f"Configure it first using configure_limiter() or load_config()."
        )


class EngineNotAvailableError(RateLimiterError, RuntimeError):
    """The engine (PostgreSQL, NATS) is not available in this build of ratesync."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        super().__init__(
            f"engine {engine!r} is not available in this build of ratesync "
            f"(available: memory, redis)"
        )


def _from_native(
    kind: str,
    message: str,
    name: str | None,
    retry_after: float | None,
    denied_by: str | None = None,
) -> Exception:
    """Builds the exception for an error of the extension (called from Rust)."""
    if kind == "config":
        return ConfigValidationError(message)
    if kind == "limiter_not_found":
        return LimiterNotFoundError(name or "")
    if kind == "store_not_found":
        return StoreNotFoundError(name or "")
    if kind == "store_unavailable":
        return StoreUnavailableError(message, group_id=name)
    if kind == "invalid_cost":
        return ValueError(message)
    return RateLimiterAcquisitionError(
        message, group_id=name, retry_after=retry_after, denied_by=denied_by
    )

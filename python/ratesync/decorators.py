"""``@rate_limited``, as in rate-sync: a fixed limiter id, a ``{param}`` template
(cloned from the base limiter, the part before the first ``:``), or a factory called
with the decorated function's arguments it names; modes ``wait`` and ``try``."""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ratesync._api import RateLimiter, clone_limiter, get_limiter
from ratesync.exceptions import LimiterNotFoundError, RateLimiterAcquisitionError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_TEMPLATE_PATTERN = re.compile(r"\{(\w+)\}")


def rate_limited(
    limiter_or_factory: str | Callable[..., RateLimiter],
    *,
    timeout: float | None = None,
    mode: str = "wait",
) -> Callable[[F], F]:
    """Rate-limits an ``async def`` function.

    - ``"payments"``: the limiter of that id (not configured: runs unlimited, with a
      warning, as rate-sync does);
    - ``"api:{user_id}"``: the limiter ``api:<user_id>``, cloned from ``api``;
    - a callable: called with the function's arguments it names, returns a limiter.

    ``timeout`` (``None``: the limiter's own). ``mode="wait"`` raises
    ``RateLimiterAcquisitionError`` on timeout; ``mode="try"`` (needs ``timeout``)
    returns ``None`` instead. A concurrency slot is held while the function runs."""
    if mode not in ("wait", "try"):
        raise ValueError(f"mode must be 'wait' or 'try', received: {mode!r}")
    if mode == "try" and timeout is None:
        raise ValueError("mode='try' requires timeout to be specified")

    def decorator(func: F) -> F:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(
                f"@rate_limited can only be applied to async functions, "
                f"but {func.__name__} is not async"
            )

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            limiter: RateLimiter
            if isinstance(limiter_or_factory, str):
                if _TEMPLATE_PATTERN.search(limiter_or_factory):
                    limiter = _resolve_template_limiter(limiter_or_factory, func, args, kwargs)
                else:
                    try:
                        limiter = get_limiter(limiter_or_factory)
                    except LimiterNotFoundError:
                        logger.warning(
                            "Rate limiter %r not configured, executing without rate limit",
                            limiter_or_factory,
                        )
                        return await func(*args, **kwargs)
            else:
                limiter = _call_factory(limiter_or_factory, func, args, kwargs)
                if inspect.isawaitable(limiter):
                    limiter = await limiter
            if not limiter.is_initialized:
                await limiter.initialize()
            effective_timeout = timeout if timeout is not None else limiter.default_timeout
            try:
                async with limiter.acquire_context(timeout=effective_timeout):
                    return await func(*args, **kwargs)
            except RateLimiterAcquisitionError:
                if mode == "try":
                    return None
                raise

        try:
            wrapper.__signature__ = inspect.signature(  # type: ignore[attr-defined]
                func, eval_str=True, globals=getattr(func, "__globals__", None)
            )
        except (TypeError, NameError):
            wrapper.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator


def _bound_arguments(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _call_factory(
    factory: Callable[..., RateLimiter],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> RateLimiter:
    params = inspect.signature(factory).parameters
    all_kwargs = _bound_arguments(func, args, kwargs)
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return factory(**all_kwargs)
    return factory(**{k: v for k, v in all_kwargs.items() if k in params})


def _resolve_template_limiter(
    template: str,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> RateLimiter:
    all_kwargs = _bound_arguments(func, args, kwargs)
    for placeholder in _TEMPLATE_PATTERN.findall(template):
        if placeholder not in all_kwargs:
            raise ValueError(
                f"Template placeholder '{{{placeholder}}}' not found in function "
                f"arguments. Available: {list(all_kwargs.keys())}"
            )
    resolved_id = template.format(**all_kwargs)
    base_limiter_id = template.split(":")[0]
    try:
        return get_limiter(resolved_id)
    except LimiterNotFoundError:
        pass
    try:
        clone_limiter(base_limiter_id, resolved_id)
    except ValueError:
        pass  # cloned meanwhile
    return get_limiter(resolved_id)


__all__ = ["rate_limited"]

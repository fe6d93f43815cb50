"""The public API as an application uses it, checked by ``mypy --strict``
(python/tests/test_typing.py). It is type-checked, never run: nothing here is a test.

Every name an application reaches for is used with its real call shape, and each
result is bound to an annotated variable, so that a missing or wrong hint in the
package shows up here as a mypy error."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request

import ratesync
from ratesync import sync
from ratesync.contrib.fastapi import (
    CompositeRateLimitDependency,
    RateLimitDependency,
    RateLimitExceededError,
    rate_limit,
    rate_limit_exception_handler,
)
from ratesync.contrib.prometheus import RatesyncCollector, add_metrics_route, generate_latest


def configure() -> None:
    ratesync.configure_store("local", strategy="memory")
    ratesync.configure_limiter("api", store_id="local", rate_per_second=10.0, burst=5, timeout=2.0)
    ratesync.configure_limiter("slots", store_id="local", max_concurrent=4)
    ratesync.load_config("rate-sync.toml")
    limiters: list[str] = list(ratesync.list_limiters())
    stores: list[str] = list(ratesync.list_stores())
    print(limiters, stores)


# Each call's result is returned from a function declared with its type: under
# --strict (warn_return_any) a call whose hints are missing, so that it gives Any,
# fails here.


async def awaited_acquire() -> ratesync.Permit:
    # The ignore goes with the hint: `AcquireContext.__await__` (ratesync/_api.py) is
    # not typed yet, so awaiting `acquire` gives Any. Once it is, mypy reports this
    # ignore as unused: remove it then.
    return await ratesync.acquire("api", key="user-42", cost=2)


async def limiter_acquire() -> ratesync.Permit:
    return await ratesync.get_limiter("api").acquire(timeout=1.0)


async def peek() -> ratesync.RateLimitResult:
    return await ratesync.check_limiter("api", acquire_if_allowed=False)


async def try_once() -> bool:
    return await ratesync.get_limiter("api").try_acquire(key="user-42")


def blocking_acquire() -> ratesync.Permit:
    return sync.acquire("api", key="user-42")


def blocking_try() -> ratesync.Permit | None:
    return sync.try_acquire("api")


async def module_level() -> None:
    permit = await awaited_acquire()
    print(permit.holds_slot)
    async with ratesync.acquire("slots", timeout=1.0) as held:
        print(held.decision.remaining)
    result: ratesync.RateLimitResult = await ratesync.check_limiter(
        "api", acquire_if_allowed=False, key="user-42"
    )
    allowed: bool = result.allowed
    remaining: int = result.remaining
    retry_after: float | None = result.retry_after
    print(allowed, remaining, retry_after)
    group: ratesync.MultiLimiterResult = await ratesync.check_multi_limiters(
        ["api", "slots"], key="user-42"
    )
    print(group.allowed)


async def limiter_object() -> None:
    limiter: ratesync.RateLimiter = ratesync.get_limiter("api")
    await limiter.initialize()
    permit: ratesync.Permit = await limiter.acquire(timeout=1.0, key="user-42")
    print(permit.decision.limit)
    admitted: bool = await limiter.try_acquire(key="user-42")
    if admitted:
        await limiter.release()
    async with limiter.acquire_context(timeout=1.0) as held:
        print(held.holds_slot)
    state: ratesync.LimiterState = await limiter.get_state(key="user-42")
    print(state.remaining)
    metrics: ratesync.RateLimiterMetrics = limiter.get_metrics()
    total: int = metrics.total_acquisitions
    print(total)
    await limiter.reset(key="user-42")
    rate: float | None = limiter.rate_per_second
    print(rate, limiter.algorithm, limiter.fail_closed)


@ratesync.rate_limited("api")
async def decorated(user: str) -> str:
    return user


async def use_decorated() -> str:
    return await decorated("user-42")


def threads() -> None:
    with sync.acquire("slots"):
        pass
    sync.acquire("api")


def fastapi_app() -> FastAPI:
    app = FastAPI()
    app.add_exception_handler(RateLimitExceededError, rate_limit_exception_handler)

    async def per_user(request: Request) -> str:
        return request.headers.get("x-user", "anonymous")

    @app.get("/search", dependencies=[Depends(RateLimitDependency("api"))])
    async def search() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/upload", dependencies=[Depends(rate_limit("slots", per_user, timeout=1.0))])
    async def upload() -> dict[str, str]:
        return {"ok": "yes"}

    async def user_and_tenant(request: Request) -> dict[str, str]:
        return {"user": request.headers.get("x-user", ""), "tenant": "acme"}

    both = CompositeRateLimitDependency(
        {"user": "api", "tenant": "slots"}, identifier_extractor=user_and_tenant
    )

    @app.get("/both", dependencies=[Depends(both)])
    async def both_limits() -> dict[str, str]:
        return {"ok": "yes"}

    add_metrics_route(app)
    return app


def prometheus() -> bytes:
    collector = RatesyncCollector()
    print(collector.describe())
    return generate_latest()

"""A FastAPI service written for the Python library rate-sync, unchanged: the
patterns of rate-sync's README (configuration discovered on import, ``acquire``,
``rate_limited`` with templates, ``get_or_clone_limiter``, the FastAPI dependency,
``rate_limit``, the middleware and the exception handler).

tests/test_rate_sync_app.py runs it with ratesync installed in place of rate-sync.
"""

from fastapi import Depends, FastAPI, Request
from ratesync import acquire, get_or_clone_limiter, rate_limited
from ratesync.contrib.fastapi import (
    RateLimitDependency,
    RateLimitExceededError,
    RateLimitMiddleware,
    rate_limit,
    rate_limit_exception_handler,
)

app = FastAPI()
app.add_exception_handler(RateLimitExceededError, rate_limit_exception_handler)
app.add_middleware(RateLimitMiddleware, limiter_id="pages", include_paths=["^/pages/"])


@app.get("/api/data")
async def get_data(_: None = Depends(RateLimitDependency("api"))):
    return {"status": "ok"}


@app.get("/pages/{page}")
async def page(page: str):
    return {"page": page}


@app.post("/login")
async def login(_: None = Depends(rate_limit("login"))):
    return {"status": "logged in"}


@rate_limited("external_api")
async def call_external_api() -> str:
    return "external"


@app.get("/external")
async def external():
    async with acquire("external_api"):
        return {"result": await call_external_api()}


@app.get("/users/{user_id}")
async def user(user_id: str, request: Request):
    limiter = await get_or_clone_limiter("per_user", user_id)
    if not await limiter.try_acquire(timeout=0):
        raise RateLimitExceededError(
            identifier=user_id, limit=1, remaining=0, reset_at=0, retry_after=100
        )
    return {"user": user_id}

"""Where ratesync behaves differently from rate-sync 0.4.2 on purpose, one test each
for the differences no other test pins down (docs/migrating-from-rate-sync.md lists
every difference and the test that covers it). Each test says what rate-sync did.
"""

import asyncio
import itertools
import shutil
import subprocess
from urllib.parse import urlparse

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

import ratesync
from ratesync import ConfigValidationError, LimiterNotFoundError, StoreUnavailableError
from ratesync.contrib.fastapi import (
    RateLimitDependency,
    RateLimitExceededError,
    RateLimitMiddleware,
    rate_limit_exception_handler,
)

_ids = itertools.count()
DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


# --- configuration files ---------------------------------------------------------------


def test_an_unset_variable_in_a_file_is_an_error_that_names_it(tmp_path, monkeypatch, name):
    # rate-sync left `${VAR}` in place as text: the URL below became
    # "redis://:${RATESYNC_DD_PASSWORD}@..." and failed later, at the server.
    monkeypatch.delenv("RATESYNC_DD_PASSWORD", raising=False)
    path = tmp_path / "rate-sync.toml"
    path.write_text(
        '[stores.cache]\nengine = "redis"\n'
        'url = "redis://:${RATESYNC_DD_PASSWORD}@127.0.0.1:6379/0"\n'
        f'[limiters.{name}]\nstore = "cache"\nrate_per_second = 1.0\n'
    )
    with pytest.raises(ConfigValidationError, match="RATESYNC_DD_PASSWORD.*is not set"):
        ratesync.load_config(path)
    with pytest.raises(LimiterNotFoundError):  # all or nothing: none of the file loaded
        ratesync.get_limiter(name)
    # A default is the way to make a variable optional.
    path.write_text(path.read_text().replace("${RATESYNC_DD_PASSWORD}", "${RATESYNC_DD_PASSWORD:-}"))
    ratesync.load_config(path)
    assert ratesync.list_limiters()[name]["rate_per_second"] == 1.0


async def test_fail_closed_in_a_file_is_honoured(tmp_path, name):
    # rate-sync 0.4.2's loader dropped `fail_closed` from the file: every limiter
    # configured there failed open, whatever the file said.
    path = tmp_path / "rate-sync.toml"
    path.write_text(
        f'[stores.{name}-down]\nengine = "redis"\nurl = "{DOWN}"\nsocket_timeout = 0.2\n'
        f'[limiters.{name}-strict]\nstore = "{name}-down"\nrate_per_second = 1.0\n'
        "fail_closed = true\n"
        f'[limiters.{name}-lax]\nstore = "{name}-down"\nrate_per_second = 1.0\n'
    )
    ratesync.load_config(path)
    assert ratesync.list_limiters()[f"{name}-strict"]["fail_closed"] is True
    with pytest.raises(StoreUnavailableError):
        await ratesync.acquire(f"{name}-strict")
    await ratesync.acquire(f"{name}-lax")  # fail-open: admitted


# --- results ---------------------------------------------------------------------------


async def test_check_limiter_gives_a_concurrency_slot_back_and_reports_the_cap(store, name):
    # rate-sync's check_limiter took a slot of a max_concurrent limiter and never gave
    # it back (the second call below was refused, for good), and reported an invented
    # quota (limit=100, remaining=99, reset_in=60.0).
    ratesync.configure_limiter(name, store_id=store, max_concurrent=1)
    for _ in range(3):
        result = await ratesync.check_limiter(name)
        assert result.allowed
        assert (result.limit, result.remaining) == (1, 0)
    assert await ratesync.get_limiter(name).try_acquire(timeout=0)  # the slot is free


# --- FastAPI ---------------------------------------------------------------------------


def test_the_dependency_reads_the_request_not_query_parameters(store, name):
    # rate-sync's RateLimitDependency.__call__ annotated `request` and `response` with
    # strings FastAPI cannot resolve on an instance: FastAPI took them for required
    # query parameters, so every route using it answered 422 (or 500 when given them).
    ratesync.configure_limiter(name, store_id=store, rate_per_second=1.0)
    app = FastAPI()
    app.add_exception_handler(RateLimitExceededError, rate_limit_exception_handler)

    @app.get("/x", dependencies=[Depends(RateLimitDependency(name))])
    async def x():
        return {}

    parameters = app.openapi()["paths"]["/x"]["get"].get("parameters", [])
    assert [p["name"] for p in parameters] == []
    client = TestClient(app)
    assert client.get("/x").status_code == 200
    assert client.get("/x").status_code == 429


def test_an_unconfigured_limiter_gets_no_invented_headers(name):
    # rate-sync's middleware let the request through too, but with made-up numbers:
    # X-RateLimit-Limit: 1000, X-RateLimit-Remaining: 999.
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, limiter_id=f"{name}-missing")

    @app.get("/x")
    async def x():
        return {}

    r = TestClient(app).get("/x")
    assert r.status_code == 200
    assert not [h for h in r.headers if h.lower().startswith(("x-ratelimit", "ratelimit"))]


# --- Redis keys ------------------------------------------------------------------------


async def test_redis_state_lives_under_keys_of_its_own(redis_url, name):
    # rate-sync kept a limiter's state in `<key_prefix>:<limiter>:rate`, `:window` and
    # `:concurrent`. ratesync's keys are hash-tagged per (limiter, key): rate-sync's
    # state is neither read nor overwritten, and every key starts fresh.
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli not installed")
    prefix = f"dd{next(_ids)}"
    port = str(urlparse(redis_url).port)
    ratesync.configure_store(f"{name}-redis", "redis", url=redis_url, key_prefix=prefix)
    ratesync.configure_limiter(name, store_id=f"{name}-redis", rate_per_second=1.0, timeout=0)
    # rate-sync's key for this limiter, as if it had run before the switch.
    subprocess.run(["redis-cli", "-p", port, "SET", f"{prefix}:{name}:rate", "0"], check=True)
    await ratesync.acquire(name, key="user-42")
    await asyncio.sleep(0)
    scan = subprocess.run(
        ["redis-cli", "-p", port, "--scan", "--pattern", f"*{prefix}*"],
        check=True, capture_output=True, text=True,
    )
    assert sorted(scan.stdout.split()) == sorted(
        [f"{prefix}:{name}:rate", f"{{{prefix}:{name}:user-42}}:tb"]
    )

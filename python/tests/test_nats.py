"""The API on a NATS store: a nats-server -js of these tests' own (fixture below).

The server: $RATESYNC_NATS_SERVER, else target/nats-venv/bin/nats-server (what
scripts/install-nats-server.sh installs), else a nats-server >= 2.10 on PATH. Without
one the tests are skipped, loudly; under CI=true they fail."""

import asyncio
import multiprocessing
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
import warnings

import pytest

import ratesync
from ratesync import NatsRateLimiter, RateLimiterAcquisitionError

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _version(binary: str):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    match = re.search(r" v(\d+)\.(\d+)", out.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _binary():
    candidates = [
        os.environ.get("RATESYNC_NATS_SERVER"),
        str(_ROOT / "target/nats-venv/bin/nats-server"),
        shutil.which("nats-server"),
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and (_version(candidate) or (0, 0)) >= (2, 10):
            return candidate
    return None


@pytest.fixture(scope="module")
def nats_url():
    binary = _binary()
    if binary is None:
        message = "no nats-server >= 2.10: run scripts/install-nats-server.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: a missing service is a failure: {message}")
        warnings.warn(message)
        pytest.skip(message)
    store = tempfile.mkdtemp(prefix="ratesync-nats-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.path.join(store, "nats.log"), "w")
    server = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", os.path.join(store, "js")],
        stdout=log,
        stderr=log,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        if "Server is ready" in open(os.path.join(store, "nats.log")).read():
            break
        time.sleep(0.05)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()
        log.close()
        shutil.rmtree(store, ignore_errors=True)


@pytest.fixture
def nats_store(nats_url, name):
    store_id = f"nats-{name}"
    ratesync.configure_store(store_id, strategy="nats", url=nats_url, auto_create=True)
    return store_id


async def test_acquire_and_timeout(nats_store, name):
    ratesync.configure_limiter(name, nats_store, rate_per_second=0.001, burst=2, timeout=0)
    await ratesync.acquire(name)
    await ratesync.acquire(name)
    with pytest.raises(RateLimiterAcquisitionError):
        await ratesync.acquire(name)


async def test_sliding_window_and_peek(nats_store, name):
    ratesync.configure_limiter(
        name, nats_store, algorithm="sliding_window", limit=2, window_seconds=60
    )
    assert (await ratesync.check_limiter(name, acquire_if_allowed=False)).remaining == 2
    assert (await ratesync.check_limiter(name)).remaining == 1
    assert (await ratesync.check_limiter(name)).remaining == 0
    assert not (await ratesync.check_limiter(name)).allowed


async def test_nats_rate_limiter_class(nats_url, name):
    kwargs = dict(bucket_name=f"cls_{name}", auto_create=True, limit=2, window_seconds=60)
    a = NatsRateLimiter(nats_url, name, default_timeout=0, **kwargs)
    b = NatsRateLimiter(nats_url, name, default_timeout=0, **kwargs)
    await a.initialize()
    await b.initialize()
    assert await a.try_acquire()
    assert await b.try_acquire()
    assert not await a.try_acquire()  # the limit is shared through the bucket


LIMIT = 60
PROCESSES = 4
TASKS = 16


def _worker(url: str, limiter: str, out: "multiprocessing.Queue[int]") -> None:
    import ratesync as rs

    async def main() -> int:
        rs.configure_store("shared", "nats", url=url, auto_create=True)
        # Fail-closed: a store error must not pass for an admission.
        rs.configure_limiter(
            limiter,
            "shared",
            algorithm="sliding_window",
            limit=LIMIT,
            window_seconds=60,
            fail_closed=True,
        )

        async def hammer() -> int:
            admitted = 0
            for _ in range(30):
                try:
                    if (await rs.check_limiter(limiter)).allowed:
                        admitted += 1
                except rs.RateLimiterError as error:
                    import sys

                    print(f"worker error: {error}", file=sys.stderr)
                    return -100_000  # an error fails the sum below
            return admitted

        return sum(await asyncio.gather(*(hammer() for _ in range(TASKS))))

    out.put(asyncio.run(main()))


def test_worker_processes_share_a_nats_limit_exactly(nats_url, name):
    # 4 processes x 16 tasks x 30 attempts = 1920 attempts for a limit of 60.
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(nats_url, f"mp-{name}", out)) for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    counts = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sum(counts) == LIMIT

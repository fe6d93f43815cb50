"""The API on a PostgreSQL store (a server of this file's own: initdb + postgres on a
free port, as the Rust tests do), including several worker processes sharing a limit.

Without PostgreSQL installed the tests are skipped, loudly; under CI=true they fail."""

import asyncio
import itertools
import multiprocessing
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings

import pytest

import ratesync
from ratesync import PostgresRateLimiter, RateLimiterAcquisitionError

_ids = itertools.count()


def _bin_dir() -> pathlib.Path | None:
    """Where initdb really lives: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    initdb = shutil.which("initdb")
    if initdb:
        return pathlib.Path(os.path.realpath(initdb)).parent
    found = sorted(
        pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def pg_url():
    """A PostgreSQL server of its own on a free port (fsync off), for this module."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = "PostgreSQL (initdb) not installed: the PostgreSQL tests do not run"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        warnings.warn(message)
        pytest.skip(message)
    # PostgreSQL refuses to run as root: run it as the `postgres` user then.
    as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    prefix = as_user if os.geteuid() == 0 else []
    tmp = tempfile.mkdtemp(prefix="ratesync-pg-")
    if prefix:
        shutil.chown(tmp, "postgres", "postgres")
    data = os.path.join(tmp, "data")
    subprocess.run(
        prefix + [str(bin_dir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.path.join(tmp, "postgres.log"), "wb")
    server = subprocess.Popen(
        prefix + [str(bin_dir / "postgres"), "-D", data, "-p", str(port), "-k", tmp,
                  "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 20
    while subprocess.run(
        [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "1"],
        stdout=subprocess.DEVNULL,
    ).returncode != 0:
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            pytest.fail(f"postgres did not start on port {port}")
        time.sleep(0.1)
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    server.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
    server.wait(20)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def pg_store(pg_url):
    """A PostgreSQL store id with a table of its own (tests do not share state)."""
    n = next(_ids)
    store_id = f"pg{n}"
    ratesync.configure_store(
        store_id, "postgres", url=pg_url, table_name=f"t{n}", auto_create=True
    )
    return store_id


async def test_acquire_peek_and_timeout(pg_store, name):
    ratesync.configure_limiter(name, pg_store, rate_per_second=0.001, burst=2, timeout=0)
    assert (await ratesync.check_limiter(name, acquire_if_allowed=False)).remaining == 2
    await ratesync.acquire(name)
    await ratesync.acquire(name)
    with pytest.raises(RateLimiterAcquisitionError):
        await ratesync.acquire(name)


async def test_async_with_holds_a_slot(pg_store, name):
    ratesync.configure_limiter(name, pg_store, max_concurrent=1, timeout=0)
    async with ratesync.acquire(name):
        with pytest.raises(RateLimiterAcquisitionError):
            await ratesync.acquire(name)
    async with ratesync.acquire(name, timeout=2.0) as permit:
        assert permit.holds_slot


async def test_postgres_rate_limiter_class(pg_url, name):
    kwargs = dict(table_name=f"cls_{next(_ids)}", auto_create=True, limit=2,
                  window_seconds=60, default_timeout=0)
    a = PostgresRateLimiter(pg_url, name, **kwargs)
    b = PostgresRateLimiter(pg_url, name, **kwargs)  # same group on the same table
    await a.initialize()
    await b.initialize()
    assert await a.try_acquire()
    assert await b.try_acquire()
    assert not await a.try_acquire()  # the limit is shared through PostgreSQL
    await a.reset()
    assert await b.try_acquire()
    assert name not in ratesync.list_limiters()


# --- a schema that is not there: said at start-up, logged under fail-open ------------


async def test_a_missing_schema_shows_at_initialization(pg_url, name, caplog):
    import logging

    n = next(_ids)
    # auto_create off and no `ratesync migrate`: the table is not there.
    ratesync.configure_store(
        f"bare{n}", "postgres", url=pg_url, table_name=f"missing{n}", auto_create=False
    )
    ratesync.configure_limiter(
        f"{name}-closed", store_id=f"bare{n}", rate_per_second=1.0, fail_closed=True
    )
    ratesync.configure_limiter(f"{name}-open", store_id=f"bare{n}", rate_per_second=1.0)
    with pytest.raises(ratesync.StoreUnavailableError):
        await ratesync.initialize_limiter(f"{name}-closed")
    with caplog.at_level(logging.WARNING, logger="ratesync"):
        await ratesync.initialize_limiter(f"{name}-open")
        for _ in range(5):
            await ratesync.acquire(f"{name}-open")  # fail-open: admitted
        await asyncio.sleep(0.5)  # the core's records come from a thread
    messages = [r.getMessage() for r in caplog.records if r.name == "ratesync"]
    assert any(f"{name}-open" in m and "fails open" in m for m in messages), messages
    admitted = [m for m in messages if f"limiter={name}-open" in m and "fail-open" in m]
    assert len(admitted) == 1, messages


# --- several worker processes share one PostgreSQL limit exactly ----------------------

LIMIT = 60
PROCESSES = 4
TASKS = 16


def _worker(url: str, table: str, out: "multiprocessing.Queue[int]") -> None:
    import ratesync as rs

    async def main() -> int:
        rs.configure_store("shared", "postgres", url=url, table_name=table, auto_create=True)
        rs.configure_limiter(
            "shared-sw", "shared", algorithm="sliding_window", limit=LIMIT, window_seconds=60
        )

        async def hammer() -> int:
            admitted = 0
            for _ in range(30):
                if (await rs.check_limiter("shared-sw")).allowed:
                    admitted += 1
            return admitted

        return sum(await asyncio.gather(*(hammer() for _ in range(TASKS))))

    out.put(asyncio.run(main()))


def test_worker_processes_share_a_postgres_limit_exactly(pg_url):
    # 4 processes x 16 tasks x 30 attempts = 1920 attempts for a limit of 60, on a
    # table the processes create at once.
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    table = f"mp_{next(_ids)}"
    procs = [ctx.Process(target=_worker, args=(pg_url, table, out)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sum(counts) == LIMIT

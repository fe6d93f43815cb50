import itertools

import pytest

_ids = itertools.count()


@pytest.fixture
def store():
    """A fresh memory store id (the registry is process-wide)."""
    import ratesync

    store_id = f"mem{next(_ids)}"
    ratesync.configure_store(store_id, "memory")
    return store_id


@pytest.fixture
def name():
    return f"lim{next(_ids)}"


@pytest.fixture(scope="session")
def redis_url():
    """A redis-server of its own on a free port (no persistence), for the session.

    Without the binary the Redis tests are skipped, loudly; under CI=true they fail."""
    import os
    import shutil
    import socket
    import subprocess
    import time
    import warnings

    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server not installed: the Redis tests of the Python package do not run"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: a missing service is a failure: {message}")
        warnings.warn(message)
        pytest.skip(message)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(10)


@pytest.fixture
def redis_store(redis_url):
    """A Redis store id with a key prefix of its own (tests do not share keys)."""
    import ratesync

    n = next(_ids)
    store_id = f"redis{n}"
    ratesync.configure_store(store_id, "redis", url=redis_url, key_prefix=f"t{n}")
    return store_id

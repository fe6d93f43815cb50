"""A FastAPI app written for rate-sync runs unchanged on ratesync (``docs/design.md#python``).

The app and its rate-sync.toml (a Redis store) live in tests/rate_sync_app/; it runs
in a fresh interpreter whose working directory holds the file, so the configuration
is found on import exactly as rate-sync finds it, against the tests' redis-server.

Run under rate-sync 0.4.2 itself, the same scenario gives the same answers except
where rate-sync is broken: its ``RateLimitDependency`` answers 422 to every request
(its ``request``/``response`` parameters are annotated under ``TYPE_CHECKING`` only,
so FastAPI reads them as required query parameters), and its refusals carry no
``Retry-After``.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

APP_DIR = Path(__file__).parent / "rate_sync_app"

SCENARIO = r"""
import json
from fastapi.testclient import TestClient
from app import app

c = TestClient(app)
out = {}
out["data"] = [c.get("/api/data").status_code for _ in range(5)]
out["pages"] = [c.get(f"/pages/{i}").status_code for i in range(6)]
out["login"] = [c.post("/login").status_code for _ in range(5)]
r = c.post("/login")
out["login_retry_after"] = int(r.headers["Retry-After"])
out["login_policy"] = r.headers["RateLimit-Policy"]
out["external"] = [c.get("/external").json() for _ in range(3)]
out["users"] = [c.get(f"/users/{u}").status_code for u in ("ann", "bob", "ann", "bob")]
print(json.dumps(out))
"""


def test_rate_sync_app_runs_unchanged(redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATE_SYNC")}
    env["APP_REDIS_URL"] = redis_url
    env["APP_KEY_PREFIX"] = f"app{uuid.uuid4().hex}"
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["data"] == [200] * 5
    assert out["pages"] == [200] * 4 + [429] * 2
    assert out["login"] == [200, 200, 200, 429, 429]
    assert 1 <= out["login_retry_after"] <= 300
    assert out["login_policy"] == '"login";q=3;w=300'
    assert out["external"] == [{"result": "external"}] * 3
    # One clone per user, each with its own single unit.
    assert out["users"] == [200, 200, 429, 429]

"""ratesync.contrib.fastapi through FastAPI's TestClient (and a real uvicorn server)."""

from __future__ import annotations

import math
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import Depends, FastAPI, Request  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import ratesync  # noqa: E402
from ratesync.contrib.fastapi import (  # noqa: E402
    CompositeRateLimitDependency,
    RateLimitDependency,
    RateLimitExceededError,
    RateLimitMiddleware,
    configure_fastapi,
    get_client_ip,
    rate_limit,
    rate_limit_exception_handler,
)

PEER = "203.0.113.7"  # an untrusted client address


def make_app(*deps, middleware=None) -> FastAPI:
    app = FastAPI()
    app.add_exception_handler(RateLimitExceededError, rate_limit_exception_handler)
    if middleware is not None:
        app.add_middleware(RateLimitMiddleware, **middleware)

    @app.get("/x", dependencies=[Depends(d) for d in deps])
    async def x(request: Request):
        return {"ip": get_client_ip(request)}

    @app.get("/health")
    async def health():
        return {"ok": True}

    return app


def client(app, host=PEER):
    return TestClient(app, client=(host, 50000))


@pytest.fixture(autouse=True)
def _no_code_proxies():
    configure_fastapi(None)
    yield
    configure_fastapi(None)


def window_limiter(store, name, limit=3, window=60):
    ratesync.configure_limiter(
        name, store_id=store, algorithm="sliding_window", limit=limit, window_seconds=window
    )
    return name


def test_dependency_admits_then_429_with_headers(store, name):
    window_limiter(store, name, limit=3, window=60)
    c = client(make_app(RateLimitDependency(name)))
    for i in range(3):
        r = c.get("/x")
        assert r.status_code == 200, r.text
        assert r.headers["RateLimit-Policy"] == f'"{name}";q=3;w=60'
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert r.headers["X-RateLimit-Remaining"] == str(2 - i)
        assert r.headers["RateLimit"].startswith(f'"{name}";r={2 - i};t=')
        assert "Retry-After" not in r.headers
    before = time.time()
    r = c.get("/x")
    assert r.status_code == 429
    h = r.headers
    retry = int(h["Retry-After"])
    assert 1 <= retry <= 60
    assert h["RateLimit-Policy"] == f'"{name}";q=3;w=60'
    assert h["RateLimit"] == f'"{name}";r=0;t={retry}'
    assert h["X-RateLimit-Limit"] == "3"
    assert h["X-RateLimit-Remaining"] == "0"
    reset = int(h["X-RateLimit-Reset"])
    assert before <= reset <= math.ceil(time.time()) + 61
    body = r.json()["detail"][0]
    assert body["type"] == "rate_limit_exceeded"
    assert body["context"] == {"retry_after_seconds": retry, "limit": 3, "limiter": name}
    # The number is the decision's: the same one a peek of the key gives.
    d = ratesync.sync.state(name, key=PEER)
    assert not d.allowed and math.ceil(d.retry_after) <= retry


def test_token_bucket_policy_window(store, name):
    ratesync.configure_limiter(name, store_id=store, rate_per_second=2.0, burst=4)
    c = client(make_app(rate_limit(name)))
    r = c.get("/x")
    assert r.status_code == 200
    assert r.headers["RateLimit-Policy"] == f'"{name}";q=4;w=2'  # 4 tokens / 2 per s
    assert r.headers["X-RateLimit-Remaining"] == "3"
    for _ in range(3):
        assert c.get("/x").status_code == 200
    r = c.get("/x")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"  # 0.5 s, rounded up


def test_keys_are_per_client_ip(store, name):
    window_limiter(store, name, limit=1)
    app = make_app(RateLimitDependency(name))
    a, b = client(app, "198.51.100.1"), client(app, "198.51.100.2")
    assert a.get("/x").status_code == 200
    assert a.get("/x").status_code == 429
    assert b.get("/x").status_code == 200
    assert b.get("/x").status_code == 429


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "1.1.1.1"},
        {"Forwarded": "for=1.1.1.1"},
        {"X-Real-IP": "1.1.1.1"},
    ],
)
def test_forged_headers_from_untrusted_peer_ignored(store, name, header):
    window_limiter(store, name, limit=1)
    configure_fastapi(trusted_proxy_networks=["10.0.0.0/8"])
    c = client(make_app(RateLimitDependency(name)), PEER)
    r = c.get("/x", headers=header)
    assert r.status_code == 200 and r.json() == {"ip": PEER}
    # A different forged address each time still hits the peer's own key.
    forged = {k: v.replace("1.1.1.1", "2.2.2.2") for k, v in header.items()}
    assert c.get("/x", headers=forged).status_code == 429


def test_no_proxy_trusted_by_default(store, name):
    window_limiter(store, name, limit=5)
    c = client(make_app(RateLimitDependency(name)), "10.1.2.3")
    r = c.get("/x", headers={"X-Forwarded-For": "1.1.1.1"})
    assert r.json() == {"ip": "10.1.2.3"}


def test_an_ipv4_mapped_peer_is_keyed_as_its_ipv4_address(store, name):
    # A dual-stack socket sees an IPv4 client as ::ffff:a.b.c.d: one client, one key
    # (the Rust layer's client_ip gives the same address).
    window_limiter(store, name, limit=1)
    configure_fastapi(trusted_proxy_networks=["10.0.0.0/8"])
    app = make_app(RateLimitDependency(name))
    r = client(app, "::ffff:198.51.100.4").get("/x")
    assert r.status_code == 200 and r.json() == {"ip": "198.51.100.4"}
    assert client(app, "198.51.100.4").get("/x").status_code == 429
    r = client(app, "::ffff:10.0.0.1").get("/health", headers={"X-Forwarded-For": "::ffff:1.2.3.4"})
    assert r.status_code == 200
    fwd = {"X-Forwarded-For": "::ffff:1.2.3.4"}
    assert client(app, "::ffff:10.0.0.1").get("/x", headers=fwd).json() == {"ip": "1.2.3.4"}


def test_trusted_proxy_chain_right_to_left(store, name):
    window_limiter(store, name, limit=1)
    configure_fastapi(trusted_proxy_networks=["10.0.0.0/8"])
    app = make_app(RateLimitDependency(name))
    c = client(app, "10.0.0.1")
    # client forged "6.6.6.6"; real client 1.2.3.4 reached proxy 10.0.0.2, then 10.0.0.1.
    xff = {"X-Forwarded-For": "6.6.6.6, 1.2.3.4, 10.0.0.2"}
    r = c.get("/x", headers=xff)
    assert r.status_code == 200 and r.json() == {"ip": "1.2.3.4"}
    assert c.get("/x", headers=xff).status_code == 429
    # Another client through the same proxies has its own key.
    assert c.get("/x", headers={"X-Forwarded-For": "5.6.7.8, 10.0.0.2"}).status_code == 200
    fwd = {"Forwarded": 'for=6.6.6.6, for="[2001:db8::9]:4711";proto=https, for=10.0.0.2'}
    r = c.get("/x", headers=fwd)
    assert r.json() == {"ip": "2001:db8::9"}
    # Untrusted first hop: the rightmost untrusted address wins, never the leftmost.
    r = client(app, "10.0.0.1").get("/health")
    assert r.status_code == 200


def test_trusted_proxies_argument_and_file(store, name, tmp_path):
    window_limiter(store, name, limit=5)
    app = make_app(RateLimitDependency(name, trusted_proxies=["192.0.2.0/24"]))
    r = client(app, "192.0.2.5").get("/x", headers={"X-Forwarded-For": "9.9.9.9"})
    assert r.status_code == 200
    # get_client_ip without an argument uses the configuration: from a file.
    toml = tmp_path / "rate-sync.toml"
    toml.write_text(
        '[fastapi]\ntrusted_proxy_networks = ["192.0.2.0/24"]\n'
        '[stores.m]\nengine = "memory"\n'
        '[limiters.f]\nstore = "m"\nalgorithm = "sliding_window"\nlimit = 1\n'
        "window_seconds = 60\n"
    )
    saved_stores = ratesync.list_stores()
    try:
        ratesync.load_config(toml)
        assert ratesync.contrib.fastapi.get_trusted_proxy_networks() == ["192.0.2.0/24"]
        c = client(make_app(RateLimitDependency("f")), "192.0.2.5")
        r = c.get("/x", headers={"X-Forwarded-For": "9.9.9.9"})
        assert r.json() == {"ip": "9.9.9.9"}
        r = c.get("/x", headers={"X-Forwarded-For": "9.9.9.9"})
        assert r.status_code == 429
        assert c.get("/x", headers={"X-Forwarded-For": "9.9.9.8"}).status_code == 200
    finally:
        empty = tmp_path / "empty.toml"
        empty.write_text("")
        ratesync.load_config(empty)
        for sid, s in saved_stores.items():
            if s.get("engine") == "memory":
                ratesync.configure_store(sid, "memory")


def test_middleware(store, name):
    window_limiter(store, name, limit=2)
    app = make_app(middleware={"limiter_id": name, "exclude_paths": [r"^/health$"]})
    c = client(app)
    r = c.get("/x")
    assert r.status_code == 200
    assert r.headers["RateLimit-Policy"] == f'"{name}";q=2;w=60'
    assert r.headers["X-RateLimit-Remaining"] == "1"
    assert c.get("/x").status_code == 200
    r = c.get("/x")
    assert r.status_code == 429
    assert r.headers["RateLimit"] == f'"{name}";r=0;t={r.headers["Retry-After"]}'
    assert r.headers["X-RateLimit-Remaining"] == "0"
    for _ in range(5):
        assert c.get("/health").status_code == 200


def test_composite_all_or_nothing(store, name):
    ip_lim = window_limiter(store, name + "_ip", limit=5)
    em_lim = window_limiter(store, name + "_em", limit=1)
    dep = CompositeRateLimitDependency(
        {"by_ip": ip_lim, "by_email": em_lim},
        identifier_extractor=lambda req: {
            "by_ip": get_client_ip(req),
            "by_email": req.query_params["email"],
        },
    )
    c = client(make_app(dep))
    r = c.get("/x?email=a@x")
    assert r.status_code == 200
    assert r.headers["RateLimit-Policy"].count(";q=") == 2
    r = c.get("/x?email=a@x")
    assert r.status_code == 429
    assert "Retry-After" in r.headers and r.headers["X-RateLimit-Limit"] == "1"
    # The refused request consumed nothing from by_ip: 4 left for this IP.
    for i, email in enumerate(["b", "c", "d", "e"]):
        r = c.get(f"/x?email={email}")
        assert r.status_code == 200, (i, r.text)
    assert c.get("/x?email=f").status_code == 429


def test_concurrency_slot_released_after_request(store, name):
    ratesync.configure_limiter(name, store_id=store, max_concurrent=1)
    c = client(make_app(RateLimitDependency(name)))
    for _ in range(10):
        assert c.get("/x").status_code == 200
    mw = client(make_app(middleware={"limiter_id": name}))
    for _ in range(10):
        assert mw.get("/x").status_code == 200
    comp = CompositeRateLimitDependency({"a": name}, identifier_extractor=lambda r: {"a": "k"})
    cc = client(make_app(comp))
    for _ in range(10):
        assert cc.get("/x").status_code == 200
    _slot_free(name, PEER)


def _slot_free(name, key):
    permit = ratesync.sync.try_acquire(name, key=key)
    assert permit is not None, "a concurrency slot leaked"
    permit.release()


def test_concurrency_slot_released_when_endpoint_fails(store, name):
    ratesync.configure_limiter(name, store_id=store, max_concurrent=1)
    app = FastAPI()

    @app.get("/boom", dependencies=[Depends(RateLimitDependency(name))])
    async def boom():
        raise RuntimeError("boom")

    c = TestClient(app, client=(PEER, 1), raise_server_exceptions=False)
    for _ in range(3):
        assert c.get("/boom").status_code == 500
    _slot_free(name, PEER)


def test_503_on_fail_closed_outage(name):
    store = f"{name}_down"
    ratesync.configure_store(store, "redis", url="redis://127.0.0.1:1/0")
    ratesync.configure_limiter(
        name, store_id=store, algorithm="sliding_window", limit=5, window_seconds=60,
        fail_closed=True,
    )
    r = client(make_app(RateLimitDependency(name))).get("/x")
    assert r.status_code == 503
    assert r.json()["detail"][0]["type"] == "rate_limiter_unavailable"
    r = client(make_app(middleware={"limiter_id": name})).get("/x")
    assert r.status_code == 503


def test_exception_handler_direct():
    app = FastAPI()
    app.add_exception_handler(RateLimitExceededError, rate_limit_exception_handler)

    @app.get("/y")
    async def y():
        raise RateLimitExceededError("id", limit=10, remaining=0, reset_at=0, retry_after=7,
                                     limiter_id="manual")

    r = TestClient(app).get("/y")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"
    assert r.headers["RateLimit"] == '"manual";r=0;t=7'
    assert r.headers["RateLimit-Policy"] == '"manual";q=10'
    assert r.headers["X-RateLimit-Limit"] == "10"


def test_unconfigured_limiter_fail_open(name):
    c = client(make_app(RateLimitDependency(name + "_missing")))
    r = c.get("/x")
    assert r.status_code == 200 and "RateLimit" not in r.headers
    strict = TestClient(
        make_app(RateLimitDependency(name + "_missing", fail_open=False)),
        raise_server_exceptions=False,
    )
    assert strict.get("/x").status_code == 500


def test_import_without_fastapi():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['fastapi']=None; sys.modules['starlette']=None;"
        "import ratesync; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_concurrency_only_limiter_is_a_concurrent_requests_quota(store, name):
    # The draft's concurrent-requests quota: q is the cap, r the free slots, and no
    # window or reset time (a slot comes back when its holder lets go).
    ratesync.configure_limiter(name, store_id=store, max_concurrent=2)
    c = client(make_app(RateLimitDependency(name)))
    r = c.get("/x")
    assert r.status_code == 200
    assert r.headers["RateLimit-Policy"] == f'"{name}";q=2;qu="concurrent-requests"'
    assert r.headers["RateLimit"] == f'"{name}";r=1'  # this request holds the other
    assert "Retry-After" not in r.headers
    assert not any(h.lower().startswith("x-ratelimit") for h in r.headers), "no rate"
    held = [ratesync.sync.try_acquire(name, key=PEER) for _ in range(2)]
    assert None not in held
    try:
        r = c.get("/x")
    finally:
        for permit in held:
            permit.release()
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"  # a hint: no clock tells when a slot frees
    assert r.headers["RateLimit-Policy"] == f'"{name}";q=2;qu="concurrent-requests"'
    assert r.headers["RateLimit"] == f'"{name}";r=0'
    assert not any(h.lower().startswith("x-ratelimit") for h in r.headers), "no rate"
    assert "limit" not in r.json()["detail"][0]["context"]
    # The middleware gives the same headers.
    mw = client(make_app(middleware={"limiter_id": name}))
    r = mw.get("/x")
    assert r.status_code == 200
    assert r.headers["RateLimit-Policy"] == f'"{name}";q=2;qu="concurrent-requests"'
    assert r.headers["RateLimit"] == f'"{name}";r=1'


def test_composite_headers_list_every_limit_and_x_ratelimit_the_rate(store, name):
    window_limiter(store, f"{name}-w", limit=5)
    ratesync.configure_limiter(f"{name}-c", store_id=store, max_concurrent=2)
    comp = CompositeRateLimitDependency(
        {"w": f"{name}-w", "c": f"{name}-c"}, identifier_extractor=lambda r: {"w": "k", "c": "k"}
    )
    r = client(make_app(comp)).get("/x")
    assert r.status_code == 200
    policies = r.headers["RateLimit-Policy"].split(", ")
    assert sorted(policies) == ['"c";q=2;qu="concurrent-requests"', '"w";q=5;w=60']
    states = r.headers["RateLimit"].split(", ")
    assert sorted(s.split(";t=")[0] for s in states) == ['"c";r=1', '"w";r=4']
    assert r.headers["X-RateLimit-Limit"] == "5"
    assert r.headers["X-RateLimit-Remaining"] == "4"


def test_client_ip_through_trusted_proxies(store, name):
    window_limiter(store, name, limit=100)
    configure_fastapi(trusted_proxy_networks=["10.0.0.0/8", "2001:db8::/32"])
    app = make_app(RateLimitDependency(name))
    cases = [
        # (peer, headers, client ip)
        ("10.0.0.1", [("X-Forwarded-For", "198.51.100.1")], "198.51.100.1"),
        ("10.0.0.1", [("X-Forwarded-For", "6.6.6.6, 198.51.100.1, 10.9.9.9")], "198.51.100.1"),
        # every hop trusted: the leftmost is the best known
        ("10.0.0.1", [("X-Forwarded-For", "10.0.0.3, 10.0.0.2")], "10.0.0.3"),
        # an unusable hop stops the walk at the last proxy known
        ("10.0.0.1", [("X-Forwarded-For", "1.2.3.4, unknown, 10.0.0.2")], "10.0.0.2"),
        ("10.0.0.1", [("X-Forwarded-For", "[2001:db9::1]:443")], "2001:db9::1"),
        # X-Forwarded-For first, then Forwarded, then X-Real-IP
        ("10.0.0.1", [("X-Real-IP", "7.7.7.7"), ("X-Forwarded-For", "8.8.8.8")], "8.8.8.8"),
        ("10.0.0.1", [("X-Real-IP", "7.7.7.7"), ("Forwarded", "for=9.9.9.9")], "9.9.9.9"),
        ("10.0.0.1", [("X-Real-IP", " 7.7.7.7 ")], "7.7.7.7"),
        ("2001:db8::5", [("Forwarded", 'for="[2001:db9::2]:80";by=x')], "2001:db9::2"),
        # several header lines read as one list, in order
        ("10.0.0.1", [("X-Forwarded-For", "5.5.5.5"), ("X-Forwarded-For", "10.0.0.7")], "5.5.5.5"),
        ("::ffff:10.0.0.9", [("X-Forwarded-For", "::ffff:1.2.3.4")], "1.2.3.4"),
        # an untrusted peer's headers change nothing
        ("203.0.113.9", [("X-Forwarded-For", "1.1.1.1"), ("Forwarded", "for=1.1.1.1")], "203.0.113.9"),
    ]
    for peer, headers, expected in cases:
        r = client(app, peer).get("/x", headers=headers)
        assert r.status_code == 200, (peer, headers, r.text)
        assert r.json() == {"ip": expected}, (peer, headers)
    # The key is the client's: a second client through the same proxy is counted apart.
    window_limiter(store, name + "_one", limit=1)
    one = client(make_app(RateLimitDependency(name + "_one")), "10.0.0.1")
    assert one.get("/x", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert one.get("/x", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    assert one.get("/x", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200


def test_invalid_trusted_proxy_networks_are_named():
    with pytest.raises(ValueError, match="invalid trusted proxy network.*10.0.0.0/33"):
        configure_fastapi(trusted_proxy_networks=["192.168.0.0/16", "10.0.0.0/33"])
    with pytest.raises(ValueError, match="`proxy.internal`"):
        configure_fastapi(trusted_proxy_networks=["proxy.internal"])
    configure_fastapi(trusted_proxy_networks=[" 10.1.2.3/8 ", "::1"])  # host bits, spaces: fine


def test_invalid_networks_of_an_argument_are_skipped_with_a_warning(caplog):
    from starlette.requests import Request as StarletteRequest

    scope = {
        "type": "http",
        "client": ("10.0.0.1", 1234),
        "headers": [(b"x-forwarded-for", b"9.9.9.9")],
    }
    with caplog.at_level("WARNING", logger="ratesync.contrib.fastapi.ip_utils"):
        ip = get_client_ip(StarletteRequest(scope), ["not-a-network", "10.0.0.0/8"])
    assert ip == "9.9.9.9"
    assert "not-a-network" in caplog.text


class LiveServer:
    """The app served by a real uvicorn on a free port, in a thread with its own loop."""

    def __init__(self, app: FastAPI) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(params=["memory", "redis"])
def any_store(request, store):
    """A memory store, or a Redis store (its server started by the session fixture)."""
    if request.param == "memory":
        return store
    return request.getfixturevalue("redis_store")


async def test_real_server_admits_exactly_the_limit_under_concurrent_requests(any_store, name):
    import asyncio

    import httpx

    limit = 25
    window_limiter(any_store, name, limit=limit)
    with LiveServer(make_app(RateLimitDependency(name))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            responses = await asyncio.gather(*(http.get("/x") for _ in range(3 * limit)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == limit, codes
    assert codes.count(429) == 2 * limit, codes
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.headers["X-RateLimit-Remaining"] == "0"


async def test_real_server_never_exceeds_max_concurrent(any_store, name):
    import asyncio

    import httpx

    ratesync.configure_limiter(name, store_id=any_store, max_concurrent=2)
    inside = 0
    most_inside = 0
    app = FastAPI()
    app.add_exception_handler(RateLimitExceededError, rate_limit_exception_handler)

    @app.get("/slow", dependencies=[Depends(RateLimitDependency(name, timeout=30))])
    async def slow():
        nonlocal inside, most_inside
        inside += 1
        most_inside = max(most_inside, inside)
        await asyncio.sleep(0.05)
        inside -= 1
        return {}

    with LiveServer(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            responses = await asyncio.gather(*(http.get("/slow") for _ in range(12)))
    assert [r.status_code for r in responses] == [200] * 12
    assert most_inside == 2
    _slot_free(name, "127.0.0.1")


def test_fixed_window_headers_show_the_real_reset(store, name):
    ratesync.configure_limiter(
        name, store_id=store, algorithm="fixed_window", limit=2, period="day",
        utc_offset="+05:30",
    )
    c = client(make_app(RateLimitDependency(name)))
    # The next midnight in India (+05:30), as a Unix time.
    midnight = (math.floor((time.time() + 19_800) / 86_400) + 1) * 86_400 - 19_800
    for remaining in (1, 0):
        r = c.get("/x")
        assert r.status_code == 200
        assert r.headers["RateLimit-Policy"] == f'"{name}";q=2;w=86400'
        t = int(r.headers["RateLimit"].split(";t=")[1])
        assert r.headers["RateLimit"] == f'"{name}";r={remaining};t={t}'
        assert abs(t - (midnight - time.time())) <= 2
        assert int(r.headers["X-RateLimit-Reset"]) == midnight
    r = c.get("/x")
    assert r.status_code == 429
    retry = int(r.headers["Retry-After"])
    assert abs(retry - (midnight - time.time())) <= 2
    assert r.headers["RateLimit"] == f'"{name}";r=0;t={retry}'
    assert int(r.headers["X-RateLimit-Reset"]) == midnight
    # A month's window is its longest, 31 days; its end is in `t`.
    ratesync.configure_limiter(
        f"{name}-m", store_id=store, algorithm="fixed_window", limit=2, period="month"
    )
    r = client(make_app(RateLimitDependency(f"{name}-m"))).get("/x")
    assert r.headers["RateLimit-Policy"] == f'"{name}-m";q=2;w=2678400'

"""The FastAPI integration's HTTP helpers are the Rust core's (``ratesync::http``):
the client IP behind trusted proxies and the ``RateLimit`` headers, checked on real
Starlette requests and responses.

The client-IP table comes from crates/ratesync/tests/http_client_ip.rs, where it held
20,000 random cases' answers of the former Python parser, most of them where the
answer is not the peer; it now pins the one parser through Starlette."""

from __future__ import annotations

import ipaddress
import math
import random
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import FastAPI, Request, Response  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from starlette.requests import Request as StarletteRequest  # noqa: E402

from ratesync import _native  # noqa: E402
from ratesync.contrib.fastapi import (  # noqa: E402
    RateLimitResult,
    configure_fastapi,
    get_client_ip,
    get_rate_limit_headers,
    set_rate_limit_headers,
    validate_ip,
)

TRUSTED = ["10.0.0.0/8", "2001:db8::/32", "192.168.0.0/16"]

# (peer, raw header lines, the client IP)
CASES = [
    ("10.2.3.4", [(b"x-forwarded-for", b"[::ffff:1.2.3.4]:49590,[::ffff:1.2.3.4]:9232"), (b"forwarded", b"")], "1.2.3.4"),
    ("2001:db8::1", [(b"x-forwarded-for", b"[255.255.255.255]:5173;2001:db9::1;for=\"unknown\";by=x"), (b"x-forwarded-for", b"[::1]:22975, 192.168.1.1, for=\"unknown\";by=x"), (b"x-forwarded-for", b"10.0.0.1")], "10.0.0.1"),
    ("10.0.0.1", [(b"x-real-ip", b"[192.168.1.1]:7443"), (b"forwarded", b"49\xffa13\x096 ; 0.0.0.0 ; ]93  ;"), (b"x-forwarded-for", b"0.0.0.0:97;10.0.0.1;192.168.1.1")], "0.0.0.0"),
    ("10.2.3.4", [(b"x-real-ip", b"o69\xa0 ; for=\"2001:db9::1\";by=x ; 2001:db9::1"), (b"forwarded", b"[1.2.3.4]:19423 ; \x09455\xe9=\xe9 ; 6\x859\x85\x09 ; 1.2.3.4"), (b"forwarded", b",2, 10.0.0.1:81, 198.51.100.7, FOR=1.2.3.4")], "1.2.3.4"),
    ("10.2.3.4", [(b"x-real-ip", b"192.168.1.1")], "192.168.1.1"),
    ("192.168.1.1", [(b"forwarded", b""), (b"forwarded", b"\xff8f], "), (b"x-forwarded-for", b"[10.0.0.1]:25215 ; 10.2.3.4 ; 1.2.3.4:12")], "10.0.0.1"),
    ("192.168.1.1", [(b"x-real-ip", b"2\xa0"), (b"x-forwarded-for", b"\x09\xa06,10.2.3.4")], "10.2.3.4"),
    ("::ffff:10.0.0.9", [(b"x-forwarded-for", b""), (b"x-forwarded-for", b"2001:db9::1")], "2001:db9::1"),
    ("10.0.0.1", [(b"x-forwarded-for", b"255.255.255.255, 2001:db8::1, 10.2.3.4:79")], "255.255.255.255"),
    ("10.2.3.4", [(b"x-forwarded-for", b"198.51.100.7, \xa0r\x8536, 2001:db9::1"), (b"x-real-ip", b"68rf ; [10.0.0.1]:11723"), (b"forwarded", b"")], "2001:db9::1"),
    ("::ffff:10.0.0.9", [(b"x-real-ip", b"::ffff:1.2.3.4, a5], 1.2.3.4"), (b"forwarded", b"::ffff:1.2.3.4;for=\"[255.255.255.255]\";proto=https;::ffff:1.2.3.4"), (b"x-real-ip", b",10.0.0.1")], "255.255.255.255"),
    ("::ffff:10.0.0.9", [(b"x-real-ip", b"[1.2.3.4]:48311,,]a\xff")], "1.2.3.4"),
    ("192.168.1.1", [(b"x-forwarded-for", b"255.255.255.255")], "255.255.255.255"),
    ("192.168.1.1", [(b"x-forwarded-for", b""), (b"x-forwarded-for", b"10.0.0.1")], "10.0.0.1"),
    ("192.168.1.1", [(b"x-forwarded-for", b"\xa0: ,;3,,for=\"::ffff:10.0.0.9\";by=x,::ffff:10.0.0.9")], "10.0.0.9"),
    ("10.2.3.4", [(b"x-forwarded-for", b"198.51.100.7:48 ; 198.51.100.7")], "198.51.100.7"),
    ("192.168.1.1", [(b"forwarded", b"for=\"unknown\", 02[[f7\x09"), (b"x-forwarded-for", b"by=1.2.3.4")], "192.168.1.1"),
    ("10.0.0.1", [(b"x-real-ip", b"2001:db8::1:95"), (b"forwarded", b"a\xa02, ; 6\xe9 ; 10.0.0.1:38 ; 255.255.255.255:7")], "10.0.0.1"),
    ("2001:db8::1", [(b"forwarded", b"[2001:db8::1]:50576,\xe91[;\xa047\",255.255.255.255"), (b"x-real-ip", b"by=1.2.3.4;[::ffff:10.0.0.9]:67498;[::ffff:10.0.0.9]:11403")], "2001:db8::1"),
    ("10.0.0.1", [(b"x-real-ip", b"for=\"10.2.3.4\";by=x,,"), (b"forwarded", b",;::ffff:1.2.3.4:72;::ffff:10.0.0.9:10")], "10.0.0.1"),
    ("2001:db8::1", [(b"forwarded", b"::1:93 ; 1.2.3.4 ; 2001:db8::1")], "2001:db8::1"),
    ("2001:db8::1", [(b"x-forwarded-for", b"")], "2001:db8::1"),
]


def starlette_request(peer: str, lines: list[tuple[bytes, bytes]]) -> StarletteRequest:
    return StarletteRequest({"type": "http", "client": (peer, 4711), "headers": lines})


@pytest.fixture(autouse=True)
def _no_code_proxies():
    configure_fastapi(None)
    yield
    configure_fastapi(None)


@pytest.mark.parametrize("peer, lines, expected", CASES)
def test_documented_cases_on_starlette_requests(peer, lines, expected):
    assert get_client_ip(starlette_request(peer, lines), TRUSTED) == expected
    # The same from the configured networks, and through the native call directly.
    configure_fastapi(trusted_proxy_networks=TRUSTED)
    assert get_client_ip(starlette_request(peer, lines)) == expected
    assert _native.client_ip(peer, lines, TRUSTED) == expected
    # Header lines as str (Latin-1, as Starlette decodes them) mean the same.
    text = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in lines]
    assert _native.client_ip(peer, text, _native.TrustedProxies(TRUSTED)) == expected


def test_documented_cases_through_an_app():
    """The raw bytes as a client sends them, through FastAPI's TestClient."""
    app = FastAPI()

    @app.get("/ip")
    async def ip(request: Request):
        return {"ip": get_client_ip(request, TRUSTED)}

    for peer, lines, expected in CASES:
        c = TestClient(app, client=(peer, 50000))
        r = c.get("/ip", headers=lines)
        assert r.json() == {"ip": expected}, (peer, lines)


def test_untrusted_peers_are_their_own_key_whatever_the_headers():
    rng = random.Random(7)
    noise = [b"1.1.1.1", b"for=2.2.2.2", b"[::1]:80", b"unknown", b"\xff\x00", b"10.0.0.1"]
    for _ in range(500):
        peer = rng.choice(["203.0.113.9", "::ffff:198.51.100.3", "2001:db9::7", "11.0.0.1"])
        lines = [
            (rng.choice([b"x-forwarded-for", b"forwarded", b"x-real-ip", b"X-Forwarded-For"]),
             b", ".join(rng.choices(noise, k=rng.randint(0, 4))))
            for _ in range(rng.randint(0, 3))
        ]
        expected = validate_ip(peer)
        assert get_client_ip(starlette_request(peer, lines), TRUSTED) == expected
        assert get_client_ip(starlette_request(peer, lines), []) == expected


def test_peers_that_are_not_addresses_are_unknown():
    assert get_client_ip(StarletteRequest({"type": "http", "headers": []}), TRUSTED) == "unknown"
    assert get_client_ip(starlette_request("testclient", []), TRUSTED) == "unknown"
    assert get_client_ip(starlette_request("", []), TRUSTED) == "unknown"


def test_a_link_local_peer_keeps_its_zone_as_ipaddress_gives_it():
    lines = [(b"x-forwarded-for", b"198.51.100.8")]
    assert get_client_ip(starlette_request("fe80::1%eth0", lines), TRUSTED) == "fe80::1%eth0"
    assert get_client_ip(starlette_request("fe80::1%eth0", lines), ["fe80::/10"]) == "198.51.100.8"
    assert get_client_ip(starlette_request("fe80::1%eth0", []), ["fe80::/10"]) == "fe80::1%eth0"


def _reference_validate_ip(text: str) -> str | None:
    """What validate_ip is documented to be, on the standard library."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def test_validate_ip_is_ipaddress_normalized():
    rng = random.Random(11)
    pieces = ["", " ", "\t", "\x1c", "\xa0", "\u3000", "%", "%eth0", "%1", ":80", "/8", "0", ".", ":", "x"]
    samples = ["", "unknown", "1.2.3", "01.2.3.4", "1.2.3.4.5", "::ffff:1.2.3.4%eth0", "1.2.3.4%eth0",
               "fe80::1%", "fe80::1%a%b", "fe80::1 %eth0", " fe80::1%eth0 ", "::1.2.3.4", "[::1]",
               "2001:DB8::1", "1:0:0:1:0:0:0:1", "0:0:1::", "::", "256.1.1.1"]
    for _ in range(3000):
        kind = rng.randrange(4)
        if kind == 0:
            addr = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        elif kind == 1:
            addr = str(ipaddress.IPv6Address(rng.getrandbits(128) >> rng.choice([0, 32, 64, 96])))
        elif kind == 2:
            addr = "::ffff:" + str(ipaddress.IPv4Address(rng.getrandbits(32)))
        else:
            addr = ipaddress.IPv6Address(rng.getrandbits(128)).exploded.upper()
        samples.append(rng.choice(pieces) + addr + rng.choice(pieces))
    for text in samples:
        assert validate_ip(text) == _reference_validate_ip(text), repr(text)


def test_trusted_networks_are_parsed_by_the_core():
    with pytest.raises(ValueError, match="invalid trusted proxy network: `10.0.0.0/33`"):
        _native.TrustedProxies(["10.0.0.0/8", "10.0.0.0/33"])
    lenient = _native.TrustedProxies(["x", "10.0.0.0/8", "::/129"], strict=False)
    assert lenient.skipped == ["x", "::/129"]
    assert "10.9.9.9" in lenient and "::ffff:10.0.0.1" in lenient
    assert "11.0.0.1" not in lenient and "garbage" not in lenient
    assert _native.TrustedProxies([]).is_empty()
    with pytest.raises(ValueError, match="`nope`"):
        _native.client_ip("10.0.0.1", [], ["nope"])


# --- headers -------------------------------------------------------------------


def test_a_rate_sync_style_result_is_a_rate_quota_without_window():
    admitted = RateLimitResult(allowed=True, limit=10, remaining=7, reset_in=2.5)
    h = get_rate_limit_headers(admitted)
    assert list(h) == [
        "RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    ]
    assert h["RateLimit-Policy"] == '"default";q=10'
    assert h["RateLimit"] == '"default";r=7;t=3'
    assert h["X-RateLimit-Limit"] == "10" and h["X-RateLimit-Remaining"] == "7"
    assert int(h["X-RateLimit-Reset"]) == admitted.reset_at
    assert admitted.quota_unit == "requests"

    refused = RateLimitResult(False, 10, 3, 0.2)
    h = get_rate_limit_headers(refused)
    assert h["Retry-After"] == "1" and refused.retry_after == 1
    assert h["RateLimit"] == '"default";r=0;t=1'
    assert h["X-RateLimit-Remaining"] == "0"


def test_window_and_the_decisions_retry_delay():
    r = RateLimitResult(False, 5, 0, 9.0, retry_after_seconds=4.2, policy="login", window=60)
    h = get_rate_limit_headers(r)
    assert h["RateLimit-Policy"] == '"login";q=5;w=60'
    assert h["RateLimit"] == '"login";r=0;t=5'
    assert h["Retry-After"] == "5" == str(r.retry_after) == str(r.reset_seconds)
    tb = RateLimitResult(True, 10, 9, 0.3, policy="api", window=10 / 3)
    assert get_rate_limit_headers(tb)["RateLimit-Policy"] == '"api";q=10;w=4'
    assert tb.reset_seconds == 1
    # A float a hair over a whole second is not another second.
    assert RateLimitResult(False, 1, 0, 2.0000000001).retry_after == 2


def test_a_concurrent_requests_quota():
    r = RateLimitResult(False, 3, 0, 0.0, policy="uploads", quota_unit="concurrent-requests")
    assert get_rate_limit_headers(r) == {
        "RateLimit-Policy": '"uploads";q=3;qu="concurrent-requests"',
        "RateLimit": '"uploads";r=0',
        "Retry-After": "1",
    }


def test_no_quota_known_shows_only_retry_after():
    r = RateLimitResult(False, 3, 0, 4.2, quota_unit=None)
    assert get_rate_limit_headers(r) == {"Retry-After": "5"}
    assert get_rate_limit_headers(RateLimitResult(True, 3, 2, 1.0, quota_unit=None)) == {}


def test_several_limits_the_main_one_first():
    main = RateLimitResult(False, 5, 0, 30.0, policy="login", window=60)
    slots = RateLimitResult(True, 4, 3, 0.0, policy="slots", quota_unit="concurrent-requests")
    api = RateLimitResult(True, 100, 97, 1.5, policy='a"b\\c\u00e9', window=20)
    h = get_rate_limit_headers(main, slots, api)
    assert h["RateLimit-Policy"] == (
        '"login";q=5;w=60, "slots";q=4;qu="concurrent-requests", "a\\"b\\\\c";q=100;w=20'
    )
    assert h["RateLimit"] == '"login";r=0;t=30, "slots";r=3, "a\\"b\\\\c";r=97;t=2'
    assert h["X-RateLimit-Limit"] == "5" and h["Retry-After"] == "30"
    # X-RateLimit-* of the first limit on a rate, even when the main one is a cap.
    h = get_rate_limit_headers(slots, api)
    assert h["X-RateLimit-Limit"] == "100" and h["X-RateLimit-Remaining"] == "97"
    assert "Retry-After" not in h


def test_reset_at_is_a_unix_time_rounded_up():
    before = time.time()
    r = RateLimitResult(True, 1, 1, 10.5)
    # Up to 10 ms past a whole second is that second (the time from a decision to
    # its headers: a fixed window resets on a whole second).
    assert math.ceil(before + 10.5 - 0.01) <= r.reset_at <= math.ceil(time.time() + 10.5)


def test_bad_values():
    with pytest.raises(ValueError, match="quota_unit"):
        RateLimitResult(True, 1, 1, 0.0, quota_unit="tokens")
    # Negative numbers (a hand-made result) show as zero, never as an error.
    h = get_rate_limit_headers(RateLimitResult(True, 5, -1, -3.0))
    assert h["RateLimit"] == '"default";r=0;t=0'


def test_set_rate_limit_headers_on_a_response():
    response = Response()
    set_rate_limit_headers(response, RateLimitResult(False, 2, 0, 1.2, policy="p", window=1))
    assert response.headers["ratelimit-policy"] == '"p";q=2;w=1'
    assert response.headers["ratelimit"] == '"p";r=0;t=2'
    assert response.headers["retry-after"] == "2"

"""Client IP of a request, honouring forwarding headers only from trusted proxies.

``X-Forwarded-For`` (else ``Forwarded``, RFC 7239, else ``X-Real-IP``) is read
only when the direct peer is in the trusted proxy networks, and then right to left:
each hop is believed only while the hop that reported it is trusted, so the client
IP is the first hop (from the right) outside the trusted networks. A header forged
by an untrusted peer changes nothing: the peer's address is used.

The decision is the Rust core's (``ratesync::http::client_ip``, through the
extension), made on the request's raw header bytes: the FastAPI integration and the
Rust tower layer key a request identically.

Trusted networks, in order: the ``trusted_proxies`` argument,
``configure_fastapi(trusted_proxy_networks=...)``, ``[fastapi]
trusted_proxy_networks`` of the configuration file, else none (rate-sync trusted
every private network by default; ratesync trusts nothing unless configured;
``DEFAULT_TRUSTED_PROXY_NETWORKS`` is rate-sync's list, to pass explicitly).
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache

from ratesync import _native
from ratesync.identifiers import combine_identifiers, hash_identifier

try:
    from starlette.requests import Request

    FASTAPI_AVAILABLE = True
except ImportError:  # pragma: no cover - FastAPI is optional
    Request = None  # type: ignore[misc, assignment]
    FASTAPI_AVAILABLE = False

logger = logging.getLogger(__name__)

# rate-sync's default list (private networks); not applied unless passed.
DEFAULT_TRUSTED_PROXY_NETWORKS: list[str] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "::1/128",
    "fc00::/7",
]

_configured: list[str] | None = None


def configure_fastapi(trusted_proxy_networks: list[str] | None = None) -> None:
    """Sets the trusted proxy networks in code (``None``: back to the file's).

    Raises ``ValueError`` naming the first entry that is not a network."""
    global _configured
    if trusted_proxy_networks is not None:
        _trusted_proxies(tuple(trusted_proxy_networks), strict=True)
    _configured = None if trusted_proxy_networks is None else list(trusted_proxy_networks)


def get_trusted_proxy_networks() -> list[str]:
    """The trusted proxy networks in effect when no argument is given."""
    if _configured is not None:
        return list(_configured)
    return list(_native.trusted_proxy_networks())


@lru_cache(maxsize=64)
def _trusted_proxies(networks: tuple[str, ...], strict: bool = False) -> _native.TrustedProxies:
    """The networks parsed by the core; without ``strict``, entries that are not
    networks are left out with a warning (as for a ``trusted_proxies`` argument)."""
    parsed = _native.TrustedProxies(list(networks), strict=strict)
    for net in parsed.skipped:
        logger.warning("Invalid trusted proxy network: %s", net)
    return parsed


def validate_ip(ip: str) -> str | None:
    """The normalized address, or ``None`` if ``ip`` is not an IP address. An
    IPv4-mapped IPv6 address (``::ffff:1.2.3.4``, an IPv4 client seen by a
    dual-stack socket) is given as its IPv4 address, so one client has one key
    (the Rust layer's ``client_ip`` does the same)."""
    return _native.validate_ip(ip)


def is_private_ip(ip: str) -> bool:
    """Whether ``ip`` is private, loopback or reserved."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    return addr.is_private or addr.is_loopback or addr.is_reserved


def get_client_ip(request: Request, trusted_proxies: list[str] | None = None) -> str:
    """The client's IP address (``"unknown"`` without a usable peer address)."""
    if not FASTAPI_AVAILABLE:
        raise RuntimeError(
            "FastAPI/Starlette not installed. Install with: pip install ratesync[fastapi]"
        )
    if request.client is None or not request.client.host:
        return "unknown"
    trusted = _trusted_proxies(
        tuple(trusted_proxies if trusted_proxies is not None else get_trusted_proxy_networks())
    )
    # The raw header lines (bytes) of the ASGI scope: read as the Rust layer reads them.
    ip = _native.client_ip(request.client.host, request.scope.get("headers") or (), trusted)
    return "unknown" if ip is None else ip


__all__ = [
    "DEFAULT_TRUSTED_PROXY_NETWORKS",
    "FASTAPI_AVAILABLE",
    "combine_identifiers",
    "configure_fastapi",
    "get_client_ip",
    "get_trusted_proxy_networks",
    "hash_identifier",
    "is_private_ip",
    "validate_ip",
]

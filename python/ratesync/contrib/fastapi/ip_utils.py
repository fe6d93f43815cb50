"""Client IP of a request, honouring forwarding headers only from trusted proxies.

``X-Forwarded-For`` (else ``Forwarded``, RFC 7239, else ``X-Real-IP``) is read
only when the direct peer is in the trusted proxy networks, and then right to left:
each hop is believed only while the hop that reported it is trusted, so the client
IP is the first hop (from the right) outside the trusted networks. A header forged
by an untrusted peer changes nothing: the peer's address is used.

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
from typing import Sequence, Union

from ratesync import _native
from ratesync.identifiers import combine_identifiers, hash_identifier

try:
    from starlette.requests import Request

    FASTAPI_AVAILABLE = True
except ImportError:  # pragma: no cover - FastAPI is optional
    Request = None  # type: ignore[misc, assignment]
    FASTAPI_AVAILABLE = False

logger = logging.getLogger(__name__)

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

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
    """Sets the trusted proxy networks in code (``None``: back to the file's)."""
    global _configured
    if trusted_proxy_networks is not None:
        _parse_networks(tuple(trusted_proxy_networks), strict=True)
    _configured = None if trusted_proxy_networks is None else list(trusted_proxy_networks)


def get_trusted_proxy_networks() -> list[str]:
    """The trusted proxy networks in effect when no argument is given."""
    if _configured is not None:
        return list(_configured)
    return list(_native.trusted_proxy_networks())


@lru_cache(maxsize=64)
def _parse_networks(networks: tuple[str, ...], strict: bool = False) -> tuple[Network, ...]:
    parsed: list[Network] = []
    for net in networks:
        try:
            parsed.append(ipaddress.ip_network(net.strip(), strict=False))
        except ValueError:
            if strict:
                raise ValueError(f"invalid trusted proxy network {net!r}") from None
            logger.warning("Invalid trusted proxy network: %s", net)
    return tuple(parsed)


def _trusted(ip: str, networks: Sequence[Network]) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


def validate_ip(ip: str) -> str | None:
    """The normalized address, or ``None`` if ``ip`` is not an IP address. An
    IPv4-mapped IPv6 address (``::ffff:1.2.3.4``, an IPv4 client seen by a
    dual-stack socket) is given as its IPv4 address, so one client has one key
    (the Rust layer's ``client_ip`` does the same)."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def is_private_ip(ip: str) -> bool:
    """Whether ``ip`` is private, loopback or reserved."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    return addr.is_private or addr.is_loopback or addr.is_reserved


def _node_ip(node: str) -> str | None:
    """An address of a forwarding header (``1.2.3.4``, ``1.2.3.4:80``,
    ``[::1]:80``, ``"[::1]"``), or ``None`` (``unknown``, obfuscated, garbage)."""
    node = node.strip().strip('"').strip()
    if node.startswith("["):
        end = node.find("]")
        return validate_ip(node[1:end]) if end > 0 else None
    if node.count(":") == 1:
        node = node.split(":", 1)[0]
    return validate_ip(node)


def _forwarded_for(value: str) -> list[str | None]:
    """The ``for=`` nodes of a ``Forwarded`` header, left to right."""
    hops: list[str | None] = []
    for element in value.split(","):
        node = None
        for pair in element.split(";"):
            name, _, val = pair.partition("=")
            if name.strip().lower() == "for":
                node = val
        hops.append(_node_ip(node) if node is not None else None)
    return hops


def _header_hops(request: Request) -> list[str | None] | None:
    xff = request.headers.getlist("x-forwarded-for")
    if xff:
        return [_node_ip(part) for part in ",".join(xff).split(",")]
    forwarded = request.headers.getlist("forwarded")
    if forwarded:
        return _forwarded_for(",".join(forwarded))
    real_ip = request.headers.get("x-real-ip")
    if real_ip:
        return [_node_ip(real_ip)]
    return None


def get_client_ip(request: Request, trusted_proxies: list[str] | None = None) -> str:
    """The client's IP address (``"unknown"`` without a usable peer address)."""
    if not FASTAPI_AVAILABLE:
        raise RuntimeError(
            "FastAPI/Starlette not installed. Install with: pip install ratesync[fastapi]"
        )
    networks = _parse_networks(
        tuple(trusted_proxies if trusted_proxies is not None else get_trusted_proxy_networks())
    )
    peer = validate_ip(request.client.host) if request.client else None
    if peer is None:
        return "unknown"
    if not networks or not _trusted(peer, networks):
        return peer
    hops = _header_hops(request)
    if not hops:
        return peer
    client = peer
    for hop in reversed(hops):
        if hop is None:
            # An unusable hop: nothing to its left can be attributed; the last
            # trusted proxy is the best known address.
            return client
        client = hop
        if not _trusted(hop, networks):
            return hop
    return client


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

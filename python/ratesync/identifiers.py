"""Identifier helpers, as rate-sync's (``ratesync.domain.value_objects.identifier``):
same inputs, same outputs."""

from __future__ import annotations

import hashlib

_HASHES = {
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
}


def hash_identifier(
    identifier: str,
    *,
    length: int = 16,
    salt: str = "",
    algorithm: str = "sha256",
) -> str:
    """A truncated hex hash of ``identifier`` (lowercased and stripped first;
    ``"{salt}:"`` prepended when a salt is given) for privacy-safe limiter keys.
    An unknown ``algorithm`` falls back to sha256, as in rate-sync."""
    normalized = identifier.lower().strip()
    if salt:
        normalized = f"{salt}:{normalized}"
    digest = _HASHES.get(algorithm, hashlib.sha256)(normalized.encode()).hexdigest()
    return digest[:length]


def combine_identifiers(*identifiers: str | None, separator: str = ":") -> str:
    """Joins the non-empty identifiers (``None`` and ``""`` skipped) with ``separator``."""
    return separator.join(str(i) for i in identifiers if i)


__all__ = ["hash_identifier", "combine_identifiers"]

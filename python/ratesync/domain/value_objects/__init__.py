"""rate-sync's import path of the identifier helpers: ``ratesync.identifiers``."""

from ratesync.identifiers import combine_identifiers, hash_identifier

__all__ = ["hash_identifier", "combine_identifiers"]

"""rate-sync's import path of its domain layer (``ratesync.domain.value_objects``)."""

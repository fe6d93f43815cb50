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

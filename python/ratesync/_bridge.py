"""Hands results of the extension's runtime to asyncio futures (on their loop)."""

from __future__ import annotations

import asyncio
from typing import Any


def settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Called by the loop (``call_soon_threadsafe``); a cancelled future stays so."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)

"""The bridge between the extension's runtime and asyncio event loops.

Each loop gets one ``_native.LoopBridge``: results of network calls are handed to
the loop in batches through it (see ``docs/design.md#python``).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from ratesync import _native

# Every loop's bridge, dropped with its loop. A loop type that cannot be weakly
# referenced keeps its bridge for the life of the process.
_by_loop: weakref.WeakKeyDictionary[Any, _native.LoopBridge] = weakref.WeakKeyDictionary()
_pinned: dict[int, tuple[Any, _native.LoopBridge]] = {}


def of(loop: Any) -> _native.LoopBridge:
    """The bridge of ``loop``, made on first use. The extension asks for it, once per
    loop and thread (it keeps the bridge it used last: ``docs/design.md#python``)."""
    try:
        return _by_loop[loop]
    except KeyError:
        pass
    except TypeError:
        pinned = _pinned.get(id(loop))
        if pinned is not None and pinned[0] is loop:
            return pinned[1]
    bridge = _native.LoopBridge(loop)
    try:
        _by_loop[loop] = bridge
    except TypeError:
        _pinned[id(loop)] = (loop, bridge)
    return bridge


def _forget_in_child() -> None:
    """A forked child's runtime is new: its loops get new bridges. The parent's
    loops and their readers are left as they are: a child's loop shares its epoll
    instance with the parent's, so removing a reader there (``remove_reader``) would
    remove it from the parent's loop too, which would then never hear of its
    results again (asyncio does not support running a parent's loop in a child)."""
    _by_loop.clear()
    _pinned.clear()


os.register_at_fork(after_in_child=_forget_in_child)

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
    """A forked child's runtime is new: its loops get new bridges. The sockets the
    parent's bridges registered are shared with the parent; stop watching them."""
    bridges = list(_by_loop.items()) + list(_pinned.values())
    _by_loop.clear()
    _pinned.clear()
    for loop, bridge in bridges:
        fd = bridge.fileno()
        if fd is not None and not loop.is_closed():
            try:
                loop.remove_reader(fd)
            except Exception:  # noqa: BLE001 - a child must not die in a fork hook
                pass


os.register_at_fork(after_in_child=_forget_in_child)

"""pytest plugin of scripts/rate-sync-compliance.sh: runs rate-sync's compliance
suite against the installed ``ratesync``.

- rate-sync's tests import some of its internal modules (``ratesync.core``,
  ``ratesync.engines.memory``, ...). Those ratesync has as modules of its own are
  used as they are; any other ``ratesync.<name>`` is mapped to the package root,
  which exports the public names of rate-sync (``docs/design.md#python``). The
  mapped names are listed at the end, so a mapping that hides a missing module
  shows.
- With ``RATESYNC_COMPLIANCE_ALL_ENGINES=true``, every engine counts as one the
  suite runs everywhere: rate-sync runs most cases on memory alone, and this runs
  them on Redis and PostgreSQL too (cases that construct a memory limiter directly
  still skip themselves on the others).
- The closing summary counts the outcomes of each engine.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections import Counter
from types import ModuleType
from typing import Any

_MAPPED: list[str] = []


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: ModuleType) -> None:
        self._target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self._target

    def exec_module(self, module: ModuleType) -> None:
        pass


class _RootAlias(importlib.abc.MetaPathFinder):
    """``ratesync.<name>`` that no finder finds: the package root."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("ratesync.") or fullname.startswith("ratesync._"):
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is not None and find(fullname, path, target) is not None:
                return None
        root = importlib.import_module("ratesync")
        _MAPPED.append(fullname)
        spec = importlib.machinery.ModuleSpec(fullname, _AliasLoader(root), is_package=True)
        spec.submodule_search_locations = []
        return spec


sys.meta_path.append(_RootAlias())


def pytest_configure(config: Any) -> None:
    if os.environ.get("RATESYNC_COMPLIANCE_ALL_ENGINES") == "true":
        import dataclasses

        from compliance import utils

        for name, caps in list(utils.ENGINE_CAPABILITIES.items()):
            utils.ENGINE_CAPABILITIES[name] = dataclasses.replace(
                caps, requires_infrastructure=False
            )


_ENGINE = re.compile(r"\[(memory|redis|postgres)\]")
_OUTCOMES: dict[str, Counter[str]] = {}


def pytest_runtest_logreport(report: Any) -> None:
    # One outcome per test: its call, or the setup that failed or skipped it.
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        match = _ENGINE.search(report.nodeid)
        engine = match.group(1) if match else "other"
        _OUTCOMES.setdefault(engine, Counter())[report.outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write = terminalreporter.write_line
    write("")
    write("rate-sync compliance, by engine:")
    for engine, outcomes in sorted(_OUTCOMES.items()):
        total = sum(outcomes.values())
        write(
            f"  {engine:9} {outcomes['passed']}/{total} passed"
            f", {outcomes['failed']} failed, {outcomes['skipped']} skipped"
        )
    if _MAPPED:
        write("imports mapped to the package root: " + ", ".join(sorted(set(_MAPPED))))

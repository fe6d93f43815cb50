"""Runs one example of rate-sync's documentation in this interpreter (whichever
package provides ``ratesync`` in it) for scripts/compliance/run_examples.py, whose
docstring states the rules. Usage:

    python example_driver.py MODE FILE RESULT_JSON

MODE is block, file, app-file, pytest or config; FILE is in the current directory.
Exit status: 0, 1 (an exception), 3 (an exercised application answered 500), 130
(interrupted).
What the example prints (and logs through its own loggers) goes to stdout; the
libraries' own log records, Python warnings, the names of the ``ratesync`` functions
the example's code called and an uncaught exception go to RESULT_JSON.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import enum
import inspect
import json
import logging
import os
import sys
import threading
import traceback
import warnings
from pathlib import Path

# Headers every exercised request carries: the ones the documents' applications read.
APP_HEADERS = {
    "X-API-Key": "key-1",
    "X-Tenant-ID": "tenant-acme",
    "Authorization": "Bearer token-1",
}
# Response headers printed beside status and body.
SHOWN_HEADERS = ("retry-after", "x-ratelimit", "ratelimit", "content-type")
CALLS_PER_ROUTE = 3

library: list[str] = []
called: list[str] = []
server_errors: list[str] = []  # requests an exercised app answered with 500


def _is_library(name: str) -> bool:
    return name == "ratesync" or name.startswith("ratesync.")


def capture_library_logs() -> None:
    """Records of the libraries' loggers go to the result file, not to stdout."""
    original = logging.Logger.callHandlers

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        if _is_library(record.name):
            library.append(f"{record.levelname} {record.name}: {record.getMessage()}")
            return
        original(self, record)

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        library.append(f"{category.__name__}: {message}")

    warnings.showwarning = show


def track_calls(example: str) -> None:
    """Names of the ``ratesync`` functions called from the example's own code."""

    def profile(frame, event, arg):  # noqa: ANN001, ANN202
        if event == "call":
            caller = frame.f_back
            if (
                caller is not None
                and caller.f_code.co_filename == example
                and _is_library(frame.f_globals.get("__name__", ""))
            ):
                name = frame.f_code.co_name
                if name not in called:
                    called.append(name)
        elif event == "c_call" and frame.f_code.co_filename == example:
            module = getattr(arg, "__module__", None) or ""
            if _is_library(module) and arg.__name__ not in called:
                called.append(arg.__name__)

    sys.setprofile(profile)
    threading.setprofile(profile)


def run_source(path: Path, name: str) -> dict:
    code = compile(path.read_text(), str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict = {"__name__": name, "__file__": str(path)}
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))  # noqa: S307 - the example is what is tested
    else:
        exec(code, namespace)  # noqa: S102
    return namespace


class NotData(Exception):
    pass


def _fields() -> dict[str, list[str]]:
    """rate-sync's result classes and their fields (RATESYNC_EXAMPLES_FIELDS: a JSON
    file of "module.Class" and "Class" -> field names, from rate-sync's source)."""
    path = os.environ.get("RATESYNC_EXAMPLES_FIELDS")
    return json.loads(Path(path).read_text()) if path else {}


FIELDS = _fields()


def plain(value: object) -> object:
    """A value as data, for printing: primitives, containers, and result objects as
    their rate-sync fields (a drop-in replacement may add fields: not shown)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, type):
        raise NotData
    cls = type(value)
    names = FIELDS.get(f"{cls.__module__}.{cls.__name__}") or FIELDS.get(cls.__name__)
    if names is None and dataclasses.is_dataclass(value):
        names = [f.name for f in dataclasses.fields(value)]
    if names is None:
        raise NotData
    return {"__class__": cls.__name__, **{n: plain(getattr(value, n, "(missing)")) for n in names}}


def print_values(namespace: dict, before: set[str]) -> None:
    """The data the example left in its top-level names (results, states, hashes)."""
    lines = []
    for name, value in namespace.items():
        if name.startswith("_") or name in before:
            continue
        try:
            data = plain(value)
        except NotData:
            continue
        lines.append(f"{name} = {json.dumps(data, sort_keys=True, default=str)}")
    if lines:
        print("--- values of the example's top-level names")
        print("\n".join(lines))


def param_value(param) -> str:  # noqa: ANN001
    annotation = getattr(param, "type_", None) or getattr(getattr(param, "field_info", None), "annotation", None)
    return "1" if annotation is int else "acme"


def shown_headers(resp) -> dict:  # noqa: ANN001
    return {k: v for k, v in sorted(resp.headers.items()) if k.lower().startswith(SHOWN_HEADERS)}


def required(param) -> bool:  # noqa: ANN001
    flag = getattr(param, "required", None)
    return bool(param.field_info.is_required() if flag is None else flag)


def route_params(dependant) -> tuple[list, list]:  # noqa: ANN001
    """Path and query parameters of a route and of all its dependencies."""
    path, query = list(dependant.path_params), list(dependant.query_params)
    for sub in dependant.dependencies:
        p, q = route_params(sub)
        path += p
        query += q
    return path, query


def exercise_apps(namespace: dict) -> None:
    if "fastapi" not in sys.modules:
        return
    from fastapi import FastAPI
    from fastapi.routing import APIRoute
    from fastapi.testclient import TestClient

    apps = [(k, v) for k, v in namespace.items() if isinstance(v, FastAPI)]
    for app_name, app in apps:
        print(f"--- exercising app {app_name!r} with TestClient")
        with TestClient(app) as client:
            if not any(isinstance(r, APIRoute) for r in app.routes):
                # Middleware or handlers alone: requests to "/" go through them.
                for _ in range(CALLS_PER_ROUTE):
                    resp = client.get("/", headers=APP_HEADERS)
                    print(f"GET / -> {resp.status_code} {shown_headers(resp)} {resp.text[:400]}")
            for route in app.routes:
                if not isinstance(route, APIRoute):
                    continue
                method = next(m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if m in route.methods)
                path_params, query_params = route_params(route.dependant)
                path = route.path_format
                for p in path_params:
                    path = path.replace("{" + p.name + "}", param_value(p))
                query = {p.alias: param_value(p) for p in query_params if required(p)}
                body = {"message": "hello"} if method in ("POST", "PUT", "PATCH") else None
                for _ in range(CALLS_PER_ROUTE):
                    try:
                        resp = client.request(method, path, params=query, headers=APP_HEADERS, json=body)
                    except Exception as e:  # noqa: BLE001 - the app's failure is the result
                        print(f"{method} {path} {query or ''} -> 500 raised {type(e).__name__}: {e}")
                        server_errors.append(f"{method} {path}")
                        continue
                    text = resp.text if len(resp.text) < 400 else resp.text[:400] + "..."
                    print(f"{method} {path} {query or ''} -> {resp.status_code} {shown_headers(resp)} {text}")
                    if resp.status_code == 500:
                        server_errors.append(f"{method} {path}")


def run_pytest(path: Path) -> int:
    import pytest

    outcomes: list[str] = []

    class Outcomes:
        def pytest_runtest_logreport(self, report) -> None:  # noqa: ANN001
            if report.when == "call" or report.outcome != "passed":
                line = f"{report.nodeid.split('::')[-1]} [{report.when}]: {report.outcome}"
                if report.failed and report.longrepr is not None:
                    crash = getattr(report.longrepr, "reprcrash", None)
                    line += f" ({crash.message.splitlines()[0]})" if crash else ""
                outcomes.append(line)

    real = sys.stdout
    with open("pytest.log", "w") as log:
        sys.stdout = log
        try:
            code = pytest.main(
                [str(path), "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
                 "-o", "asyncio_default_fixture_loop_scope=function"],
                plugins=[Outcomes()],
            )
        finally:
            sys.stdout = real
    print(f"pytest exit code {int(code)}")
    for line in outcomes:
        print(line)
    return int(code)


# What rate-sync 0.4.2 reports: a drop-in replacement may add keys and fields, which
# are listed with the library output (not compared). `initialized` is left out too:
# ratesync has no lazy initialization (every limiter is ready once configured).
LIMITER_INFO_KEYS = (
    "algorithm", "backend", "fail_closed", "limit", "max_concurrent", "metrics",
    "rate_per_second", "timeout", "window_seconds",
)
RESULT_FIELDS = ("allowed", "limit", "remaining", "reset_in", "limiter_id")
STORE_INFO_KEYS = (
    "engine", "url", "db", "password", "key_prefix", "socket_timeout",
    "socket_connect_timeout", "schema_name", "table_name", "auto_create",
)


async def check_config(path: Path) -> None:
    import ratesync

    ratesync.load_config(str(path))
    stores = ratesync.list_stores()
    shown_stores = {k: {f: v[f] for f in STORE_INFO_KEYS if f in v} for k, v in stores.items()}
    print("list_stores():", json.dumps(shown_stores, sort_keys=True, default=str))
    limiters = ratesync.list_limiters()
    shown = {k: {f: v.get(f) for f in LIMITER_INFO_KEYS} for k, v in limiters.items()}
    print("list_limiters():", json.dumps(shown, sort_keys=True, default=str))
    extra = {k: {f: v[f] for f in v if f not in LIMITER_INFO_KEYS} for k, v in limiters.items()}
    library.append("list_limiters(), other keys: " + json.dumps(extra, sort_keys=True, default=str))
    for limiter_id in sorted(limiters):
        try:
            result = await ratesync.check_limiter(limiter_id)
            fields = ", ".join(f"{f}={getattr(result, f, '(missing)')!r}" for f in RESULT_FIELDS)
            print(f"check_limiter({limiter_id!r}) -> {type(result).__name__}({fields})")
        except Exception as e:  # noqa: BLE001 - printed, compared
            print(f"check_limiter({limiter_id!r}) -> EXCEPTION {type(e).__name__}: {e}")


def main() -> int:
    mode, file_name, result_path = sys.argv[1:4]
    path = Path(file_name).resolve()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # The example's own logs go to stdout, in order with its prints.
    sys.stderr = sys.stdout
    capture_library_logs()
    result: dict = {}
    code = 0
    try:
        if mode == "config":
            asyncio.run(check_config(path))
        elif mode == "pytest":
            code = 1 if run_pytest(path) else 0
        else:
            track_calls(str(path))
            # A file that serves its app under `__main__` is imported instead, and its
            # app exercised.
            namespace = run_source(path, "__example__" if mode == "app-file" else "__main__")
            print_values(namespace, {"__name__", "__file__", "__builtins__"})
            exercise_apps(namespace)
            if server_errors:
                result["server_error"] = ", ".join(server_errors)
                code = 3
    except BaseException as e:  # noqa: BLE001 - the example's failure is the result
        sys.setprofile(None)
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
        where = f" (example line {frames[-1].lineno})" if frames else ""
        if isinstance(e, SystemExit) and e.code in (0, None):
            code = 0
        else:
            print(f"EXCEPTION {type(e).__name__}: {e}{where}")
            result["exception"] = f"{type(e).__name__}: {e}"
            code = 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    result["library"] = "\n".join(library)
    result["called"] = called
    Path(result_path).write_text(json.dumps(result))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The examples of rate-sync's documentation, run on rate-sync 0.4.2 and on ratesync
(scripts/rate-sync-examples.sh; docs/migrating-from-rate-sync.md).

Collects every ```python and ```toml block of rate-sync's README.md, docs/**/*.md and
examples/*.md, and the files examples/*.py, then runs each runnable one twice, in fresh
subprocesses: with the Python of a venv holding rate-sync 0.4.2 and with the Python of
a venv holding ratesync. Both import ``ratesync`` (the same import name: a migrating
user changes the installed package, not the code), so the source runs unchanged, but
for the rewrites below. The report lists every block with its verdict.

Rules (each one is applied the same way to both runs)
-----------------------------------------------------

Fragments, classified before anything runs (``fragment``; the reason is reported):

- not Python: the block does not compile, even with top-level ``await`` allowed;
- undefined names: the block reads a name that it never binds (anywhere in it: import,
  assignment, ``def``, ``class``, parameter, loop, ``with``/``except`` target,
  comprehension), that is not a builtin and that is not one of the implied imports
  below. Scopes are merged, so this is lenient: a block it passes may still stop on a
  NameError, and then fails on both;
- foreign imports: the block imports a module that is neither the standard library,
  ``ratesync``, nor one of the libraries installed in both venvs (THIRD_PARTY below:
  fastapi, httpx, redis, ...), e.g. ``myapp``, ``celery``;
- a TOML block that is not a rate-sync configuration (no ``[stores]``/``[limiters]``
  tables), does not parse, or has a limiter on a store the block does not define
  (rate-sync requires the store in the same file).

Implied imports: the documents often leave out imports their other blocks show. A
block whose only undefined names are rate-sync's public names (``__all__`` of
``ratesync``, ``ratesync.contrib.fastapi``, ``ratesync.testing``: imported from there),
FastAPI's (``Depends``, ``Request``, ...), standard modules, ``pytest``, ``datetime``
(the class), ``logger`` (a ``logging.Logger``) or ``app`` (a ``FastAPI()``) runs with
those bindings prepended (shown in the report).

How a runnable block runs (scripts/compliance/example_driver.py does it):

- in a fresh temporary directory, as ``__main__``, compiled with top-level ``await``
  allowed; a block that awaits runs in ``asyncio.run`` (what ``python -m asyncio``
  does with it);
- configuration: a block that does not configure anything itself (no
  ``configure_store``, ``configure_limiter`` or ``load_config`` call) gets, as
  ``./rate-sync.toml``, the nearest complete configuration block (a TOML block with
  stores and limiters, every limiter on a store it defines) that precedes it in the same
  document, which both libraries load on import (the documents' own "create
  rate-sync.toml, then use it"). examples/*.py run in a copy of examples/, with its
  rate-sync.toml;
- servers: every ``redis://`` URL (in code and configuration) becomes $REDIS_URL and
  every ``postgres(ql)://`` URL $POSTGRES_URL; ``${REDIS_URL}``, ``${DATABASE_URL}``
  and ``${POSTGRES_URL}`` are set to them. Each run of each block gets its own Redis
  ``key_prefix`` and PostgreSQL ``table_name`` (added to every Redis/PostgreSQL store of
  its configuration and to every ``configure_store(..., strategy="redis"|"postgres")``
  call of its code), removed afterwards;
- after a block (or file) has run, the data in its top-level names is printed: plain
  values and containers, and result objects (``RateLimitResult``, ``LimiterState``,
  metrics, ...) as the fields rate-sync 0.4.2's class of that name has (read from its
  source; a drop-in replacement may add fields: not shown); other objects are not;
- a block that defines FastAPI applications and does not serve them (or serves one
  with ``uvicorn.run`` under ``if __name__ == "__main__"``: that file is run under
  another ``__name__``) has each application exercised by fastapi.testclient's
  TestClient (lifespan included): every route, in definition order, called three times
  in a row, with path and required query parameters filled in ("1" for an int
  parameter, else "acme"), the headers in APP_HEADERS, and a JSON body
  ``{"message": "hello"}`` for POST/PUT/PATCH; each response's status, rate-limit
  headers and body are printed;
- an application without routes of its own (middleware, handlers) gets three
  ``GET /``; an exception raised in the application counts as a 500;
- a block that imports pytest and defines ``test_*`` functions is a test module: it
  is run by pytest (pytest-asyncio, auto mode) and its per-test outcomes are printed;
- a configuration block alone (stores, limiters or both) is loaded with
  ``load_config`` and each of its limiters asked once, without waiting, through
  ``check_limiter``. Printed: the stores' main settings from ``list_stores()``, the
  keys of ``list_limiters()`` and the fields of the result that rate-sync 0.4.2 has (a
  drop-in replacement may add some: they are shown, not compared), except
  ``initialized`` (ratesync has no lazy initialization);
- a run lasts at most --timeout seconds (default 15), then gets SIGINT (a
  monitoring loop stops as on Ctrl-C), SIGKILL 3 s later; what it printed so far is
  compared, marked "interrupted" (not a failure in itself).

What is compared, after normalisation (NORMALISE below):

- everything the block prints or logs through its own loggers (stdout and stderr
  together, in order); an uncaught exception as ``EXCEPTION <type name>: <message>``;
  records of the libraries' own loggers (``ratesync``, ``ratesync.*``) and Python
  warnings are shown, not compared (log wording is not API);
- time-dependent values: clock times, ISO and ``asctime`` timestamps and numbers of 9
  or more integer digits (epoch seconds or milliseconds) become placeholders;
  memory addresses, UUIDs, temporary paths, run prefixes and server URLs too. Then
  the texts are compared token by token: every non-number token must be equal,
  integers equal, and two decimal numbers within 10% (or 0.05) of each other
  (measured waits and rates);
- two outputs that differ are run once more on both sides; a block whose outputs
  agree on the second run is "same", marked "agreed on the second run".

Verdicts: same, differs (both outputs shown), fails on ratesync only, fails on
rate-sync only, fails on both, fragment. A run fails when it raises or exits
non-zero, or when an application it exercised answered 500.

Deliberate differences are listed in an expectations file (--expected, TOML: block id
-> ``verdict``, ``reason``, and optionally ``allow``: the prefixes of the only output
lines that may differ). The exit status is 1 when a block differs, fails on ratesync
only or fails on both in different ways without an entry that says so, or when an
entry no longer holds.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11: rate-sync's own dependency
    import tomli as tomllib  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "example_driver.py"

# Libraries installed in both venvs (scripts/rate-sync-examples.sh); an import of any
# other non-standard module makes a block a fragment.
THIRD_PARTY = {
    "ratesync",
    "fastapi",
    "starlette",
    "httpx",
    "redis",
    "asyncpg",
    "prometheus_client",
    "pydantic",
    "uvicorn",
    "pytest",
    "pytest_asyncio",
    "anyio",
    "tomli",
}
CONFIGURES = ("configure_store", "configure_limiter", "load_config")


@dataclasses.dataclass
class Block:
    ident: str  # README.md#3, examples/metrics_alert.py
    source: str  # path relative to rate-sync's tree
    line: int
    kind: str  # python | toml | file
    text: str
    fragment: str | None = None  # reason
    config: str | None = None  # ident of the configuration block it runs with
    config_text: str | None = None
    prelude: str = ""  # implied imports
    mode: str = "block"  # block | pytest | config | file | app-file
    cwd_from: str | None = None  # directory of rate-sync's tree to copy as cwd


# --- Collecting --------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")


def result_fields(root: Path) -> dict[str, list[str]]:
    """rate-sync's dataclasses: "module.Class" and "Class" -> field names (a name
    defined in several modules maps to the union of their fields)."""
    out: dict[str, list[str]] = {}
    for path in sorted((root / "src").rglob("*.py")):
        module = ".".join(path.relative_to(root / "src").with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef) or not any(
                "dataclass" in ast.unparse(d) for d in node.decorator_list
            ):
                continue
            fields = [
                n.target.id
                for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
                and "ClassVar" not in ast.unparse(n.annotation)
            ]
            out[f"{module}.{node.name}"] = fields
            union = out.setdefault(node.name, [])
            union += [f for f in fields if f not in union]
    return out


def markdown_blocks(root: Path, rel: str) -> list[Block]:
    lines = (root / rel).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    counts = {"python": 0, "toml": 0}
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m["indent"], m["fence"], m["lang"].lower()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[start:j]]
        kind = {"python": "python", "py": "python", "toml": "toml"}.get(lang)
        if kind:
            counts[kind] += 1
            tag = "" if kind == "python" else "toml"
            blocks.append(
                Block(
                    ident=f"{rel}#{tag}{counts[kind]}",
                    source=rel,
                    line=start,
                    kind=kind,
                    text="\n".join(body) + "\n",
                )
            )
        i = j + 1
    return blocks


def collect(root: Path) -> list[Block]:
    docs = ["README.md"]
    docs += sorted(str(p.relative_to(root)) for p in (root / "docs").rglob("*.md"))
    docs += sorted(str(p.relative_to(root)) for p in (root / "examples").glob("*.md"))
    blocks: list[Block] = []
    for rel in docs:
        blocks += markdown_blocks(root, rel)
    for path in sorted((root / "examples").glob("*.py")):
        rel = str(path.relative_to(root))
        blocks.append(
            Block(ident=rel, source=rel, line=1, kind="file", text=path.read_text(), cwd_from="examples")
        )
    return blocks


# --- Classifying -------------------------------------------------------------------


def compile_block(text: str) -> ast.Module:
    return compile(text, "<example>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def undefined_names(tree: ast.AST) -> list[str]:
    bound: set[str] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    known = set(dir(builtins)) | {"__name__", "__file__"}
    return sorted(read - bound - known)


def foreign_imports(tree: ast.AST) -> list[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in THIRD_PARTY:
                found.add(top)
    return sorted(found)


def calls_any(tree: ast.AST, names: tuple[str, ...]) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in names:
                return True
    return False


def is_pytest_module(tree: ast.AST) -> bool:
    imports_pytest = any(
        isinstance(n, ast.Import) and any(a.name == "pytest" for a in n.names) for n in ast.walk(tree)
    )
    tests = any(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_")
        for n in tree.body  # type: ignore[attr-defined]
    )
    return imports_pytest and tests


def serves_under_main(tree: ast.Module) -> bool:
    for node in tree.body:
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__"
            and calls_any(ast.Module(body=node.body, type_ignores=[]), ("run",))
            and "uvicorn" in ast.unparse(node)
        ):
            return True
    return False


def toml_config(text: str) -> tuple[dict | None, str | None]:
    """(the configuration, None), or (None, why it is not a complete one)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return None, f"TOML that does not parse ({e})"
    stores, limiters = data.get("stores"), data.get("limiters")
    if not isinstance(stores, dict) and not isinstance(limiters, dict):
        return None, "TOML that is not a rate-sync configuration (no [stores] or [limiters])"
    stores = stores if isinstance(stores, dict) else {}
    limiters = limiters if isinstance(limiters, dict) else {}
    missing = sorted(
        {str(v.get("store")) for v in limiters.values() if isinstance(v, dict) and v.get("store") not in stores}
    )
    if missing:
        return None, f"configuration whose limiters use stores it does not define ({', '.join(missing)})"
    return data, None


FASTAPI_NAMES = {
    "FastAPI": "fastapi", "Depends": "fastapi", "HTTPException": "fastapi", "Request": "fastapi",
    "Response": "fastapi", "Header": "fastapi", "Query": "fastapi", "UploadFile": "fastapi",
    "JSONResponse": "fastapi.responses",
}


def implied_imports(root: Path) -> dict[str, str]:
    """The statements that bind each name the documents use without importing it:
    rate-sync's public names (``__all__`` of ``ratesync``, ``ratesync.contrib.fastapi``
    and ``ratesync.testing``), FastAPI's, standard modules, ``pytest``, ``datetime``
    (the class), ``logger`` (a logging.Logger) and ``app`` (a FastAPI())."""
    names: dict[str, str] = {}
    for module in ("ratesync", "ratesync.contrib.fastapi", "ratesync.testing"):
        init = root / "src" / module.replace(".", "/")
        init = init / "__init__.py" if init.is_dir() else init.with_suffix(".py")
        tree = ast.parse(init.read_text())
        exported: list[str] = []
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                exported = ast.literal_eval(node.value)
        if not exported:
            exported = [
                n.name
                for n in tree.body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and not n.name.startswith("_")
            ]
        for name in exported:
            names.setdefault(name, f"from {module} import {name}")
    for name, module in FASTAPI_NAMES.items():
        names[name] = f"from {module} import {name}"
    names["datetime"] = "from datetime import datetime"
    names["pytest"] = "import pytest"
    names["logger"] = 'import logging\nlogger = logging.getLogger("example")'
    names["app"] = "from fastapi import FastAPI\napp = FastAPI()"
    return names


def prelude_for(undefined: list[str], implied: dict[str, str]) -> str | None:
    if not all(n in implied or n in sys.stdlib_module_names for n in undefined):
        return None
    lines = [implied.get(n, f"import {n}") for n in undefined if n not in ("logger", "app")]
    lines += [implied[n] for n in ("logger", "app") if n in undefined]
    return "\n".join(lines) + "\n"


def classify(blocks: list[Block], root: Path) -> None:
    implied = implied_imports(root)
    last_config: dict[str, Block] = {}
    for b in blocks:
        if b.kind == "toml":
            data, why = toml_config(b.text)
            if data is None:
                b.fragment = why
                continue
            b.mode = "config"
            if data.get("limiters"):
                last_config[b.source] = b
            continue
        try:
            tree = compile_block(b.text)
        except SyntaxError as e:
            b.fragment = f"not Python ({e.msg}, line {e.lineno})"
            continue
        undefined = undefined_names(tree)
        foreign = foreign_imports(tree)
        if undefined:
            prelude = prelude_for(undefined, implied)
            if prelude is None:
                b.fragment = "undefined names: " + ", ".join(undefined)
                continue
            b.prelude = prelude
            tree = compile_block(prelude + b.text)
        if foreign:
            b.fragment = "imports modules outside the venvs: " + ", ".join(foreign)
            continue
        if b.kind == "file":
            b.mode = "app-file" if serves_under_main(tree) else "file"
            continue
        if is_pytest_module(tree):
            b.mode = "pytest"
        if not calls_any(tree, CONFIGURES) and b.source in last_config:
            cfg = last_config[b.source]
            b.config, b.config_text = cfg.ident, cfg.text


# --- Rewriting for the test servers ------------------------------------------------

REDIS_URL_RE = re.compile(r"rediss?://[^\s\"']*")
PG_URL_RE = re.compile(r"postgres(?:ql)?://[^\s\"']*")


def rewrite_urls(text: str, redis_url: str, pg_url: str) -> str:
    """Server URLs become the run's; one that holds a ``${VAR}`` (a password from the
    environment) is left as written, and the closing brace of a ``${VAR:-url}``
    default is kept."""

    def to(url: str):  # noqa: ANN202
        def sub(m: re.Match) -> str:
            found = m.group(0)
            if "${" in found:
                return found
            stripped = found.rstrip("}")
            return url + found[len(stripped) :]

        return sub

    text = REDIS_URL_RE.sub(to(redis_url), text)
    return PG_URL_RE.sub(to(pg_url), text)


def rewrite_toml(text: str, redis_url: str, pg_url: str, prefix: str) -> str:
    """URLs, plus a key_prefix / table_name of the run in every Redis/PostgreSQL store."""
    text = rewrite_urls(text, redis_url, pg_url)
    data = tomllib.loads(text)
    out = text
    for name, store in (data.get("stores") or {}).items():
        engine = str(store.get("engine", ""))
        key = {"redis": "key_prefix", "postgres": "table_name"}.get(engine)
        if key is None:
            continue
        header = re.compile(r"^\[stores\.(\"?)" + re.escape(name) + r"\1\]\s*$", re.M)
        m = header.search(out)
        if m is None:
            continue
        value = prefix if engine == "redis" else prefix.replace("-", "_")
        # Drop a key_prefix/table_name the block sets: each run gets its own.
        section_end = re.compile(r"^\[", re.M).search(out, m.end())
        end = section_end.start() if section_end else len(out)
        section = re.sub(r"^\s*" + key + r"\s*=.*$\n?", "", out[m.end() : end], flags=re.M)
        out = out[: m.end()] + f'\n{key} = "{value}"' + section + out[end:]
    return out


class _StorePrefix(ast.NodeTransformer):
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name != "configure_store":
            return node
        strategy = next((k.value for k in node.keywords if k.arg == "strategy"), None)
        if strategy is None and len(node.args) > 1:
            strategy = node.args[1]
        engine = strategy.value if isinstance(strategy, ast.Constant) else None
        key = {"redis": "key_prefix", "postgres": "table_name"}.get(engine)  # type: ignore[arg-type]
        if key is None:
            return node
        value = self.prefix if engine == "redis" else self.prefix.replace("-", "_")
        node.keywords = [k for k in node.keywords if k.arg != key]
        node.keywords.append(ast.keyword(arg=key, value=ast.Constant(value)))
        return node


def rewrite_python(text: str, redis_url: str, pg_url: str, prefix: str) -> str:
    text = rewrite_urls(text, redis_url, pg_url)
    tree = compile_block(text)
    if not calls_any(tree, ("configure_store",)):
        return text
    tree = ast.fix_missing_locations(_StorePrefix(prefix).visit(tree))
    return ast.unparse(tree) + "\n"


# --- Normalising and comparing ------------------------------------------------------

NORMALISE = [
    (re.compile(r"0x[0-9a-fA-F]{6,}"), "0x?"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d:\d\d(?:[.,]\d+)?\b"), "<time>"),
    (re.compile(r"datetime\.datetime\([^)]*\)"), "<time>"),
    (re.compile(r"(?<![\w.])\d{9,}(?:\.\d+)?(?:e[+-]?\d+)?"), "<epoch>"),
]
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def normalise(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        if old:
            text = text.replace(old, new)
    for pattern, new in NORMALISE:
        text = pattern.sub(new, text)
    return text


def close(a: str, b: str) -> bool:
    if a == b:
        return True
    if "." not in a + b and "e" not in (a + b).lower():
        return False  # integers: equal or not
    x, y = float(a), float(b)
    return abs(x - y) <= max(0.05, 0.10 * max(abs(x), abs(y)))


def same_output(a: str, b: str) -> bool:
    if NUMBER.sub("#", a) != NUMBER.sub("#", b):
        return False
    return all(close(x, y) for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)))


# --- Running -----------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    output: str  # compared part, normalised
    library: str  # library logs and warnings, not compared
    status: str  # ok | exception | exit N | interrupted
    called: list[str]

    @property
    def failed(self) -> bool:
        # An interruption is how a long-running example (a monitoring loop) stops.
        return self.status not in ("ok", "interrupted")


def run_block(block: Block, python: str, impl: str, args: argparse.Namespace, root: Path, attempt: int) -> Run:
    prefix = f"rsex-{args.run_id}-{impl}-{attempt}-{re.sub(r'[^a-z0-9]+', '-', block.ident.lower()).strip('-')}"
    prefix = prefix[:60]
    work = Path(tempfile.mkdtemp(prefix="rsex-"))
    try:
        if block.cwd_from:
            shutil.copytree(root / block.cwd_from, work, dirs_exist_ok=True)
            for cfg in work.glob("*.toml"):
                cfg.write_text(rewrite_toml(cfg.read_text(), args.redis_url, args.postgres_url, prefix))
        if block.config_text:
            (work / "rate-sync.toml").write_text(
                rewrite_toml(block.config_text, args.redis_url, args.postgres_url, prefix)
            )
        if block.kind == "toml":
            text = rewrite_toml(block.text, args.redis_url, args.postgres_url, prefix)
            name = "example.toml"
        else:
            text = rewrite_python(block.prelude + block.text, args.redis_url, args.postgres_url, prefix)
            name = Path(block.source).name if block.kind == "file" else "example.py"
        (work / name).write_text(text)
        env = {
            "RATESYNC_EXAMPLES_FIELDS": str(args.fields_file),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(work)),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "REDIS_URL": args.redis_url,
            "DATABASE_URL": args.postgres_url,
            "POSTGRES_URL": args.postgres_url,
        }
        result_file = work / ".driver-result.json"
        cmd = [python, str(DRIVER), block.mode, name, str(result_file)]
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        interrupted = False
        try:
            out, _ = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            interrupted = True
            os.killpg(proc.pid, 2)  # SIGINT
            try:
                out, _ = proc.communicate(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                out, _ = proc.communicate()
        raw = out.decode("utf-8", "replace")
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        library = result.get("library", "")
        called = result.get("called", [])
        if interrupted:
            status = "interrupted"
        elif proc.returncode == 0:
            status = "ok"
        elif result.get("exception"):
            status = "exception"
        elif result.get("server_error"):
            status = "HTTP 500"
        else:
            status = f"exit {proc.returncode}"
        # Text the driver saw as the example's (raw output holds it, in order);
        # library records went to the result file instead.
        replacements = {
            str(work): "<tmp>",
            str(work.resolve()): "<tmp>",
            prefix: "<prefix>",
            prefix.replace("-", "_"): "<prefix>",
            args.redis_url: "<redis-url>",
            args.postgres_url: "<postgres-url>",
        }
        output = normalise(raw, replacements)
        if interrupted:
            output += f"\n[interrupted after {args.timeout:g} s]\n"
        return Run(output=output, library=normalise(library, replacements), status=status, called=called)
    finally:
        cleanup(python, prefix, args)
        shutil.rmtree(work, ignore_errors=True)


def cleanup(python: str, prefix: str, args: argparse.Namespace) -> None:
    """Removes the run's Redis keys and PostgreSQL tables (and ratesync's functions)."""
    code = f"""
import asyncio
async def main():
    try:
        import redis.asyncio as r
        c = r.from_url({args.redis_url!r})
        keys = [k async for k in c.scan_iter(match="*{prefix}*", count=1000)]
        if keys:
            await c.delete(*keys)
        await c.aclose()
    except Exception:
        pass
    try:
        import asyncpg
        conn = await asyncpg.connect({args.postgres_url!r})
        table = {prefix.replace("-", "_")!r}
        for (name,) in await conn.fetch("select tablename from pg_tables where tablename like $1", table + "%"):
            await conn.execute(f'drop table if exists "{{name}}" cascade')
        for (sig,) in await conn.fetch(
            "select p.oid::regprocedure::text from pg_proc p where p.proname like $1", table + "%"):
            await conn.execute(f"drop function if exists {{sig}} cascade")
        await conn.close()
    except Exception:
        pass
asyncio.run(main())
"""
    subprocess.run([python, "-c", code], capture_output=True, timeout=30)


# --- Verdicts and the report -------------------------------------------------------


@dataclasses.dataclass
class Verdict:
    block: Block
    verdict: str
    anchor: Run | None = None
    ratesync: Run | None = None
    flaky: bool = False
    expected: dict | None = None  # its entry in the expectations file

    @property
    def unexpected(self) -> bool:
        """A difference nobody has called deliberate, or an entry that no longer holds:
        another verdict, or (with ``allow``, a list of line prefixes) a differing line
        that starts with none of them."""
        if self.expected is None:
            if self.verdict == "fails on both" and self.anchor and self.ratesync:
                return not same_output(self.anchor.output, self.ratesync.output)
            return self.verdict in ("differs", "fails on ratesync only")
        if self.expected.get("verdict") != self.verdict:
            return True
        allow = tuple(self.expected.get("allow", ()))
        if not allow or self.anchor is None or self.ratesync is None:
            return False
        return any(not line.startswith(allow) for line in differing_lines(self.anchor, self.ratesync))


def differing_lines(a: Run, r: Run) -> list[str]:
    """The lines of either output that the other does not match, line by line."""
    left, right = a.output.splitlines(), r.output.splitlines()
    out = []
    for i in range(max(len(left), len(right))):
        x = left[i] if i < len(left) else ""
        y = right[i] if i < len(right) else ""
        if not same_output(x, y):
            out += [line for line in (x, y) if line]
    return out


def judge(a: Run, r: Run) -> str:
    if a.failed and r.failed:
        return "fails on both"
    if r.failed:
        return "fails on ratesync only"
    if a.failed:
        return "fails on rate-sync only"
    return "same" if same_output(a.output, r.output) else "differs"


def evaluate(block: Block, args: argparse.Namespace, root: Path) -> Verdict:
    if block.fragment:
        return Verdict(block, "fragment")
    a = run_block(block, args.anchor_python, "a", args, root, 1)
    r = run_block(block, args.ratesync_python, "r", args, root, 1)
    verdict = judge(a, r)
    if verdict != "same":
        a2 = run_block(block, args.anchor_python, "a", args, root, 2)
        r2 = run_block(block, args.ratesync_python, "r", args, root, 2)
        if judge(a2, r2) == "same":
            return Verdict(block, "same", a2, r2, flaky=True)
    return Verdict(block, verdict, a, r)


def fenced(text: str) -> str:
    text = text.rstrip("\n")
    fence = "````" if "```" in text else "```"
    return f"{fence}text\n{text}\n{fence}\n"


def report(verdicts: list[Verdict], path: Path) -> str:
    order = ["same", "differs", "fails on ratesync only", "fails on rate-sync only", "fails on both", "fragment"]
    counts = {k: sum(v.verdict == k for v in verdicts) for k in order}
    lines = ["# rate-sync 0.4.2's documentation examples on ratesync", ""]
    lines.append("| verdict | blocks |")
    lines.append("|---|---|")
    for k in order:
        lines.append(f"| {k} | {counts[k]} |")
    lines.append(f"| total | {len(verdicts)} |")
    lines += ["", "| block | line | kind | verdict | note |", "|---|---|---|---|---|"]
    for v in verdicts:
        b = v.block
        note = b.fragment or ""
        if not b.fragment:
            parts = [b.mode if b.mode != "block" else ""]
            if b.config:
                parts.append(f"config {b.config}")
            if v.flaky:
                parts.append("agreed on the second run")
            if v.anchor and v.anchor.status != "ok":
                parts.append(f"rate-sync: {v.anchor.status}")
            if v.ratesync and v.ratesync.status != "ok":
                parts.append(f"ratesync: {v.ratesync.status}")
            if b.prelude:
                parts.append("implied imports")
            if v.verdict == "fails on both" and v.anchor and v.ratesync:
                same = same_output(v.anchor.output, v.ratesync.output)
                parts.append("the same failure" if same else "different failures")
            if v.anchor and not v.anchor.called and b.kind == "python" and b.mode == "block":
                parts.append("calls nothing of rate-sync")
            if v.expected is not None:
                parts.append(f"expected: {v.expected.get('reason', '')}")
            if v.unexpected:
                parts.append("**UNEXPECTED**")
            note = "; ".join(p for p in parts if p)
        note = note.replace("|", "\\|")
        lines.append(f"| {b.ident} | {b.line} | {b.kind} | {v.verdict} | {note} |")
    lines.append("")
    for v in verdicts:
        if v.verdict in ("same", "fragment"):
            continue
        b = v.block
        lines += [f"## {b.ident} (line {b.line}): {v.verdict}", ""]
        if b.config:
            lines += [f"Configuration: {b.config}", ""]
        if b.prelude:
            lines += ["Implied imports, run before the block:", "", fenced(b.prelude)]
        lines += ["Block:", "", fenced(b.text if b.kind != "file" else f"(the file {b.source})")]
        for label, run in (("rate-sync 0.4.2", v.anchor), ("ratesync", v.ratesync)):
            assert run is not None
            lines += [f"{label} ({run.status}):", "", fenced(run.output or "(no output)")]
            if run.library.strip():
                lines += [f"{label}, library log and warnings (not compared):", "", fenced(run.library)]
    same = [v for v in verdicts if v.verdict == "same" and v.anchor is not None]
    if same:
        lines += ["## Outputs of the blocks that run the same (rate-sync 0.4.2's)", ""]
        for v in same:
            assert v.anchor is not None
            lines += [f"{v.block.ident}:", "", fenced(v.anchor.output or "(no output)")]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, type=Path, help="rate-sync's source tree (v0.4.2)")
    p.add_argument("--anchor-python", required=True, help="python of the venv with rate-sync 0.4.2")
    p.add_argument("--ratesync-python", required=True, help="python of the venv with ratesync")
    p.add_argument("--report", required=True, type=Path)
    p.add_argument("--expected", type=Path, help="TOML: block id -> {verdict, reason}")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--only", default="", help="run only blocks whose id contains this")
    p.add_argument("--list", action="store_true", help="classify and list, run nothing")
    args = p.parse_args()
    args.run_id = uuid.uuid4().hex[:6]
    root = args.source.resolve()
    blocks = collect(root)
    classify(blocks, root)
    if args.only:
        blocks = [b for b in blocks if args.only in b.ident]
    if args.list:
        for b in blocks:
            print(f"{b.ident:55} {b.mode:8} {b.config or '':28} {b.fragment or ''}")
        return 0
    expected = tomllib.loads(args.expected.read_text()) if args.expected else {}
    args.fields_file = Path(tempfile.mkstemp(prefix="rsex-fields-", suffix=".json")[1])
    verdicts = []
    start = time.monotonic()
    try:
        args.fields_file.write_text(json.dumps(result_fields(root)))
        for b in blocks:
            v = evaluate(b, args, root)
            v.expected = expected.get(b.ident)
            verdicts.append(v)
            print(f"{v.verdict:24} {b.ident}", flush=True)
    finally:
        args.fields_file.unlink()
    text = report(verdicts, args.report)
    summary = text.split("\n\n")[1]
    print(f"\n{summary}\n\nreport: {args.report} ({time.monotonic() - start:.0f} s)")
    stale = [] if args.only else sorted(set(expected) - {b.ident for b in blocks})
    for ident in stale:
        print(f"UNEXPECTED: {ident}: in the expectations file, not in rate-sync's documentation")
    unexpected = [v for v in verdicts if v.unexpected]
    for v in unexpected:
        if v.expected and v.expected.get("verdict") != v.verdict:
            why = f" (expected: {v.expected['verdict']})"
        elif v.anchor and v.ratesync:
            lines = differing_lines(v.anchor, v.ratesync)
            allow = tuple(v.expected.get("allow", ())) if v.expected else ()
            first = next((x for x in lines if not allow or not x.startswith(allow)), "")
            why = f" ({first[:70]}...)" if first else ""
        else:
            why = ""
        print(f"UNEXPECTED: {v.block.ident}: {v.verdict}{why}")
    return 1 if unexpected or stale else 0


if __name__ == "__main__":
    sys.exit(main())

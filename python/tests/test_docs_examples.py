"""Examples never rot: every code block of README.md and docs/**/*.md runs here.

The pages are read when the tests are collected, so a page added later is covered
without a change here. One test per block, named ``page:line`` (the line of its
opening fence):

- ```` ```python ````: run in a fresh interpreter (this venv's python), in an empty
  directory of its own, on the memory engine. A block may ``await`` at top level, as
  in ``python -m asyncio``. Its first line may be ``# needs: redis`` (or
  ``postgres``, ``nats``): then ``REDIS_URL`` (``POSTGRES_URL``, ``NATS_URL``) points
  at a test server started for these tests, fresh for the block where that is cheap
  (Redis is flushed, PostgreSQL gets a new database; NATS is shared: use names of the
  block's own). Tracebacks name the page and its line.
- ```` ```toml ````: must load with the configuration loader (``ratesync.load_config``,
  in a fresh interpreter, so nothing reaches this process's registry); the loader's
  ``file:line`` in an error is the line of the page.
- ```` ```rust ````: compiled and run by rustdoc (``cargo test --doc``), through the
  doc-test list of ``crates/ratesync/src/documentation.rs``; here, only a
  check that every page with Rust blocks is listed there.

A Python or TOML block whose first line is ``# (not run: <reason>)`` is skipped with
that reason, listed by ``pytest -rs``, never counted as passed (in Rust:
```` ```rust,ignore ```` or ```` ```rust,no_run ````, which rustdoc understands). Other
languages (``sh``, ``text``, ...) are not run."""

from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import re
import socket
import subprocess
import sys
import urllib.parse

import pytest

# The PostgreSQL and NATS servers of those modules' own tests (module-scoped
# fixtures: started here only when a block needs one). Redis's is in conftest.py.
from test_nats import nats_url  # noqa: F401
from test_postgres import _bin_dir as _pg_bin_dir
from test_postgres import pg_url  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC_TESTS = ROOT / "crates/ratesync/src/documentation.rs"

# `# (not run: reason)` on a block's first line.
_NOT_RUN = re.compile(r"^\s*#\s*\(not run:\s*(?P<reason>.*?)\)\s*$")
_NEEDS = re.compile(r"^\s*#\s*needs:\s*(?P<services>[\w ,]+?)\s*$")
_SERVICES = {"redis": "REDIS_URL", "postgres": "POSTGRES_URL", "nats": "NATS_URL"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


def pages() -> list[pathlib.Path]:
    """README.md and every page under docs/, as they are now."""
    found = [ROOT / "README.md"] if (ROOT / "README.md").is_file() else []
    return found + sorted((ROOT / "docs").rglob("*.md"))


@dataclasses.dataclass(frozen=True)
class Block:
    page: pathlib.Path
    line: int  # of the opening fence, 1-based
    info: str  # the fence's info string: "rust,no_run", "python", ""
    code: str

    @property
    def language(self) -> str:
        return re.split(r"[\s,{]", self.info.strip(), maxsplit=1)[0].lower()

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0] if self.code.strip() else ""

    def not_run(self) -> str | None:
        match = _NOT_RUN.match(self.first_line)
        return match.group("reason") if match else None


def blocks(page: pathlib.Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (CommonMark fences, indented ones in
    list items included)."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening.group("indent")), opening.group("fence")
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = re.match(r"^[ \t]*(`{3,}|~{3,})[ \t]*$", lines[j])
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                break
            # Content is indented as its fence (inside a list item): strip that.
            line = lines[j]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            j += 1
        found.append(Block(page, i + 1, opening.group("info").strip(), "\n".join(body) + "\n"))
        i = j + 1
    return found


def _all_blocks(*languages: str) -> list[Block]:
    return [b for page in pages() for b in blocks(page) if b.language in languages]


def _params(found: list[Block]) -> list[object]:
    return [pytest.param(b, id=b.id) for b in found]


# --- Python ---------------------------------------------------------------------

# Runs the block as a script, allowing a top-level `await` (as `python -m asyncio`).
_RUNNER = """
import ast, asyncio, inspect, sys
page, first_line, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
source = "\\n" * first_line + open(path, encoding="utf-8").read()
code = compile(source, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__", "__file__": path}
if code.co_flags & inspect.CO_COROUTINE:
    asyncio.run(eval(code, namespace))
else:
    exec(code, namespace)
"""


def _needs(block: Block) -> list[str]:
    match = _NEEDS.match(block.first_line)
    if match is None:
        return []
    services = [s for s in re.split(r"[\s,]+", match.group("services")) if s]
    unknown = [s for s in services if s not in _SERVICES]
    if unknown:
        pytest.fail(f"{block.id}: `# needs:` names {unknown}; known: {sorted(_SERVICES)}")
    return services


def _flush_redis(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        assert conn.recv(64).startswith(b"+OK"), "FLUSHALL failed"


_databases = itertools.count()


def _fresh_database(url: str) -> str:
    """A new database on the test server, so the block finds no table of another."""
    parts = urllib.parse.urlsplit(url)
    name = f"docs_{next(_databases)}"
    subprocess.run(
        [str(_pg_bin_dir() / "psql"), "-h", parts.hostname, "-p", str(parts.port),
         "-U", "postgres", "-d", "postgres", "-q", "-c", f"CREATE DATABASE {name}"],
        check=True,
        capture_output=True,
    )
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def _service_env(block: Block, request: pytest.FixtureRequest) -> dict[str, str]:
    env: dict[str, str] = {}
    for service in _needs(block):
        if service == "redis":
            url = request.getfixturevalue("redis_url")
            _flush_redis(url)
        elif service == "postgres":
            url = _fresh_database(request.getfixturevalue("pg_url"))
        else:
            url = request.getfixturevalue("nats_url")
        env[_SERVICES[service]] = url
    return env


def _clean_env() -> dict[str, str]:
    """This process's environment without what would change a block's configuration."""
    env = dict(os.environ)
    for name in ("RATE_SYNC_CONFIG", *_SERVICES.values()):
        env.pop(name, None)
    return env


def _run(args: list[str], cwd: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"did not finish within {timeout.timeout} s")


def _failure(block: Block, result: subprocess.CompletedProcess[str]) -> str:
    output = (result.stdout + result.stderr).strip().splitlines()
    tail = "\n".join(output[-25:])
    return f"{block.id}: the example fails (exit {result.returncode}):\n{tail}"


def _check(block: Block, result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        pytest.fail(_failure(block, result), pytrace=False)


@pytest.mark.parametrize("block", _params(_all_blocks("python", "py")))
def test_python_example(block: Block, tmp_path: pathlib.Path, request: pytest.FixtureRequest):
    reason = block.not_run()
    if reason is not None:
        pytest.skip(f"{block.id}: not run: {reason}")
    env = _clean_env()
    env.update(_service_env(block, request))
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    page = str(block.page.relative_to(ROOT))
    result = _run([sys.executable, "-c", _RUNNER, page, str(block.line), str(script)], tmp_path, env)
    _check(block, result)


# --- TOML -------------------------------------------------------------------------

_LOAD = "import sys, ratesync; ratesync.load_config(sys.argv[1])"


@pytest.mark.parametrize("block", _params(_all_blocks("toml")))
def test_toml_example_loads(block: Block, tmp_path: pathlib.Path):
    reason = block.not_run()
    if reason is not None:
        pytest.skip(f"{block.id}: not run: {reason}")
    # Named after the page, and its lines where they are on the page, so that the
    # loader's `file:line` says where.
    config = tmp_path / f"{block.page.name}.toml"
    config.write_text("\n" * block.line + block.code, encoding="utf-8")
    result = _run([sys.executable, "-c", _LOAD, str(config)], tmp_path, _clean_env())
    _check(block, result)


# --- Rust ---------------------------------------------------------------------------


def _doc_tested_pages() -> set[pathlib.Path]:
    text = DOC_TESTS.read_text(encoding="utf-8")
    included = re.findall(r'include_str!\(\s*"([^"]+\.md)"\s*\)', text)
    return {(DOC_TESTS.parent / path).resolve() for path in included}


def test_every_page_with_rust_examples_is_doc_tested():
    with_rust = {p.resolve() for p in pages() if any(b.language == "rust" for b in blocks(p))}
    missing = sorted(str(p.relative_to(ROOT)) for p in with_rust - _doc_tested_pages())
    assert not missing, (
        f"pages with ```rust blocks that rustdoc does not run: {missing}; add each to the "
        "doc-test list in crates/ratesync/src/documentation.rs"
    )


def test_doc_tested_pages_have_no_untagged_blocks():
    # rustdoc takes a fence without a language for Rust: it would fail to compile.
    untagged = [
        b.id for p in sorted(_doc_tested_pages()) if p.is_file() for b in blocks(p) if not b.info
    ]
    assert not untagged, (
        f"code blocks without a language in doc-tested pages (rustdoc compiles them as "
        f"Rust; tag them, e.g. ```text): {untagged}"
    )


# --- docs/observability/: alerting rules and dashboard ----------------------------

OBSERVABILITY = ROOT / "docs/observability"


def _promtool() -> str:
    """The promtool binary (Debian package `prometheus`, which scripts/test.sh
    installs); skips the test without it, loudly, and fails it under CI=true."""
    import shutil
    import warnings

    found = shutil.which("promtool")
    if found is None:
        message = "promtool not installed: the alerting rules are not tested (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: a missing tool is a failure: {message}")
        warnings.warn(message)
        pytest.skip(message)
    return found


def _metrics_in_source() -> set[str]:
    """Every series name the core reports (`counter!("ratesync_...")` and the like),
    with a histogram's `_bucket`, `_sum` and `_count`."""
    names: set[str] = set()
    macro = re.compile(r'\b(counter|gauge|histogram)!\(\s*"(ratesync_\w+)"')
    for source in (ROOT / "crates/ratesync/src").rglob("*.rs"):
        for kind, name in macro.findall(source.read_text(encoding="utf-8")):
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def _dashboard_queries() -> list[str]:
    import json

    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_alerting_rules_pass_their_promtool_tests():
    promtool = _promtool()
    result = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        cwd=OBSERVABILITY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"promtool test rules failed:\n{result.stdout}{result.stderr}", pytrace=False)


def test_the_dashboard_queries_are_promql(tmp_path: pathlib.Path):
    # promtool parses rule files: each query as a recording rule, Grafana's
    # variables replaced by what they stand for.
    promtool = _promtool()
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for index, expr in enumerate(_dashboard_queries()):
        expr = expr.replace("$__rate_interval", "5m").replace("$limiter", ".*")
        expr = expr.replace("$store", ".*")
        rules += [f"      - record: dashboard:query_{index}", f"        expr: '{expr}'"]
    (tmp_path / "queries.yml").write_text("\n".join(rules) + "\n", encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", "queries.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"a dashboard query does not parse:\n{result.stdout}{result.stderr}", pytrace=False)


def test_the_dashboard_and_the_alerts_name_only_real_metrics():
    known = _metrics_in_source()
    assert "ratesync_shadow_denied_total" in known, "the source scan finds the metrics"
    alerts = (OBSERVABILITY / "alerts.yml").read_text(encoding="utf-8")
    used = {
        "alerts.yml": set(re.findall(r"\bratesync_\w+", " ".join(
            line for line in alerts.splitlines() if not line.lstrip().startswith("#")
        ))),
        "grafana-dashboard.json": set(re.findall(r"\bratesync_\w+", " ".join(_dashboard_queries()))),
    }
    for name, metrics in used.items():
        assert metrics, f"{name} names no metric"
        unknown = sorted(metrics - known)
        assert not unknown, f"{name} names metrics ratesync does not report: {unknown}"


def test_the_dashboard_shows_every_metric():
    shown = set(re.findall(r"\bratesync_\w+", " ".join(_dashboard_queries())))
    shown = {re.sub(r"_(bucket|sum|count)$", "", m) for m in shown}
    reported = {m for m in _metrics_in_source() if not re.search(r"_(bucket|sum|count)$", m)}
    missing = sorted(reported - shown)
    assert not missing, f"metrics without a panel in grafana-dashboard.json: {missing}"

"""Every relative link of the documentation leads somewhere: README.md,
CONTRIBUTING.md, CHANGELOG.md and docs/**/*.md (those that exist when the tests are
collected). A link to a file must name one that exists (a folder will do); its
``#anchor``, and a bare ``#anchor``, must be the GitHub slug of a heading of that page
(or an explicit ``<a id=...>``/``<a name=...>``). Links inside code are not links;
URLs with a scheme (``https:``, ``mailto:``) are not checked."""

from __future__ import annotations

import os
import pathlib
import re
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# [text](target "title"), ![alt](target); target without spaces, or in <...>.
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def pages() -> list[pathlib.Path]:
    top = [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md")]
    return [p for p in top if p.is_file()] + sorted((ROOT / "docs").rglob("*.md"))


def _prose_lines(page: pathlib.Path) -> list[tuple[int, str]]:
    """The page's lines outside fenced code blocks, with their numbers, inline code
    spans blanked."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        marker = _FENCE.match(line)
        if fence is None and marker:
            fence = marker.group(1)
            continue
        if fence is not None:
            if marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                fence = None
            continue
        out.append((number, re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group(0)), line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup dropped, lower case, every
    character but letters, digits, spaces, `-` and `_` removed, spaces to `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines_raw(page):
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(_HTML_ANCHOR.findall(line))
    return found


def _prose_lines_raw(page: pathlib.Path) -> list[tuple[int, str]]:
    """As ``_prose_lines``, with inline code kept (headings keep their code text)."""
    raw = page.read_text(encoding="utf-8").splitlines()
    return [(n, raw[n - 1]) for n, _ in _prose_lines(page)]


def links(page: pathlib.Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for number, line in _prose_lines(page):
        for match in list(_INLINE.finditer(line)) + list(_REFERENCE.finditer(line)):
            target = match.group(1).strip("<>")
            found.append((number, target))
    return found


def _broken(page: pathlib.Path, target: str) -> str | None:
    """Why ``target``, linked from ``page``, leads nowhere; ``None`` if it is fine."""
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or target.startswith("//"):
        return None  # an absolute URL: not checked here
    path, anchor = urllib.parse.unquote(parts.path), urllib.parse.unquote(parts.fragment)
    if path:
        resolved = (ROOT / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
        if not resolved.exists():
            return f"no such file: {os.path.relpath(resolved, ROOT)}"
    else:
        resolved = page
    if anchor and resolved.is_file() and resolved.suffix == ".md":
        if anchor not in anchors(resolved):
            return f"no heading with the anchor #{anchor} in {os.path.relpath(resolved, ROOT)}"
    return None


@pytest.mark.parametrize("page", [pytest.param(p, id=str(p.relative_to(ROOT))) for p in pages()])
def test_relative_links_resolve(page: pathlib.Path):
    problems = []
    for number, target in links(page):
        reason = _broken(page, target)
        if reason is not None:
            problems.append(f"{page.relative_to(ROOT)}:{number}: ({target}) {reason}")
    if problems:
        pytest.fail("broken links:\n" + "\n".join(problems), pytrace=False)


def test_the_slugs_are_githubs():
    assert slug("Failure policy") == "failure-policy"
    assert slug("HTTP: tower layer and axum extractor") == "http-tower-layer-and-axum-extractor"
    assert slug("Configuration (`rate-sync.toml`)") == "configuration-rate-synctoml"
    assert slug("The `[fastapi]` table") == "the-fastapi-table"
    assert slug("snake_case stays") == "snake_case-stays"

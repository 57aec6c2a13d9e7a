"""README.md, SECURITY.md and docs/: every relative link (and #anchor) resolves, the README keeps
its order and its budget."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "SECURITY.md", *(ROOT / "docs").glob("*.md")])
README_WORD_BUDGET = 1500

_FENCE = re.compile(r"^(```|~~~)")
_INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading anchors on its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page offers: its headings (duplicates numbered as GitHub does) and <a id>."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(text):
        found.update(_HTML_ANCHOR.findall(line))
        match = _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[str]:
    """Link targets outside code blocks: inline links and reference definitions."""
    targets = []
    for line in prose(text):
        targets += _INLINE_LINK.findall(line)
        match = _REFERENCE.match(line)
        if match:
            targets.append(match.group(1))
    return targets


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` whose file, or whose #anchor in a Markdown file, is missing."""
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # absolute URL (https:, mailto:): not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## `POST /api/events` (function key)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Two words\n\n"
        "[ok](other.md) [ok](other.md#post-apievents-function-key) [ok](#two-words) [web](https://example.com)\n"
        "[gone](missing.md) [no anchor](other.md#nowhere) [no local anchor](#three-words)\n"
        "```\n[in code](ignored.md)\n```\n"
        "[ref]: gone-too.md\n"
    )
    assert broken_links(page) == ["missing.md", "other.md#nowhere", "#three-words", "gone-too.md"]


def test_duplicate_headings_get_numbered_anchors():
    assert anchors("# A\n## Notes\n## Notes\n") == {"a", "notes", "notes-1"}


def test_every_page_in_docs_is_linked_from_the_readme_or_another_page():
    linked = {
        (page.parent / target.partition("#")[0]).resolve()
        for page in PAGES
        for target in links(page.read_text(encoding="utf-8"))
        if target.partition("#")[0] and not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)
    }
    orphans = [p.name for p in (ROOT / "docs").iterdir() if p.is_file() and p.resolve() not in linked]
    assert orphans == []


def test_the_readme_is_within_its_budget_and_in_order():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.split()) <= README_WORD_BUDGET
    headings = [m.group(2) for m in map(_HEADING.match, prose(text)) if m]
    order = ["How it works", "Two commands", "Try it"]
    assert headings[1:4] == order, headings

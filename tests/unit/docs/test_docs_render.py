"""README.md and docs/ as a Markdown renderer reads them: no fence that swallows the sections after
it, no link to a file or heading that is not there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[3]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def tokens(page: Path) -> list:
    return MarkdownIt("commonmark").enable("table").parse(page.read_text())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_code_block_ends_where_it_should(page: Path) -> None:
    for token in tokens(page):
        if token.type == "fence":
            assert token.map is not None
            swallowed = [line for line in token.content.splitlines() if line.startswith(("## ", "### ", "| "))]
            assert not swallowed, f"{page.name}:{token.map[0] + 1}: a code block holds {swallowed[:2]}"
            closing = page.read_text().splitlines()[token.map[1] - 1].strip()
            assert closing.startswith(("```", "~~~")), f"{page.name}:{token.map[0] + 1}: a code block never closes"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_reaches_a_file_or_heading(page: Path) -> None:
    parsed = tokens(page)
    anchors = {slug(parsed[i + 1].content) for i, t in enumerate(parsed) if t.type == "heading_open"}
    for token in parsed:
        for child in token.children or []:
            if child.type not in ("link_open", "image"):
                continue
            target = str(child.attrs.get("href") or child.attrs.get("src") or "")
            if re.match(r"^[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            if path:
                assert (page.parent / path).exists(), f"{page.name}: link to missing {path}"
            elif anchor:
                assert anchor in anchors, f"{page.name}: link to missing heading #{anchor}"


def test_benchmark_tables_are_as_make_docs_writes_them() -> None:
    from tools.docs_tables import main

    assert main(["--check"]) == 0, "a benchmark table was edited by hand or bench/results/ changed: run make docs"

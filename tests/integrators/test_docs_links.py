"""The documentation a newcomer follows holds together: every citation in the code and every
link in the READMEs and docs/ points at something that exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures.integrators import ROOT

SOURCES = [
    p
    for pattern in ("shared/**/*.py", "services/**/*.py", "scripts/*.py", "bench/*.py")
    for p in ROOT.glob(pattern)
    if ".venv" not in p.parts and "node_modules" not in p.parts
]
MARKDOWN = [
    p
    for p in [
        *ROOT.glob("*.md"),
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("*/*/README.md"),
        *ROOT.glob("*/README.md"),
        *ROOT.glob("services/*/*/README.md"),
    ]
    if ".venv" not in p.parts and "node_modules" not in p.parts
]
DECISION_CITATION = re.compile(r"docs/decisions\.md, decision (\d+)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {
        _anchor(line.lstrip("#"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }


def test_no_citation_of_documents_the_repository_does_not_have() -> None:
    for path in [*SOURCES, *MARKDOWN]:
        text = path.read_text(encoding="utf-8")
        for gone in ("DESIGN.md", "PROTOCOL.md"):
            assert gone not in text, f"{path.relative_to(ROOT)} cites {gone}"


def test_every_cited_decision_exists() -> None:
    decisions = (ROOT / "docs" / "decisions.md").read_text(encoding="utf-8")
    numbers = {int(n) for n in re.findall(r"^## (\d+)\. ", decisions, flags=re.MULTILINE)}
    assert numbers == set(range(1, len(numbers) + 1))  # numbered once, no gaps
    cited = set()
    for path in SOURCES:
        for number in DECISION_CITATION.findall(path.read_text(encoding="utf-8")):
            assert int(number) in numbers, (path, number)
            cited.add(int(number))
    assert {1, 2, 3} <= cited


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.relative_to(ROOT)} links to missing {target}"
        # Anchors are checked into docs/ (its pages are linked from everywhere); a service
        # README's own sections are its owners' to keep.
        if anchor and linked.suffix == ".md" and linked.parent == ROOT / "docs":
            assert anchor in _anchors(linked), f"{path.relative_to(ROOT)}: no {target}"

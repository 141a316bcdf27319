"""The project's own docs: every relative link resolves, and nothing points at files users do not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = [p for folder in ("fwi", "tests", "benchmarks", "notebooks", "configs", "docs")
                 for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".ipynb", ".yaml")]
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "tests" / "data" / "README.md"]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def test_no_reference_to_design_notes_outside_the_project():
    this = Path(__file__).resolve()
    offenders = [str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *PROJECT_FILES] if p.resolve() != this
                 and re.search(r"DESIGN\.md|\.\./shared/", p.read_text(encoding="utf-8"))]
    assert offenders == []


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    links = [m[1] for m in LINK.finditer(doc.read_text(encoding="utf-8")) if "://" not in m[1]]
    missing = [link for link in links if not (doc.parent / link).exists()]
    assert missing == []


def test_docs_exist_with_their_subjects():
    physics = (ROOT / "docs" / "physics.md").read_text()
    data = (ROOT / "docs" / "data.md").read_text()
    kaggle = (ROOT / "docs" / "kaggle.md").read_text()
    assert "nbc = 120" in physics and "15 Hz" in physics and "x = 34, not 34.5" in physics
    assert "seis2_1_0.npy" in data and "4,607,260 rows" in data and "oid_ypos,x_1,x_3" in data
    assert "pip install --no-index --find-links" in kaggle and "python -m fwi.export" in kaggle

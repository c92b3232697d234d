"""Every document the code, README, recipes and scripts cite is in the repository: a citation names a
`docs/*.md` file that exists, and each `§N` it names is a heading there; no citation points at a
document outside the repo (the old `DESIGN §4` / `SOURCES.md` style).

Run: pytest tests/test_docs_cited.py
"""

from __future__ import annotations

import re

from tests.conftest import ROOT

WHERE = ["imp_data", "pipelines", "tests", "bench", "manifests", "scripts", "deploy"]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh"}
CITED = re.compile(r"docs/(\w+)\.md(?: §\s?(\d+(?:\.\d+)*))?")
BARE = re.compile(r"\b(?:DESIGN|SOURCES|TRAINING|EVAL)(?:\.md\b| ?§)")


def texts():
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for top in WHERE:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in SUFFIXES and "__pycache__" not in p.parts]
    for path in files:
        if path.name != "test_docs_cited.py":
            yield path, path.read_text(encoding="utf-8", errors="replace")


def test_every_cited_document_and_section_exists():
    missing = []
    for path, text in texts():
        for doc, section in CITED.findall(text):
            target = ROOT / "docs" / f"{doc}.md"
            if not target.is_file():
                missing.append(f"{path.relative_to(ROOT)}: docs/{doc}.md")
            elif section and not re.search(rf"^#+ {re.escape(section)}[.\s]", target.read_text(), re.M):
                missing.append(f"{path.relative_to(ROOT)}: docs/{doc}.md §{section}")
    assert not missing, sorted(set(missing))


def test_no_citation_points_outside_the_repository():
    bare = [f"{path.relative_to(ROOT)}: {m.group(0)}" for path, text in texts() for m in BARE.finditer(text)]
    assert not bare, bare[:20]

"""docs/guarantees.md names only tests that exist.

A cell names a test as ``path/to/test_file.py::test_name``; ``…/test_file.py`` stands for the
one test file of that name, and ``…::test_name`` or ``::test_name`` for a test of the file
named last before it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "guarantees.md").read_text()
REF = re.compile(r"`([\w./…-]+\.py)(?:::(\w+))?`|`…?::(\w+)`")


def _resolve(name: str) -> Path | None:
    if not name.startswith("…"):
        path = ROOT / name
        return path if path.is_file() else None
    hits = [
        p for p in ROOT.glob(f"*/**/tests/{name.rsplit('/', 1)[-1]}") if ".venv" not in p.parts
    ]
    return hits[0] if len(hits) == 1 else None


def test_every_named_test_exists() -> None:
    current: Path | None = None
    missing: list[str] = []
    named = 0
    for m in REF.finditer(DOC):
        file, test, test_of_current = m.groups()
        if file is not None:
            current = _resolve(file)
            if current is None:
                missing.append(file)
                continue
        test = test or test_of_current
        if test is None:
            continue
        named += 1
        if current is None or not re.search(rf"^(async )?def {test}\(", current.read_text(), re.M):
            missing.append(f"{current}::{test}")
    assert missing == []
    assert named >= 40  # the page lists tests, not only files


def test_the_page_is_linked_from_the_index() -> None:
    assert "(guarantees.md)" in (ROOT / "docs" / "index.md").read_text()

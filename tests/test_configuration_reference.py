"""docs/configuration.md lists every setting of every first-party plugin."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from aperion_bus import installed_plugins
from aperion_bus._plugins import PLUGIN_GROUP, _entry_points, _load

DOC = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
FIRST_PARTY = ["validate", "redact", "audit", "dlq", "backpressure", "metrics", "otel",
               "structlog", "redis"]


def section(name: str) -> str:
    m = re.search(rf"^### `\[plugins\.{name}\]`.*?(?=^### |^## |\Z)", DOC, re.S | re.M)
    assert m, f"no section for [plugins.{name}] in docs/configuration.md"
    return m.group(0)


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_every_keyword_of_the_plugin_is_documented(name: str) -> None:
    if name not in {p.name for p in installed_plugins()}:
        pytest.skip(f"{name} is not installed in this environment")
    target = _load(_entry_points(PLUGIN_GROUP)[name][0])
    params = [
        p.name for p in inspect.signature(target).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    text = section(name)
    missing = [p for p in params if f"`{p}`" not in text]
    assert missing == [], f"[plugins.{name}] settings missing from docs/configuration.md: {missing}"

"""The public API of aperion_event_bus 2.0 against the snapshot of 1.2.1's.

``api_121.json`` is made from the 1.2.1 wheel by ``tools/api_snapshot_121.py`` (facts only).
Every module, name, signature (parameter names, kinds, positions, defaults; annotations
ignored; extra parameters allowed when optional), coroutine function, class member, enum
member, constant and default-instance attribute type is compared; the test fails listing
every difference.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from importlib.metadata import requires
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
TOOL = HERE.parents[2] / "tools" / "api_snapshot_121.py"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_snapshot_121", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_snapshot_is_of_121() -> None:
    snap = json.loads((HERE / "api_121.json").read_text())
    assert snap["version"] == "1.2.1"
    assert set(snap["modules"]) == {
        "aperion_event_bus", "aperion_event_bus.bus", "aperion_event_bus.events",
        "aperion_event_bus.correlation", "aperion_event_bus.audit",
        "aperion_event_bus.validation", "aperion_event_bus.metrics",
        "aperion_event_bus.telemetry", "aperion_event_bus.dlq",
    }  # fmt: skip


def test_facade_matches_121_public_api() -> None:
    tool = load_tool()
    snap = json.loads((HERE / "api_121.json").read_text())
    differences = tool.compare(snap)
    assert not differences, "\n".join(
        [f"{len(differences)} difference(s) from 1.2.1's public API:", *differences]
    )


def test_compare_reports_differences() -> None:
    """The comparison itself: a removed parameter, a changed default, a new required
    parameter, a moved positional parameter and a coroutine turned plain are all reported."""
    tool = load_tool()
    expected: list[dict[str, Any]] = [
        {"name": "a", "kind": "POSITIONAL_OR_KEYWORD"},
        {"name": "b", "kind": "POSITIONAL_OR_KEYWORD", "default": {"value": 1}},
    ]
    assert tool.compare_params("f", expected, expected) == []
    extra_optional = [*expected, {"name": "c", "kind": "KEYWORD_ONLY", "default": {"value": 0}}]
    assert tool.compare_params("f", expected, extra_optional) == []
    assert tool.compare_params("f", expected, expected[:1]) == ["f: missing parameter 'b'"]
    changed = [expected[0], {**expected[1], "default": {"value": 2}}]
    assert "default" in tool.compare_params("f", expected, changed)[0]
    extra_required = [*expected, {"name": "c", "kind": "KEYWORD_ONLY"}]
    assert tool.compare_params("f", expected, extra_required) == ["f: extra required parameter 'c'"]
    swapped = [expected[1], expected[0]]
    assert len(tool.compare_params("f", expected, swapped)) == 2


def test_extras_install_what_121s_did() -> None:
    """Each 1.2.1 extra (its METADATA, in the snapshot) installs at least the distributions it
    installed then (``[otel]``: opentelemetry-api and opentelemetry-sdk)."""
    tool = load_tool()
    snap = json.loads((HERE / "api_121.json").read_text())
    ours: dict[str, set[str]] = {}
    for req in requires("aperion-event-bus") or []:
        spec, _, marker = req.partition(";")
        for name in snap["extras"]:
            if f'extra == "{name}"' in marker.replace("'", '"'):
                ours.setdefault(name, set()).add(tool.requirement_name(spec))
    missing = {
        extra: sorted({tool.requirement_name(r) for r in reqs} - ours.get(extra, set()))
        for extra, reqs in snap["extras"].items()
    }
    assert not {k: v for k, v in missing.items() if v}, missing
    assert "opentelemetry-sdk" in ours["otel"]

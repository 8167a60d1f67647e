"""``record_handlers = true``: one ``audit.handler`` record per handler call."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aperion_bus import CorrelationContext, Event, EventBus, hookimpl
from aperion_bus_audit import HANDLER_RECORD_TYPE, AuditPlugin, get_records


def _handler_records(path: Path) -> list[dict[str, Any]]:
    return list(reversed(get_records(path, event_type=HANDLER_RECORD_TYPE, limit=None)))


def test_off_by_default_and_then_the_plugin_does_not_see_handler_calls(tmp_path: Path) -> None:
    plugin = AuditPlugin(path=tmp_path / "events.jsonl")
    with EventBus(plugins=[plugin]) as bus:
        bus.subscribe(lambda e: None, "user.*")
        bus.emit("user.login", {}, wait_for_handlers=True)
        impls = bus.plugin_manager.hook.on_handler.get_hookimpls()
    assert all(i.plugin is not plugin for i in impls)  # no per-call cost at all
    assert [r["event_type"] for r in get_records(plugin.path)] == ["user.login"]


def test_each_handler_call_is_recorded_with_its_outcome(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    release = threading.Event()
    with EventBus(plugins=[AuditPlugin(path=path, record_handlers=True)],
                  handler_timeout=0.05) as bus:

        def ok(event: Event) -> None:
            time.sleep(0.01)

        def broken(event: Event) -> None:
            raise ValueError("no stock")

        def slow(event: Event) -> None:
            release.wait(2)

        bus.subscribe(ok, "order.*", priority=10)
        bus.subscribe(broken, "order.*", priority=5)
        bus.subscribe(slow, "report.*")
        with CorrelationContext("req-7"):
            order = bus.emit("order.created", {"n": 1}, wait_for_handlers=True)
            report = bus.emit("report.render", {}, wait_for_handlers=True)
        release.set()
    records = _handler_records(path)
    by_handler = {r["payload"]["handler"].rsplit(".", 1)[-1]: r for r in records
                  if r["payload"]["event_type"] != "system.handler_error"}
    assert set(by_handler) == {"ok", "broken", "slow"}
    good, bad, late = by_handler["ok"], by_handler["broken"], by_handler["slow"]
    assert good["payload"]["outcome"] == "ok" and good["payload"]["error"] is None
    assert 0.01 <= good["payload"]["duration"] < 5
    assert bad["payload"] | {"started": 0, "duration": 0} == {
        "handler": bad["payload"]["handler"],
        "subscription_id": bad["payload"]["subscription_id"],
        "event_id": order,
        "event_type": "order.created",
        "started": 0,
        "duration": 0,
        "outcome": "error",
        "reason": "handler_error",
        "error": "ValueError: no stock",
    }
    assert late["payload"]["outcome"] == "timeout"
    assert late["payload"]["reason"] == "handler_timeout"
    assert late["payload"]["event_id"] == report
    assert late["payload"]["error"].startswith("TimeoutError: ")
    for r in (good, bad, late):
        # in the request's correlation, caused by the handled event, written by the plugin
        assert r["correlation_id"] == "req-7" and r["source"] == "audit"
        assert r["causation_id"] == r["payload"]["event_id"]
        assert r["payload"]["started"] <= r["timestamp"]
    assert good["payload"]["started"] <= bad["payload"]["started"]  # priority order


def test_the_error_text_goes_through_the_scrubber(tmp_path: Path) -> None:
    class Scrubber:
        @hookimpl
        def on_scrub(self, value: Any) -> Any:
            return value.replace("alice@example.com", "[EMAIL]") if isinstance(value, str) else None

    path = tmp_path / "events.jsonl"
    with EventBus(plugins=[Scrubber(), AuditPlugin(path=path, record_handlers=True)]) as bus:

        def fail(event: Event) -> None:
            raise RuntimeError("no account alice@example.com")

        bus.subscribe(fail, "user.*")
        bus.emit("user.login", {}, wait_for_handlers=True)
    errors = [r["payload"]["error"] for r in _handler_records(path)]
    assert "RuntimeError: no account [EMAIL]" in errors
    assert not any("alice@" in str(r) for r in _handler_records(path))


def test_the_setting_comes_from_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "aperion-bus.toml"
    log = tmp_path / "events.jsonl"
    cfg.write_text(f'[plugins.audit]\npath = "{log.as_posix()}"\nrecord_handlers = true\n')
    with EventBus.from_config(cfg) as bus:
        bus.subscribe(lambda e: None, "user.*")
        bus.emit("user.login", {}, wait_for_handlers=True)
    assert [r["payload"]["outcome"] for r in _handler_records(log)] == ["ok"]


def test_a_bad_value_is_a_config_error() -> None:
    from aperion_bus import ConfigError

    with pytest.raises(ConfigError, match="'record_handlers'"):
        AuditPlugin(record_handlers="yes")  # type: ignore[arg-type]

"""Default plugins: a process-wide factory that every bus built afterwards composes in
(the mechanism behind aperion-bus-otel's OpenTelemetry instrumentor)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from aperion_bus import (
    Event,
    EventBus,
    PluginError,
    add_default_plugin,
    default_plugins,
    hookimpl,
    remove_default_plugin,
)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def on_emit(self, event: Event) -> None:
        self.seen.append(event.event_type)


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        remove_default_plugin(name)


def test_every_bus_built_after_the_call_gets_the_plugin(cleanup: list[str]) -> None:
    made: list[Recorder] = []
    given: list[list[object]] = []

    def factory(plugins: Sequence[object]) -> Recorder:
        given.append(list(plugins))
        made.append(Recorder())
        return made[-1]

    own = Recorder()
    before = EventBus()
    add_default_plugin("recorder", factory)
    cleanup.append("recorder")
    assert default_plugins() == ["recorder"]
    with EventBus(plugins=[own]) as bus:
        assert bus.plugin_names == ["Recorder", "recorder"]
        assert bus.get_plugin("recorder") is made[0]
        bus.emit("a.b", {}, wait_for_handlers=True)
    assert made[0].seen == ["a.b"]
    assert given == [[own]]  # the factory sees the bus's own plugins
    # built before: unchanged
    assert "recorder" not in before.plugin_names
    before.shutdown()
    assert remove_default_plugin("recorder") is True
    assert remove_default_plugin("recorder") is False
    assert default_plugins() == []
    with EventBus() as bus:
        assert "recorder" not in bus.plugin_names
    assert len(made) == 1


def test_the_factory_may_decline_and_a_named_plugin_wins(cleanup: list[str]) -> None:
    calls: list[int] = []

    def factory(plugins: Sequence[object]) -> Any:
        calls.append(len(plugins))
        return None if any(isinstance(p, Recorder) for p in plugins) else Recorder()

    add_default_plugin("recorder", factory)
    cleanup.append("recorder")
    with EventBus(plugins=[Recorder()]) as bus:  # declined: the bus has one already
        assert bus.plugin_names == ["Recorder"]
    mine = Recorder()
    mine.plugin_name = "recorder"  # type: ignore[attr-defined]
    with EventBus(plugins=[mine]) as bus:  # same name: the factory is not even called
        assert bus.get_plugin("recorder") is mine
    assert calls == [1]


def test_a_failing_factory_fails_the_construction_clearly(cleanup: list[str]) -> None:
    def broken(plugins: Sequence[object]) -> object:
        raise RuntimeError("no tracer")

    add_default_plugin("broken", broken)
    cleanup.append("broken")
    with pytest.raises(RuntimeError, match="no tracer"):
        EventBus()
    remove_default_plugin("broken")

    class Bad:
        @hookimpl
        def on_emit(self, nonsense: int) -> None: ...

    add_default_plugin("bad", lambda plugins: Bad())
    cleanup.append("bad")
    with pytest.raises(PluginError, match="plugin 'bad' is invalid"):
        EventBus()


def test_bad_arguments_are_refused(cleanup: list[str]) -> None:
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        add_default_plugin("", lambda plugins: None)
    with pytest.raises(TypeError, match="factory must be callable"):
        add_default_plugin("x", 3)  # type: ignore[arg-type]
    add_default_plugin("x", lambda plugins: None)
    cleanup.append("x")
    with pytest.raises(ValueError, match="'x' is already added"):
        add_default_plugin("x", lambda plugins: None)


def test_the_environment_disables_a_default_plugin_by_name(
    cleanup: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_default_plugin("recorder", lambda plugins: Recorder())
    cleanup.append("recorder")
    monkeypatch.setenv("APERION_BUS_DISABLE_PLUGINS", "audit, recorder")
    with EventBus() as bus:
        assert bus.plugin_names == []
    monkeypatch.delenv("APERION_BUS_DISABLE_PLUGINS")
    with EventBus() as bus:
        assert bus.plugin_names == ["recorder"]

"""The documented way to test an app whose config uses the redis transport: the pytest
plugin's ``bus_from_config`` builds the configured bus with redis off, events in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aperion_bus import Event, EventBus, load_config
from aperion_bus.testing import EventCapture

CONFIG = """
handlers = []

[plugins.redis]
url = "redis://127.0.0.1:1/0"   # nothing listens here: the bus must not try it
stream = "shop:{domain}"

[bus]
name = "shop"
"""


def test_the_configured_redis_transport_is_swapped_for_in_process_dispatch(
    tmp_path: Path, bus_from_config: Callable[..., EventBus]
) -> None:
    config = tmp_path / "aperion-bus.toml"
    config.write_text(CONFIG)
    assert load_config(config).active_plugins() == ["redis"]  # what production runs

    bus = bus_from_config(config)
    assert bus.name == "shop"
    assert "redis" not in bus.plugin_names
    got: list[Event] = []
    bus.subscribe(got.append, "order.*")
    bus.emit("order.created", {"id": 1}, wait_for_handlers=True)
    assert [e.payload for e in got] == [{"id": 1}]
    EventCapture.of(bus).assert_emitted("order.created", {"id": 1}, count=1)

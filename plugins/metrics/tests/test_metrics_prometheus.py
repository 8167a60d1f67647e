"""The Prometheus backend: metrics in a registry, scraped from a real /metrics endpoint."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from aperion_bus import ConfigError, Event, EventBus, hookimpl
from aperion_bus.testing import assert_bad_setting, free_port, run_python, wait_until
from aperion_bus_metrics import MetricsPlugin, PrometheusMetrics

prometheus_client = pytest.importorskip("prometheus_client")


def ok(event: Event) -> None:
    pass


def bad(event: Event) -> None:
    raise ValueError("boom")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        body: bytes = resp.read()
    return body.decode("utf-8")


def value(text: str, name: str, **labels: str) -> float:
    """The value of one sample line ``name{labels} value`` in the exposition text."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if got == labels:
            return float(m.group(3))
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def test_scrape_a_real_endpoint() -> None:
    plugin = MetricsPlugin(backend="prometheus")
    with EventBus(plugins=[plugin]) as bus:
        bus.subscribe(ok, "user.*")
        bus.subscribe(bad, "user.login")
        for _ in range(3):
            bus.emit("user.login", wait_for_handlers=True)
        bus.emit("user.logout", wait_for_handlers=True)
        server = plugin.serve(free_port(), "127.0.0.1")
        text = scrape(f"http://127.0.0.1:{server.port}/metrics")
    ns = "aperion_bus"
    assert value(text, f"{ns}_events_emitted_total", event_type="user.login") == 3
    assert value(text, f"{ns}_events_emitted_total", event_type="user.logout") == 1
    assert value(
        text, f"{ns}_handler_failures_total",
        handler=f"{__name__}.bad", event_type="user.login", reason="handler_error",
    ) == 3
    assert value(text, f"{ns}_handler_duration_seconds_count", handler=f"{__name__}.ok") == 4
    assert value(text, f"{ns}_handler_duration_seconds_bucket",
                 handler=f"{__name__}.ok", le="+Inf") == 4
    assert value(text, f"{ns}_dispatch_duration_seconds_count", event_type="user.login") == 3
    # the bus shut the server down with it
    with pytest.raises(OSError):
        scrape(f"http://127.0.0.1:{server.port}/metrics")


def test_serve_on_port_zero_and_shutdown() -> None:
    plugin = MetricsPlugin(backend="prometheus", namespace="shop")
    with EventBus(plugins=[plugin]) as bus:
        bus.emit("order.created", wait_for_handlers=True)
        with plugin.serve(0) as server:
            assert server.port > 0
            text = scrape(server.url)
            assert value(text, "shop_events_emitted_total", event_type="order.created") == 1
        with pytest.raises(OSError):
            scrape(server.url)


def test_drops_are_exported_with_their_reason() -> None:
    plugin = MetricsPlugin(backend="prometheus")
    with EventBus(plugins=[plugin]) as bus:
        bus.emit("late.event")  # queued, then dropped by a shutdown that does not drain
        bus.shutdown(timeout=0)
    text = plugin.collector.backend.render()  # type: ignore[union-attr]
    dropped = plugin.get_snapshot()["total_events_dropped"]
    if dropped:  # the worker may already have taken it
        assert value(text, "aperion_bus_events_dropped_total",
                     event_type="late.event", reason="shutdown") == 1


def test_label_values_are_capped() -> None:
    plugin = MetricsPlugin(backend="prometheus", max_label_values=2)
    with EventBus(plugins=[plugin]) as bus:
        for i in range(5):
            bus.emit(f"tenant.t{i}", wait_for_handlers=True)
        assert plugin.registry is not None
        text = prometheus_client.generate_latest(plugin.registry).decode()
    assert value(text, "aperion_bus_events_emitted_total", event_type="tenant.t0") == 1
    assert value(text, "aperion_bus_events_emitted_total", event_type="other") == 3
    assert 'event_type="tenant.t4"' not in text


def test_private_registry_by_default_and_default_on_request() -> None:
    a = MetricsPlugin(backend="prometheus")
    b = MetricsPlugin(backend="prometheus")  # no clash: each has its own registry
    assert a.registry is not b.registry
    assert a.registry is not prometheus_client.REGISTRY
    c = MetricsPlugin(backend="prometheus", registry="default", namespace="aperion_bus_t1")
    try:
        assert c.registry is prometheus_client.REGISTRY
        with pytest.raises(ConfigError, match="another bus already uses it"):
            MetricsPlugin(backend="prometheus", registry="default", namespace="aperion_bus_t1")
    finally:
        backend = c.collector.backend
        assert isinstance(backend, PrometheusMetrics)
        for metric in (backend._emitted, backend._dropped, backend._failed,
                       backend._handler_hist, backend._dispatch_hist):
            backend.registry.unregister(metric)


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        ({"registry": "global"}, "registry", "'private', 'default' or a CollectorRegistry"),
        ({"registry": 3}, "registry", "'private', 'default' or a CollectorRegistry"),
        ({"namespace": "bad-name"}, "namespace", "letters, digits and _"),
        ({"namespace": 5}, "namespace", "letters, digits and _"),
        ({"buckets": []}, "buckets", "a list of numbers > 0 (at least one)"),
        ({"buckets": ["x"]}, "buckets", "a list of numbers > 0"),
        ({"buckets": "123"}, "buckets", "a list of numbers > 0"),
        ({"buckets": [0.1, -1]}, "buckets", "a list of numbers > 0"),
    ],
)
def test_bad_prometheus_settings(settings: dict[str, object], key: str, expected: str) -> None:
    assert_bad_setting("metrics", {"backend": "prometheus", **settings}, key, expected)
    with pytest.raises(ConfigError, match=f"plugin 'metrics': setting '{key}'"):
        MetricsPlugin(backend="prometheus", **settings)  # type: ignore[arg-type]


def test_without_prometheus_client_the_plugin_imports_and_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from aperion_bus import EventBus\n"
        "from aperion_bus_metrics import MetricsPlugin\n"
        "bus = EventBus(plugins=['metrics']); bus.emit('a.b', wait_for_handlers=True)\n"
        "assert bus.get_stats()['metrics']['total_events_emitted'] == 1\n"
        "try:\n"
        "    MetricsPlugin(backend='prometheus')\n"
        "except ImportError as exc:\n"
        "    print('ERR', exc)\n"
    )
    out = run_python(code).stdout
    assert "ERR the Prometheus backend needs prometheus-client" in out
    assert "pip install 'aperion-bus-metrics[prometheus]'" in out


@pytest.mark.slow
def test_cli_metrics_serve_demo(tmp_path: object) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aperion_bus._cli", "metrics", "serve", "--port", str(port),
         "--demo", "--duration", "30"],
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        texts: list[str] = []

        def demo_ticked() -> bool:
            try:
                texts.append(scrape(url))
            except OSError:
                return False
            return "demo.tick" in texts[-1] and 'reason="handler_error"' in texts[-1]

        wait_until(demo_ticked, timeout=20, interval=0.2)
        text = texts[-1]
        assert value(text, "aperion_bus_events_emitted_total", event_type="demo.tick") >= 5
        assert value(text, "aperion_bus_handler_failures_total",
                     handler="aperion_bus_metrics._cli._subscribe_demo.<locals>.demo_flaky",
                     event_type="demo.tick", reason="handler_error") >= 1
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert f"serving http://127.0.0.1:{port}/metrics" in out


def test_cli_metrics_serve_refuses_a_bad_config(tmp_path: object) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "aperion-bus.toml"
    cfg.write_text('[plugins.metrics]\nmax_label_values = 0\n')
    proc = subprocess.run(
        [sys.executable, "-m", "aperion_bus._cli", "--config", str(cfg), "metrics", "serve",
         "--port", "0", "--duration", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "'max_label_values' = 0 is invalid; expected an int >= 1" in proc.stderr


def test_other_plugins_numeric_stats_are_exported() -> None:
    class Transport:
        """Stands for a plugin with stats (redis reports its reader restarts this way)."""

        @hookimpl
        def on_stats(self) -> dict[str, Any]:
            return {"redis": {"reader_restarts": 2, "last_reader_error": None, "mode": "x"}}

    plugin = MetricsPlugin(backend="prometheus")
    with EventBus(plugins=[plugin, Transport()]) as bus:
        assert bus.get_stats()["redis"]["reader_restarts"] == 2
        assert plugin.plugin_stats()[("redis", "reader_restarts")] == 2.0
        assert ("redis", "mode") not in plugin.plugin_stats()  # numbers only
        text = plugin.collector.backend.render()  # type: ignore[union-attr]
    assert 'aperion_bus_plugin_stat{plugin="redis",stat="reader_restarts"} 2.0' in text
    assert plugin.plugin_stats() == {}  # the bus is shut down: nothing to read

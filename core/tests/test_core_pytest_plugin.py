"""The pytest plugin (``aperion_bus.pytest_plugin``): fixtures, marker and failure output,
proven in inner pytest runs (pytester) that load it through its ``pytest11`` entry point."""

from __future__ import annotations

import textwrap
from importlib.metadata import entry_points

import pytest
from aperion_bus.testing import run_python

pytest_plugins = ["pytester"]
#: hypothesis's pytest plugin takes ~1.5 s to import, and pytester's in-process runs import
#: the plugins again each time: the inner runs do without it
NO_SLOW = ("-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*NO_SLOW, *args)


def test_the_plugin_is_a_pytest11_entry_point_and_the_kernel_does_not_import_pytest() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("aperion_bus") == "aperion_bus.pytest_plugin"
    run_python(
        "import sys, aperion_bus, aperion_bus.testing\n"
        "from aperion_bus import EventBus\n"
        "EventBus().shutdown()\n"
        "assert 'pytest' not in sys.modules, 'the kernel imported pytest'\n"
        "assert 'aperion_bus.pytest_plugin' not in sys.modules\n"
    )


def test_bus_is_fresh_per_test_and_shut_down_after(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from aperion_bus import EventBus

        SEEN = []

        def test_one(bus):
            assert isinstance(bus, EventBus)
            SEEN.append(bus)
            got = []
            bus.subscribe(got.append, "user.*")
            bus.emit("user.login", {"id": 1}, wait_for_handlers=True)
            assert [e.payload for e in got] == [{"id": 1}]

        def test_two(bus):
            assert bus is not SEEN[0]
            assert SEEN[0].closed, "the first test's bus was shut down"
            assert not bus.closed
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_the_marker_and_indirect_parameters_choose_the_plugins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from aperion_bus import hookimpl, DropEvent

        class DropSecrets:
            plugin_name = "drop-secrets"

            @hookimpl
            def on_emit(self, event):
                if event.event_type.startswith("secret."):
                    raise DropEvent("not here")

        @pytest.mark.aperion_bus(plugins=[DropSecrets()], handler_timeout=2.5, name="orders")
        def test_marker(bus, bus_events):
            assert bus.handler_timeout == 2.5 and bus.name == "orders"
            assert "drop-secrets" in bus.plugin_names
            bus.emit("secret.key", {})
            bus.emit("user.login", {})
            assert bus_events.types == ["user.login"]

        @pytest.mark.parametrize(
            "bus", [{"plugins": [DropSecrets()]}, {}], indirect=True, ids=["drop", "bare"]
        )
        def test_indirect(bus, bus_events):
            bus.emit("secret.key", {})
            assert len(bus_events.of_type("secret.*")) == (
                0 if "drop-secrets" in bus.plugin_names else 1
            )

        @pytest.mark.aperion_bus(handler_timeout=9.0)
        @pytest.mark.parametrize("bus", [{"handler_timeout": 1.0}], indirect=True)
        def test_the_parameter_wins(bus):
            assert bus.handler_timeout == 1.0

        @pytest.mark.aperion_bus("validate")
        def test_positional_marker_argument(bus):
            pass
        """
    )
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*takes keyword arguments only*"])
    markers = run(pytester, "--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.aperion_bus(plugins=*"])


def test_bus_events_queries(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from aperion_bus import CorrelationContext

        def test_queries(bus, bus_events):
            def on_order(event):  # runs in the background: its emit is a child of the order
                bus.emit("email.queued", {"to": "customer"})
                bus.emit("stock.reserved", {"sku": "A1"})

            def on_email(event):
                bus.emit("email.sent", {})

            bus.subscribe(on_order, "order.created")
            bus.subscribe(on_email, "email.queued")
            with CorrelationContext("req-7"):
                order_id = bus.emit("order.created", {"id": 7, "total": 9.5})
            bus.emit("user.login", {"id": 1}, wait_for_handlers=True)

            order = bus_events.get(order_id)
            # emit order; the background handlers' emits come after their parent
            assert bus_events.types[0] == "order.created"
            assert sorted(bus_events.types) == sorted([
                "order.created", "user.login", "email.queued", "stock.reserved", "email.sent"
            ])
            assert [e.event_type for e in bus_events.of_type("email.*")] == [
                "email.queued", "email.sent"
            ]
            assert len(bus_events.of_type("*")) == 5
            assert len(bus_events.of_type("order.created", "user.login")) == 2
            assert {e.event_type for e in bus_events.correlation("req-7")} == {
                "order.created", "email.queued", "stock.reserved", "email.sent"
            }
            assert [e.event_type for e in bus_events.caused_by(order)] == [
                "email.queued", "stock.reserved"
            ]
            assert [e.event_type for e in bus_events.descendants(order_id)] == [
                "email.queued", "stock.reserved", "email.sent"
            ]
            bus_events.assert_emitted("order.created", {"id": 7}, count=1)
            bus_events.assert_emitted("email.*", count=2, correlation_id="req-7")
            bus_events.assert_not_emitted("payment.*")
            bus_events.clear()
            assert bus_events.events == []
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_assert_emitted_failure_lists_what_was_emitted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_wrong_payload(bus, bus_events):
            bus.emit("user.created", {"id": 1, "name": "al", "bio": "x" * 5000})
            bus.emit("user.created", {"id": 2, "name": "bo"})
            for i in range(3):
                bus.emit("audit.read", {"n": i})
            bus_events.assert_emitted("user.*", {"id": 3})

        def test_wrong_count(bus, bus_events):
            bus.emit("user.created", {"id": 1})
            bus_events.assert_emitted("user.created", count=2)

        def test_nothing_emitted(bus_events):
            bus_events.assert_emitted("user.created")

        def test_not_emitted(bus, bus_events):
            bus.emit("payment.failed", {"code": 5})
            bus_events.assert_not_emitted("payment.*")
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([
        "E*AssertionError: expected at least 1 event(s) 'user.*' with payload containing "
        "{'id': 3}, found 0 (2 of that type)",
        "E*emitted (5 events, 2 types):",
        "E*  audit.read x3  payload keys: n",
        "E*  user.created x2  payload keys: bio, id, name",
        "E*events of that type that did not match:",
        "E*  user.created {'bio': 'xxxx*', 'id': 1, 'name': 'al'} correlation_id=None",
        "E*  user.created {'id': 2, 'name': 'bo'} correlation_id=None",
    ])
    result.stdout.fnmatch_lines([
        "E*expected 2 event(s) 'user.created', found 1",
        "E*  user.created x1  payload keys: id",
    ])
    result.stdout.fnmatch_lines(["E*expected at least 1 event(s) 'user.created', found 0",
                                 "E*no event was emitted"])
    result.stdout.fnmatch_lines(["E*expected no event 'payment.*', found 1"])
    assert "x" * 200 not in result.stdout.str(), "payloads are shortened"


def test_a_bus_from_the_projects_config_with_redis_off(pytester: pytest.Pytester) -> None:
    # a config that names the redis transport (its settings, even an unreachable server)
    pytester.mkdir("tests")
    (pytester.path / "tests" / "shop.toml").write_text("""
[plugins.redis]
url = "redis://127.0.0.1:1/0"

[bus]
name = "shop"
handler_timeout = 3.0
""")
    (pytester.path / "tests" / "test_config.py").write_text(textwrap.dedent(
        """
        import pytest
        from aperion_bus import EventBus
        from aperion_bus.testing import EventCapture

        @pytest.mark.aperion_bus(config="shop.toml")  # next to this file
        def test_marker_config(bus, bus_events):
            assert bus.name == "shop" and bus.handler_timeout == 3.0
            assert "redis" not in bus.plugin_names
            got = []
            bus.subscribe(got.append, "order.*")
            bus.emit("order.created", {"id": 1}, wait_for_handlers=True)
            assert len(got) == 1  # dispatched here, not sent to a stream
            bus_events.assert_emitted("order.created", {"id": 1})

        def test_factory(bus_from_config, monkeypatch, tmp_path):
            made = bus_from_config("tests/shop.toml", handler_timeout=1.0)  # from the cwd
            assert made.handler_timeout == 1.0 and "redis" not in made.plugin_names
            made.emit("order.created", {"id": 2})
            EventCapture.of(made).assert_emitted("order.*", count=1)
            pytest.MY_BUS = made

        def test_factory_buses_are_shut_down():
            assert pytest.MY_BUS.closed
        """
    ))
    run(pytester).assert_outcomes(passed=3)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(bus):\n    pass\n")
    result = run(pytester, "-p", "no:aperion_bus")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'bus' not found*"])

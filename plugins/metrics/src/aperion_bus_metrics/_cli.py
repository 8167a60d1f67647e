"""``aperion-bus metrics serve``: run a bus from the config and expose its /metrics."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aperion_bus import hookimpl

__all__ = ["add_cli_commands", "add_commands", "cmd_serve"]


@hookimpl
def add_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """The ``aperion_bus.cli`` entry point ``metrics``."""
    add_commands(subparsers)


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    metrics = subparsers.add_parser("metrics", help="bus metrics (aperion-bus-metrics)")
    sub = metrics.add_subparsers(dest="metrics_command", metavar="SUBCOMMAND")
    serve = sub.add_parser(
        "serve",
        help="build the bus from the config and serve its Prometheus metrics at /metrics",
        description=(
            "Builds the bus the config describes (adding the metrics plugin with the "
            "Prometheus backend if the config lacks it), serves its metrics on "
            "http://HOST:PORT/metrics and runs until interrupted (or --duration). The bus "
            "counts what happens in THIS process: events its plugins and handler entry "
            "points emit (e.g. a bridge that consumes a stream). --demo emits sample events."
        ),
    )
    serve.add_argument("--port", type=int, required=True, help="TCP port (0: pick a free one)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--demo", action="store_true", help="emit demo.* events (one handler fails now and then)"
    )
    serve.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds"
    )
    serve.set_defaults(func=cmd_serve)
    metrics.set_defaults(func=lambda args: (metrics.print_help(), 2)[1])


def cmd_serve(args: argparse.Namespace) -> int:
    from aperion_bus import EventBus, load_config
    from aperion_bus._cli_output import json_line

    config = load_config(Path(args.config) if getattr(args, "config", None) else None)
    kwargs = config.bus_kwargs()
    plugins = list(kwargs["plugins"])
    settings = {k: dict(v) for k, v in kwargs["settings"].items()}
    if "metrics" not in plugins:
        plugins.append("metrics")
    mine = settings.setdefault("metrics", {})
    if mine.get("backend", "memory") != "prometheus":
        if "backend" in mine and not args.quiet:
            print(
                f"note: serving needs the Prometheus backend; using it instead of "
                f"backend = {mine['backend']!r}",
                file=sys.stderr,
            )
        mine["backend"] = "prometheus"
    kwargs["plugins"] = plugins
    kwargs["settings"] = settings
    bus = EventBus(**kwargs)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        plugin = bus.get_plugin("metrics")
        server = plugin.serve(args.port, args.host)
        if args.json:
            print(json_line({"url": server.url, "host": server.host, "port": server.port}),
                  flush=True)
        else:
            print(f"serving {server.url} (Ctrl-C to stop)", flush=True)
        if args.demo:
            _subscribe_demo(bus)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        n = 0
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if args.demo:
                n += 1
                bus.emit("demo.tick", {"n": n}, source="aperion-bus metrics serve --demo",
                         wait_for_handlers=True)
            stop.wait(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        bus.shutdown()
    return 0


def _subscribe_demo(bus: Any) -> None:
    def demo_ok(event: Any) -> None:
        pass

    def demo_flaky(event: Any) -> None:
        if event.payload.get("n", 0) % 5 == 0:
            raise RuntimeError("demo failure (every 5th tick)")

    bus.subscribe(demo_ok, "demo.*")
    bus.subscribe(demo_flaky, "demo.*")

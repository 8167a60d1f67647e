"""The ``aperion-bus`` command line: ``plugins``, ``config check``, ``demo`` and plugin commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pluggy

from . import __version__
from ._errors import AperionBusError
from ._hookspecs import PROJECT_NAME, HookSpecs
from ._plugins import (
    PLUGIN_GROUP,
    _entry_points,
    _load,
    installed_handlers,
    installed_plugins,
    load_config,
)

__all__ = ["main"]


def _cmd_plugins(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config) if args.config else None)
    active = set(config.active_plugins())
    active_handlers = set(config.handlers)
    rows = [("kind", "name", "distribution", "version", "active")]
    for info in installed_plugins():
        rows.append(
            (
                "plugin",
                info.name,
                info.distribution,
                info.version,
                "yes" if info.name in active else "no",
            )
        )
    for info in installed_handlers():
        on = "*" in active_handlers or info.name in active_handlers
        rows.append(("handlers", info.name, info.distribution, info.version, "yes" if on else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if len(rows) == 1:
        print("(no plugins or handler entry points installed)")
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    from ._bus import EventBus

    config = load_config(Path(args.config) if args.config else None)
    where = str(config.source) if config.source else "no config file (bare kernel)"
    bus = EventBus(**config.bus_kwargs())
    try:
        print(f"config: {where}")
        print(f"plugins: {', '.join(bus.plugin_names) or '(none)'}")
        print(f"handler entry points: {', '.join(config.handlers) or '(none)'}")
        print(f"subscriptions: {len(bus.subscriptions())}")
        print("ok")
    finally:
        bus.shutdown()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(Path(args.dir))


def _plugin_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Let every installed plugin add its subcommands (``add_cli_commands`` hook)."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(HookSpecs)
    for name, eps in sorted(_entry_points(PLUGIN_GROUP).items()):
        try:
            target = _load(eps[0])
            if not hasattr(target, "add_cli_commands"):
                continue
            # the class/module is enough for a static/module-level hook implementation
            pm.register(target, name)
        except Exception as exc:  # a broken plugin must not break the whole CLI
            print(f"warning: plugin {name!r} not loaded: {exc}", file=sys.stderr)
    pm.hook.add_cli_commands(subparsers=subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aperion-bus", description="aperion-bus event bus tools")
    parser.add_argument("--version", action="version", version=f"aperion-bus {__version__}")
    parser.add_argument("--config", help="config file (default: see docs/configuration.md)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("plugins", help="list installed plugins and handler entry points")
    p.set_defaults(func=_cmd_plugins)
    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    check = cfg_sub.add_parser("check", help="load the config and build the bus it describes")
    check.set_defaults(func=_cmd_config_check)
    demo = sub.add_parser("demo", help="run the demo: a bus with plugins, files in --dir")
    demo.add_argument(
        "--dir", default="aperion-demo", help="where the demo writes (default: ./aperion-demo)"
    )
    demo.set_defaults(func=_cmd_demo)
    _plugin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except AperionBusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

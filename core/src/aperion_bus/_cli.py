"""The ``aperion-bus`` command line: ``plugins``, ``config check``, ``demo`` and plugin commands."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pluggy

from . import __version__
from ._errors import AperionBusError, ConfigError, PluginError
from ._hookspecs import PROJECT_NAME, HookSpecs
from ._plugins import (
    PLUGIN_GROUP,
    BusConfig,
    PluginSkippedWarning,
    _entry_points,
    _load,
    installed_handlers,
    load_config,
    plugin_statuses,
)

__all__ = ["main"]

logger = logging.getLogger("aperion_bus")
_NEWLINES = re.compile(r"\s*[\r\n]+\s*")


def _config(args: argparse.Namespace) -> BusConfig:
    return load_config(Path(args.config) if args.config else None)


def _print_json(doc: object) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=True))


def _cmd_plugins(args: argparse.Namespace) -> int:
    config = _config(args)
    statuses = plugin_statuses(config)
    active_handlers = set(config.handlers)
    handler_rows = [
        (info, "*" in active_handlers or info.name in active_handlers)
        for info in installed_handlers()
    ]
    if args.json:
        _print_json(
            {
                "config": str(config.source) if config.source else None,
                "plugins": [s.as_dict() for s in statuses],
                "handlers": [
                    {
                        "name": info.name,
                        "distribution": info.distribution,
                        "version": info.version,
                        "active": on,
                    }
                    for info, on in handler_rows
                ],
            }
        )
        return 0
    rows = [("kind", "name", "distribution", "version", "active", "why")]
    for st in statuses:
        rows.append(
            (
                "plugin",
                st.name,
                st.distribution or "-",
                st.version or "-",
                "yes" if st.active else "no",
                _one_line(st.reason),
            )
        )
    for info, on in handler_rows:
        why = "listed" if on else "not listed"
        rows.append(
            ("handlers", info.name, info.distribution, info.version, "yes" if on else "no", why)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if len(rows) == 1:
        print("(no plugins or handler entry points installed)")
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    from ._bus import EventBus

    source: str | None = args.config  # until the config file is found
    skipped: list[str] = []
    try:
        config = _config(args)
        source = str(config.source) if config.source else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PluginSkippedWarning)
            bus = EventBus(**config.bus_kwargs())
        for w in caught:
            if issubclass(w.category, PluginSkippedWarning):
                skipped.append(str(w.message))  # logged as a warning already
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    except AperionBusError as exc:
        if args.json:
            _print_json({"ok": False, "config": source, "error": str(exc)})
        raise
    try:
        doc = {
            "ok": True,
            "config": source,
            "plugins": bus.plugin_names,
            "skipped": skipped,
            "handlers": list(config.handlers),
            "subscriptions": len(bus.subscriptions()),
        }
    finally:
        bus.shutdown()
    if args.json:
        _print_json(doc)
        return 0
    print(f"config: {source or 'no config file (bare kernel)'}")
    print(f"plugins: {', '.join(bus.plugin_names) or '(none)'}")
    if skipped:
        print(f"skipped: {len(skipped)} (see the warnings above)")
    print(f"handler entry points: {', '.join(config.handlers) or '(none)'}")
    print(f"subscriptions: {doc['subscriptions']}")
    print("ok")
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
    p = sub.add_parser(
        "plugins", help="list installed plugins and handler entry points: active or not, and why"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=_cmd_plugins)
    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    check = cfg_sub.add_parser("check", help="load the config and build the bus it describes")
    check.add_argument("--json", action="store_true", help="print one JSON document")
    check.set_defaults(func=_cmd_config_check)
    demo = sub.add_parser("demo", help="run the demo: a bus with plugins, files in --dir")
    demo.add_argument(
        "--dir", default="aperion-demo", help="where the demo writes (default: ./aperion-demo)"
    )
    demo.set_defaults(func=_cmd_demo)
    _plugin_commands(sub)
    return parser


def _one_line(text: str) -> str:
    """``text`` on one line, control characters escaped (it may quote a hostile value)."""
    text = _NEWLINES.sub(" ", text.strip())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _WarningLine(logging.Handler):
    """On stderr: a skipped plugin as an ``aperion-bus: warning: ...`` line; any other record
    as Python's last-resort handler prints it (this handler replaces it, being found)."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "aperion_bus_skipped", False):
            print(f"aperion-bus: warning: {_one_line(record.getMessage())}", file=sys.stderr)
        elif logging.lastResort is not None:
            logging.lastResort.handle(record)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; exit status 0 ok, 1 failure, 2 usage or configuration error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    # Skipped plugins are reported once, as a warning line (not twice: warning and log).
    handler: logging.Handler | None = None
    if not logging.getLogger().handlers and not logger.handlers:
        handler = _WarningLine(logging.WARNING)
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginSkippedWarning)
            return int(func(args) or 0)
    except (ConfigError, PluginError) as exc:
        print(f"aperion-bus: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except AperionBusError as exc:
        print(f"aperion-bus: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    finally:
        if handler is not None:
            logger.removeHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The kernel's built-in ``aperion-bus`` commands: ``plugins``, ``config check`` and ``demo``.

Each ``_cmd_*`` function takes the parsed arguments and returns the exit status; ``_cli``
builds the parser that routes to them and handles their errors. Also here: ``_one_line``, the
one-line escaped text of the ``plugins`` table and of the CLI's warning and error lines.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

from ._cli_output import escape
from ._errors import AperionBusError
from ._plugins import (
    BusConfig,
    PluginSkippedWarning,
    installed_handlers,
    load_config,
    plugin_statuses,
)

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
        print(escape("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()))
    if len(rows) == 1 and not args.quiet:
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


def _one_line(text: str) -> str:
    """``text`` on one line, control characters escaped (it may quote a hostile value)."""
    text = _NEWLINES.sub(" ", text.strip())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

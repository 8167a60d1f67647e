"""The ``aperion-bus`` command line: ``plugins``, ``config check``, ``demo`` and plugin commands.

Conventions (docs/cli.md): global options before or after the command; a closed pipe ends
quietly with status 0; errors are one line on stderr, status 1 (failure) or 2 (usage, config).
Plugin commands come from the ``aperion_bus.cli`` entry-point group (entry name = command
name) and are imported only when that command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pluggy

import aperion_bus

from ._cli_output import UsageError, escape
from ._errors import AperionBusError, ConfigError, PluginLoadError, PluginNotFoundError
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

__all__ = ["CLI_GROUP", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "main"]

#: Entry-point group of plugin commands: ``log = "aperion_bus_audit._cli"`` (an object or
#: module with an ``add_cli_commands`` hook implementation), loaded only for its command.
CLI_GROUP = "aperion_bus.cli"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

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


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line on stderr, status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {escape(message)} (see {self.prog} --help)\n")


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--config``, ``--json``, ``-q``: on the top parser with defaults, on every subcommand
    with SUPPRESS defaults (so that a value given before the command is kept)."""

    def d(value: object) -> Any:
        return value if top else argparse.SUPPRESS

    have = parser._option_string_actions
    if "--config" not in have:
        parser.add_argument(
            "--config",
            default=d(None),
            metavar="FILE",
            help="config file (default: $APERION_BUS_CONFIG, else ./aperion-bus.toml, else "
            "[tool.aperion-bus] in ./pyproject.toml)",
        )
    if "--json" not in have:
        parser.add_argument(
            "--json",
            action="store_true",
            default=d(False),
            help="machine-readable output: JSON lines for records, one JSON document for "
            "summaries",
        )
    if "-q" not in have and "--quiet" not in have:
        parser.add_argument(
            "-q", "--quiet", action="store_true", default=d(False),
            help="no notes, no progress, no empty-result messages",
        )


def _walk(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found.append(child)
                found.extend(_walk(child))
    return found


class _CommandEntry:
    """One ``aperion_bus.cli`` entry point, found without importing ``importlib.metadata``
    (its import alone costs about a tenth of the kernel's)."""

    __slots__ = ("dist", "name", "value")

    def __init__(self, name: str, value: str, dist: str | None) -> None:
        self.name, self.value, self.dist = name, value, dist

    def load(self) -> Any:
        import importlib

        module, _, attr = self.value.partition(":")
        target: Any = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            target = getattr(target, part)
        return target


def _dist_info_dirs() -> Iterator[tuple[str, Path]]:
    """(normalized distribution name, its .dist-info directory), first on sys.path wins."""
    seen: set[str] = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in sorted(names):
            if not name.endswith(".dist-info"):
                continue
            dist = _normalize(name[: -len(".dist-info")].rsplit("-", 1)[0])
            if dist not in seen:
                seen.add(dist)
                yield dist, Path(entry or ".", name)


def _normalize(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def _scan_group(group: str) -> dict[str, _CommandEntry] | None:
    """The entry points of ``group`` read from the ``entry_points.txt`` files of the
    distributions on sys.path; None when this Python's layout is not plain directories
    (then importlib.metadata is asked)."""
    found: dict[str, _CommandEntry] = {}
    any_dist = False
    for dist, path in _dist_info_dirs():
        any_dist = True
        try:
            text = (path / "entry_points.txt").read_text(encoding="utf-8")
        except OSError:
            continue
        section = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
            elif section == group and "=" in line:
                name, _, value = line.partition("=")
                found.setdefault(name.strip(), _CommandEntry(name.strip(), value.strip(), dist))
    return found if any_dist else None


def _command_entry_points() -> dict[str, Any]:
    """``aperion_bus.cli`` entry points by command name (not loaded)."""
    fast = _scan_group(CLI_GROUP)
    if fast is not None:
        return fast
    return {name: eps[0] for name, eps in _entry_points(CLI_GROUP).items()}  # pragma: no cover


def _dist_name(ep: Any) -> str | None:
    if isinstance(ep, _CommandEntry):
        return ep.dist
    dist = getattr(ep, "dist", None)
    return None if dist is None else _normalize(str(dist.name))


def _version() -> str:
    """The installed version of aperion-bus (read from its METADATA: no importlib.metadata)."""
    for dist, path in _dist_info_dirs():
        if dist == "aperion-bus":
            try:
                with (path / "METADATA").open(encoding="utf-8") as fh:
                    for line in fh:
                        if line.startswith("Version:"):
                            return line.split(":", 1)[1].strip()
                        if not line.strip():
                            break
            except OSError:
                break
    return str(aperion_bus.__version__)  # pragma: no cover - other layouts


def _register_commands(
    subparsers: argparse._SubParsersAction[Any], targets: list[tuple[str, Any]]
) -> None:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(HookSpecs)
    for name, target in targets:
        pm.register(target, name)
    pm.hook.add_cli_commands(subparsers=subparsers)


def _legacy_plugin_commands(
    subparsers: argparse._SubParsersAction[Any], skip_dists: set[str]
) -> None:
    """Commands of plugins that implement ``add_cli_commands`` on their plugin object without
    declaring an ``aperion_bus.cli`` entry point: imported only for a command not found
    otherwise."""
    targets: list[tuple[str, Any]] = []
    for name, eps in sorted(_entry_points(PLUGIN_GROUP).items()):
        if _dist_name(eps[0]) in skip_dists:
            continue
        try:
            target = _load(eps[0])
        except Exception as exc:  # a broken plugin must not break the whole CLI
            print(f"warning: plugin {name!r} not loaded: {escape(exc)}", file=sys.stderr)
            continue
        if hasattr(target, "add_cli_commands"):
            targets.append((name, target))
    _register_commands(subparsers, targets)


_BUILTIN = ("plugins", "config", "demo")
_VALUE_OPTIONS = frozenset({"--config"})


def _command_word(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), or None."""
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word == "--":
            return None
        if word.startswith("-"):
            skip = word in _VALUE_OPTIONS
            continue
        return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; plugin commands other than ``command`` are listed without being imported."""
    parser = _Parser(
        prog="aperion-bus",
        description="aperion-bus event bus tools",
        epilog="exit status: 0 success, 1 failure, 2 usage or configuration error. "
        "Every command has --help.",
    )
    parser.add_argument("--version", action="version", version=f"aperion-bus {_version()}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "plugins", help="list installed plugins and handler entry points: active or not, and why"
    )
    p.set_defaults(func=_cmd_plugins)
    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    check = cfg_sub.add_parser("check", help="load the config and build the bus it describes")
    check.set_defaults(func=_cmd_config_check)

    def config_usage(_args: argparse.Namespace) -> int:
        cfg.print_help()
        return EXIT_USAGE

    cfg.set_defaults(func=config_usage)
    demo = sub.add_parser("demo", help="run the demo: a bus with plugins, files in --dir")
    demo.add_argument(
        "--dir", default="aperion-demo", help="where the demo writes (default: ./aperion-demo)"
    )
    demo.set_defaults(func=_cmd_demo)
    commands = _command_entry_points()
    chosen = [(n, ep) for n, ep in sorted(commands.items()) if n == command]
    for name, ep in sorted(commands.items()):
        if name != command:
            dist = _dist_name(ep) or "a plugin"
            sub.add_parser(name, help=f"commands of {dist} (aperion-bus {name} --help)")
    if chosen:
        name, ep = chosen[0]
        try:
            target = ep.load()
        except Exception as exc:
            raise AperionBusError(
                f"command {name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        _register_commands(sub, [(name, target)])
    elif command is not None and command not in _BUILTIN and command not in commands:
        _legacy_plugin_commands(sub, {d for d in map(_dist_name, commands.values()) if d})
    for child in _walk(parser):
        _add_global_options(child, top=False)
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


def _run(argv: list[str]) -> int:
    command = _command_word(argv)
    if command is None and "--version" in argv and not {"-h", "--help"} & set(argv):
        print(f"aperion-bus {_version()}")  # no parser, no entry-point scan
        return EXIT_OK
    parser = build_parser(command)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    # Skipped plugins are reported once, as a warning line (not twice: warning and log).
    handler: logging.Handler | None = None
    if not logging.getLogger().handlers and not logger.handlers:
        handler = _WarningLine(logging.WARNING)
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginSkippedWarning)
            return int(func(args) or 0)
    finally:
        if handler is not None:
            logger.removeHandler(handler)


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    line: str | None = None,
) -> str:
    return f"warning: {_one_line(str(message))}\n"


def _setup_streams() -> None:
    """Warnings (such as a torn last line of the log) in one escaped line; text the terminal's
    encoding cannot show is written as backslash escapes rather than failing."""
    warnings.formatwarning = _one_line_warning
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # a detached stream
                reconfigure(errors="backslashreplace")


def _stdout_gone() -> None:
    """After EPIPE: point stdout at /dev/null so that the interpreter's final flush is quiet."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _error(exc: BaseException, with_type: bool = False) -> None:
    text = _one_line(str(exc) or type(exc).__name__)
    if with_type:
        text = f"{type(exc).__name__}: {text}"
    print(f"aperion-bus: error: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 usage or config)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _setup_streams()
    try:
        status = _run(args)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): that is not an error
        _stdout_gone()
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    # fix the command, the config or what is installed
    except (ConfigError, PluginLoadError, PluginNotFoundError, UsageError) as exc:
        _error(exc)
        return EXIT_USAGE
    except (AperionBusError, OSError) as exc:  # a busy port, a refused connection
        _error(exc)
        return EXIT_FAILURE
    except Exception as exc:  # still one line: the type names what went wrong
        _error(exc, with_type=True)
        return EXIT_FAILURE
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

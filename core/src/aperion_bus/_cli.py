"""The ``aperion-bus`` command line: ``plugins``, ``config check``, ``demo`` and plugin commands.

Conventions (docs/cli.md): global options before or after the command; a closed pipe ends
quietly with status 0; errors are one line on stderr, status 1 (failure) or 2 (usage, config).
Plugin commands come from the ``aperion_bus.cli`` entry-point group (entry name = command
name) and are imported only when that command runs.

This module owns the entry point (:func:`main`: streams, warnings, errors and exit statuses)
and the parser (global options, built-in and plugin subcommands); the built-in commands are in
``_cli_commands``, the entry-point and version scan in ``_cli_discovery``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import pluggy

from ._cli_commands import _cmd_config_check, _cmd_demo, _cmd_plugins, _one_line
from ._cli_discovery import CLI_GROUP, _dist_name
from ._cli_discovery import _command_entry_points as _command_entry_points  # re-exported
from ._cli_discovery import _version as _version  # re-exported (tests patch them here)
from ._cli_output import UsageError, escape
from ._errors import AperionBusError, ConfigError, PluginLoadError, PluginNotFoundError
from ._hookspecs import PROJECT_NAME, HookSpecs
from ._plugins import PLUGIN_GROUP, PluginSkippedWarning, _entry_points, _load

__all__ = ["CLI_GROUP", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

logger = logging.getLogger("aperion_bus")


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

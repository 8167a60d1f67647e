"""``aperion-bus inspect``: serve the inspector on the files the config names."""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any, Final

from aperion_bus import hookimpl, load_config
from aperion_bus._cli_output import UsageError, escape

from ._app import Inspector, create_app
from ._index import IndexFileError

__all__ = ["add_cli_commands", "add_inspect_command", "is_loopback"]

DEFAULT_PORT: Final = 8790
DEFAULT_LOG: Final = "events.jsonl"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: any free port), got {text!r}")
    return value


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _type, _proto, _name, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _cmd_inspect(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config) if args.config else None)
    if not is_loopback(args.host) and not args.allow_remote:
        raise UsageError(
            f"--host {args.host} would let other machines read the audit log: pass "
            "--allow-remote as well to mean it (the default, 127.0.0.1, is this machine only)"
        )
    audit = config.settings.get("audit", {})
    dlq = config.settings.get("dlq", {})
    log = Path(args.log or str(audit.get("path", DEFAULT_LOG)))
    dlq_path = args.dlq or dlq.get("path")
    inspector = Inspector(
        log=log,
        dlq=Path(str(dlq_path)) if dlq_path else None,
        config=Path(args.config) if args.config else config.source,
        allow_actions=args.allow_actions,
        index_path=Path(args.index) if args.index else None,
    )
    if not is_loopback(args.host):
        print(
            f"aperion-bus: warning: serving on {escape(args.host)}: anyone who can reach it and "
            "has the token can read the audit log" + (
                " and retry or purge dead letters" if args.allow_actions else ""
            ) + "; the connection is not encrypted",
            file=sys.stderr,
        )
    show = sys.stderr.isatty() and not args.quiet
    if show:
        print(f"indexing {escape(log)} ...", file=sys.stderr, end="", flush=True)
    t0 = time.perf_counter()
    try:
        added = inspector.refresh(force=True)
    except IndexFileError as exc:
        raise OSError(str(exc)) from None
    if show:
        print(f" {added} new records in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}/?token={inspector.token}"
    if args.json:
        print(json.dumps({
            "url": url, "host": args.host, "port": port, "read_only": not args.allow_actions,
            "log": str(log), "dlq": None if inspector.dlq is None else str(inspector.dlq),
        }), flush=True)
    else:
        mode = "actions allowed" if args.allow_actions else "read-only"
        print(f"aperion-bus inspector ({mode}): {url}", flush=True)
        if not args.quiet:
            print("  open that URL (it holds this run's token); Ctrl-C stops", flush=True)
    _serve(inspector, sock)
    return 0


def _serve(inspector: Inspector, sock: socket.socket) -> None:
    import uvicorn

    app = create_app(inspector)
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off",
        timeout_graceful_shutdown=1,
    ))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        inspector.close()


@hookimpl
def add_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """The ``aperion_bus.cli`` entry point ``inspect``."""
    add_inspect_command(subparsers)


def add_inspect_command(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``inspect`` to the ``aperion-bus`` command line."""
    p = subparsers.add_parser(
        "inspect",
        help="serve a local web view of the audit log and the dead letters",
        description="Serve the inspector: the audit log's timeline, one request's causation "
        "tree, handler latency, the dead letters. Prints the URL to open (with this run's "
        "token).",
    )
    p.add_argument("--log", help="the audit log (default: [plugins.audit] path in the config, "
                   "else events.jsonl)")
    p.add_argument("--dlq", help="the DLQ's SQLite file (default: [plugins.dlq] path)")
    p.add_argument("--index", help="the index file (default: <log>.inspector.sqlite)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; another one needs "
                   "--allow-remote)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other than loopback (prints a warning)")
    p.add_argument("--allow-actions", action="store_true",
                   help="allow retrying, deleting and purging dead letters (default read-only)")
    p.set_defaults(func=_cmd_inspect)

"""``aperion-bus log tail`` and ``aperion-bus log query``."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from aperion_bus import load_config

from ._reader import follow_records, get_records

__all__ = ["add_log_commands", "format_table", "parse_since"]

DEFAULT_PATH: Final = "events.jsonl"
_REL = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PAYLOAD_WIDTH: Final = 60


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: seconds since the epoch (``1700000000.5``), ISO 8601
    (``2024-05-01T12:00:00``, naive = local time) or an age (``30s``, ``15m``, ``2h``, ``1d``)."""
    text = text.strip()
    m = _REL.fullmatch(text)
    if m:
        base = _dt.datetime.now().timestamp() if now is None else now
        return base - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --since {text!r}: use seconds since the epoch, an ISO 8601 time "
            "(2024-05-01T12:00:00) or an age such as 30s, 15m, 2h, 1d"
        ) from None


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _when(ts: object) -> str:
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return "?"
    try:
        t = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    except (OverflowError, OSError, ValueError):
        return "?"
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _payload(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    if len(text) > _PAYLOAD_WIDTH:
        text = text[: _PAYLOAD_WIDTH - 1] + "…"
    return text


_COLUMNS: Final = ("time (UTC)", "event_type", "event_id", "correlation_id", "source", "payload")


def format_table(records: Iterable[dict[str, Any]]) -> str:
    """A table for people: time (UTC), type, id, correlation id, source, payload (cut short)."""
    rows = [
        (
            _when(r.get("timestamp")),
            _cell(r.get("event_type")),
            _cell(r.get("event_id")),
            _cell(r.get("correlation_id")),
            _cell(r.get("source")),
            _payload(r.get("payload")),
        )
        for r in records
    ]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _log_path(args: argparse.Namespace) -> Path:
    if args.path:
        return Path(args.path)
    config = load_config(Path(args.config) if getattr(args, "config", None) else None)
    path = config.settings.get("audit", {}).get("path", DEFAULT_PATH)
    return Path(str(path))


def _emit(records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for r in records:
            print(_json_line(r))
    elif records:
        print(format_table(records))


def _cmd_tail(args: argparse.Namespace) -> int:
    path = _log_path(args)
    if not path.exists() and not args.follow:
        print(f"error: no audit log at {path}", file=sys.stderr)
        return 1
    records = get_records(path, limit=args.n) if path.exists() else []
    records.reverse()  # oldest first, like tail
    if records or args.json:
        _emit(records, args.json)
    else:
        print("(the audit log is empty)")
    if not args.follow:
        return 0
    sys.stdout.flush()
    stop = threading.Event()
    try:
        for rec in follow_records(path, stop, interval=args.interval):
            if args.json:
                print(_json_line(rec), flush=True)
            else:
                print(format_table([rec]).split("\n", 1)[1], flush=True)
    except KeyboardInterrupt:
        stop.set()
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    path = _log_path(args)
    if not path.exists():
        print(f"error: no audit log at {path}", file=sys.stderr)
        return 1
    records = get_records(
        path,
        event_type=args.type,
        since=args.since,
        limit=args.limit,
        correlation_id=args.correlation_id,
    )
    if records or args.json:
        _emit(records, args.json)
    else:
        print("(no matching records)")
    return 0


def add_log_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``log tail`` and ``log query`` to the ``aperion-bus`` command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--path",
        help="the audit log (default: [plugins.audit] path in the config, else events.jsonl)",
    )
    common.add_argument(
        "--json", action="store_true", help="print JSON lines (one record each) instead of a table"
    )
    log = subparsers.add_parser("log", help="read the audit log (aperion-bus-audit)")
    log_sub = log.add_subparsers(dest="log_command", metavar="SUBCOMMAND")
    log.set_defaults(func=lambda _args: (log.print_help(), 2)[1])

    tail = log_sub.add_parser(
        "tail", parents=[common], help="the last records, oldest first; --follow for new ones"
    )
    tail.add_argument(
        "-n", type=_positive_int, default=10, metavar="N", help="how many records (default 10)"
    )
    tail.add_argument(
        "-f", "--follow", action="store_true", help="keep printing records as they are written"
    )
    tail.add_argument("--interval", type=float, default=0.25, help=argparse.SUPPRESS)
    tail.set_defaults(func=_cmd_tail)

    query = log_sub.add_parser(
        "query",
        parents=[common],
        help="records matching filters, newest first: trace a request with --correlation-id",
    )
    query.add_argument("--type", help="event type, or a glob such as 'user.*'")
    query.add_argument("--correlation-id", help="only records with this correlation id")
    query.add_argument(
        "--since",
        type=parse_since,
        help="only records at or after: epoch seconds, ISO 8601, or an age (30s, 15m, 2h, 1d)",
    )
    query.add_argument(
        "--limit", type=_positive_int, default=100, help="at most this many (default 100)"
    )
    query.set_defaults(func=_cmd_query)

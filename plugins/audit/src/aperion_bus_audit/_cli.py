"""``aperion-bus log tail``, ``log query`` and ``log trace``."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from aperion_bus import hookimpl, load_config
from aperion_bus._cli_output import escape, format_rows, format_time, json_document, json_line

from ._reader import query_records, tail_records

__all__ = ["add_cli_commands", "add_log_commands", "format_table", "parse_since"]

DEFAULT_PATH: Final = "events.jsonl"
_REL = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PAYLOAD_WIDTH: Final = 60
_ERROR_EVENT: Final = "system.handler_error"
_RAW_UNSAFE: Final = (b"\x7f", b"\r", b"\t", b"\x0b", b"\x0c")


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


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of records (0 for all), got {text!r}"
        ) from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (0 for all), got {text!r}")
    return n


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _payload(value: object) -> str:
    text = escape(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr))
    if len(text) > _PAYLOAD_WIDTH:
        text = text[: _PAYLOAD_WIDTH - 1] + "…"
    return text


_COLUMNS: Final = ("time (UTC)", "event_type", "event_id", "correlation_id", "source", "payload")


def _row(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        format_time(r.get("timestamp")),
        _cell(r.get("event_type")),
        _cell(r.get("event_id")),
        _cell(r.get("correlation_id")),
        _cell(r.get("source")),
        _payload(r.get("payload")),
    )


def format_table(records: Iterable[dict[str, Any]]) -> str:
    """A table for people: time (UTC), type, id, correlation id, source, payload (cut short);
    control characters escaped (``\\x1b``)."""
    return "\n".join(table_lines(records))


def table_lines(records: Iterable[dict[str, Any]], header: bool = True) -> Iterator[str]:
    """The lines of :func:`format_table`, streamed (columns sized on the first rows)."""
    lines = iter(format_rows(_COLUMNS, (_row(r) for r in records)))
    if not header:
        next(lines, None)
    return lines


def _json_bytes(line: bytes, rec: dict[str, Any]) -> str:
    """The record as one JSON line: the stored line itself when it is plain ASCII (no DEL),
    else re-encoded with every unsafe character escaped."""
    line = line.strip()
    if line.isascii() and not any(c in line for c in _RAW_UNSAFE):
        # valid JSON has no raw control character inside a string (json.loads refused it
        # otherwise); only blanks between tokens could be one
        return line.decode("ascii")
    return json_line(rec)


def _log_path(args: argparse.Namespace) -> Path:
    if args.path:
        return Path(args.path)
    config = load_config(Path(args.config) if getattr(args, "config", None) else None)
    path = config.settings.get("audit", {}).get("path", DEFAULT_PATH)
    return Path(str(path))


def _print_records(pairs: Iterable[tuple[dict[str, Any], bytes]], args: argparse.Namespace,
                   empty: str) -> int:
    out = sys.stdout
    n = 0
    if args.json:
        for rec, raw in pairs:
            out.write(_json_bytes(raw, rec) + "\n")
            n += 1
        return n

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal n
        for rec, _line in pairs:
            n += 1
            yield rec

    lines = table_lines(counted())
    head: str | None = next(lines)
    for text in lines:
        if head is not None:
            out.write(head + "\n")
            head = None
        out.write(text + "\n")
    if n == 0 and not args.quiet:
        print(empty)
    return n


def _cmd_tail(args: argparse.Namespace) -> int:
    path = _log_path(args)
    if not path.exists() and not args.follow:
        print(f"error: no audit log at {escape(path)}", file=sys.stderr)
        return 1
    stop = threading.Event() if args.follow else None
    records = tail_records(path, args.n, stop, interval=args.interval)
    out = sys.stdout
    if stop is None:
        pairs = ((rec, b"") for rec in records)
        if args.json:
            for rec, _ in pairs:
                out.write(json_line(rec) + "\n")
        else:
            _print_records(pairs, args, "(the audit log is empty)")
        return 0
    header = not args.json
    try:
        for rec in records:
            if args.json:
                out.write(json_line(rec) + "\n")
            else:
                for line in table_lines([rec], header=header):
                    out.write(line + "\n")
                header = False
            out.flush()
    except KeyboardInterrupt:
        stop.set()
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    path = _log_path(args)
    if not path.exists():
        print(f"error: no audit log at {escape(path)}", file=sys.stderr)
        return 1
    limit = None if args.all or args.limit == 0 else args.limit
    pairs = query_records(
        path,
        event_type=args.type,
        since=args.since,
        limit=limit,
        correlation_id=args.correlation_id,
    )
    _print_records(pairs, args, "(no matching records)")
    return 0


def _trace_tree(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of one request as a forest by ``causation_id``: nodes ``{"event": record,
    "children": [...]}``, oldest first; ``system.handler_error`` records become the
    ``failures`` of the event they report on."""
    records = sorted(records, key=lambda r: _num(r.get("timestamp")))
    nodes: dict[str, dict[str, Any]] = {}
    order: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for r in records:
        if r.get("event_type") == _ERROR_EVENT:
            errors.append(r)
            continue
        node: dict[str, Any] = {"event": r, "failures": [], "children": []}
        order.append(node)
        eid = r.get("event_id")
        if isinstance(eid, str) and eid not in nodes:
            nodes[eid] = node
    roots: list[dict[str, Any]] = []
    for node in order:
        cause = node["event"].get("causation_id")
        parent = nodes.get(cause) if isinstance(cause, str) else None
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent["children"].append(node)
    for err in errors:
        payload = err.get("payload")
        about = payload.get("event_id") if isinstance(payload, dict) else None
        target = nodes.get(about) if isinstance(about, str) else None
        if target is None:
            cause = err.get("causation_id")
            target = nodes.get(cause) if isinstance(cause, str) else None
        if target is None:
            roots.append({"event": err, "failures": [], "children": []})
        else:
            target["failures"].append(err)
    return roots


def _num(v: object) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _trace_lines(nodes: list[dict[str, Any]], t0: float, depth: int = 0) -> Iterator[str]:
    pad = "  " * depth
    for node in nodes:
        r = node["event"]
        dt = (_num(r.get("timestamp")) - t0) * 1000.0
        yield (
            f"{pad}{'└─ ' if depth else ''}{_cell(r.get('event_type'))}  +{dt:.1f} ms  "
            f"id={_cell(r.get('event_id'))}  source={_cell(r.get('source'))}  "
            f"payload={_payload(r.get('payload'))}"
        )
        for err in node["failures"]:
            p = err.get("payload")
            p = p if isinstance(p, dict) else {}
            yield (
                f"{pad}   ✗ {p.get('reason', 'failed')}: handler {_cell(p.get('handler'))}: "
                f"{_cell(p.get('error_type'))}: {_cell(p.get('error'))}"
            )
        yield from _trace_lines(node["children"], t0, depth + 1)


def _trace_json(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": node["event"],
        "failures": node["failures"],
        "children": [_trace_json(c) for c in node["children"]],
    }


def _cmd_trace(args: argparse.Namespace) -> int:
    path = _log_path(args)
    if not path.exists():
        print(f"error: no audit log at {escape(path)}", file=sys.stderr)
        return 1
    records = [rec for rec, _ in query_records(path, correlation_id=args.correlation_id)]
    if not records:
        print(
            f"error: no records with correlation id {escape(args.correlation_id)!s} in "
            f"{escape(path)}",
            file=sys.stderr,
        )
        return 1
    roots = _trace_tree(records)
    if args.json:
        doc = {
            "correlation_id": args.correlation_id,
            "records": len(records),
            "roots": [_trace_json(n) for n in roots],
        }
        print(json_document(doc))
        return 0
    t0 = min(_num(r.get("timestamp")) for r in records)
    print(f"request {escape(args.correlation_id)}: {len(records)} records, from {format_time(t0)}")
    for line in _trace_lines(roots, t0):
        print(escape(line))
    return 0


@hookimpl
def add_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """The ``aperion_bus.cli`` entry point ``log``: adds ``log tail | query | trace``."""
    add_log_commands(subparsers)


def add_log_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``log tail`` and ``log query`` to the ``aperion-bus`` command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--path",
        help="the audit log (default: [plugins.audit] path in the config, else events.jsonl)",
    )
    log = subparsers.add_parser("log", help="read the audit log (aperion-bus-audit)")
    log_sub = log.add_subparsers(dest="log_command", metavar="SUBCOMMAND")
    log.set_defaults(func=lambda _args: (log.print_help(), 2)[1])
    log.epilog = "--json prints JSON lines (one record each) instead of a table."

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
        help="records matching filters, newest first, streamed",
    )
    query.add_argument("--type", help="event type, or a glob such as 'user.*'")
    query.add_argument("--correlation-id", help="only records with this correlation id")
    query.add_argument(
        "--since",
        type=parse_since,
        help="only records at or after: epoch seconds, ISO 8601, or an age (30s, 15m, 2h, 1d)",
    )
    query.add_argument(
        "--limit", type=_limit, default=100, help="at most this many (default 100; 0: all)"
    )
    query.add_argument("--all", action="store_true", help="every matching record (--limit 0)")
    query.set_defaults(func=_cmd_query)

    trace = log_sub.add_parser(
        "trace",
        parents=[common],
        help="one request as a tree by causation id: which handler emitted what, failures",
    )
    trace.add_argument("correlation_id", metavar="CORRELATION_ID")
    trace.set_defaults(func=_cmd_trace)

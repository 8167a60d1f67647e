"""``aperion-bus dlq list | show ID | retry [ID|--all] | purge --older-than HOURS | stats``."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from aperion_bus import ConfigError, EventBus, load_config

from ._entry import DeadLetter
from ._errors import DLQError, EntryNotFoundError
from ._queue import DeadLetterQueue, coerce_reason

__all__ = ["add_commands"]

_NO_PATH = (
    "no DLQ file to open: pass --path, or set `path` under [plugins.dlq] in the config ({where}). "
    "A DLQ without a path is in memory: it lives only inside the process that created it and "
    "cannot be reached from the command line."
)


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    config = load_config(Path(args.config) if args.config else None)
    where = str(config.source) if config.source else "no config file found"
    return dict(config.settings.get("dlq", {})), where


def _open(args: argparse.Namespace) -> DeadLetterQueue:
    settings, where = _settings(args)
    path = args.path or settings.get("path")
    if not path:
        raise DLQError(_NO_PATH.format(where=where))
    if not Path(path).is_file():
        raise DLQError(
            f"no DLQ database at {str(path)!r} (the dlq plugin creates it when a bus with a "
            "`path` setting starts)"
        )
    try:
        return DeadLetterQueue(
            max_size=settings.get("max_size", 1000),
            path=path,
            busy_timeout=settings.get("busy_timeout", 10.0),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[plugins.dlq] in {where}: {exc}") from None


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _cmd_list(args: argparse.Namespace) -> int:
    with _open(args) as dlq:
        entries = dlq.get_by_reason(args.reason) if args.reason else dlq.get_all()
    if args.json:
        for e in entries:
            print(json.dumps(e.to_dict(), ensure_ascii=False, default=repr))
        return 0
    if not entries:
        print("(the DLQ is empty)")
        return 0
    rows = [("id", "reason", "event_type", "handler", "attempts", "last_failed", "error")]
    for e in entries:
        rows.append((e.id, e.reason.value, e.event_type, e.handler_name or "-", str(e.attempts),
                     _when(e.last_failed_at), _short(e.error, 60)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    return 0


def _show(e: DeadLetter) -> None:
    ev = e.event
    print(f"id:              {e.id}")
    print(f"reason:          {e.reason.value}")
    if e.original_reason is not None:
        print(f"original reason: {e.original_reason.value}")
    print(f"event:           {ev.event_type} (event_id {ev.event_id})")
    print(f"correlation_id:  {ev.correlation_id}")
    print(f"source:          {ev.source}")
    print(f"handler:         {e.handler_name or '-'} (subscription {e.subscription_id or '-'})")
    if e.failed_handlers:
        print(f"failed handlers: {', '.join(e.failed_handlers)}")
    print(f"attempts:        {e.attempts}")
    print(f"first failed:    {_when(e.first_failed_at)}")
    print(f"last failed:     {_when(e.last_failed_at)}")
    print(f"error:           {e.error}")
    print("payload:")
    print(json.dumps(ev.payload, indent=2, ensure_ascii=False, default=repr))
    if e.traceback:
        print("traceback:")
        print(e.traceback.rstrip())


def _cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as dlq:
        entry = dlq.get(args.id)
    if entry is None:
        raise EntryNotFoundError(f"no DLQ entry {args.id!r} (see `aperion-bus dlq list`)")
    if args.json:
        print(json.dumps(entry.to_dict(), ensure_ascii=False, indent=2, default=repr))
    else:
        _show(entry)
    return 0


class ProgressBar:
    """A one-line text progress bar, redrawn with carriage returns."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width

    def __call__(self, done: int, total: int) -> None:
        filled = self.width if total == 0 else self.width * done // total
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\rretrying [{bar}] {done}/{total}{end}")
        self.stream.flush()


def _cmd_retry(args: argparse.Namespace) -> int:
    if (args.id is None) == (not args.all):
        raise DLQError("give either an entry ID or --all")
    with _open(args) as dlq:
        bus = EventBus.from_config(args.config)
        try:
            if args.id is not None:
                ok = dlq.retry(args.id, bus)
                if ok:
                    print(f"{args.id}: retried, the handler succeeded; entry removed")
                    return 0
                entry = dlq.get(args.id)
                detail = "" if entry is None else f" (attempts {entry.attempts}): {entry.error}"
                print(f"{args.id}: the handler failed again{detail}")
                return 1
            show = args.progress if args.progress is not None else sys.stderr.isatty()
            summary = dlq.retry_all(
                bus,
                max_retries=args.max_retries,
                backoff=args.backoff,
                max_backoff=args.max_backoff,
                progress=ProgressBar(sys.stderr) if show else None,
            )
        finally:
            bus.shutdown()
    print(
        f"succeeded {summary.succeeded}, failed {summary.failed}, "
        f"skipped (max retries reached) {summary.skipped}, "
        f"not retryable {summary.not_retryable}, handler not found {summary.missing_handler}, "
        f"being retried elsewhere {summary.in_progress}"
    )
    return 0 if summary.failed == 0 and summary.missing_handler == 0 else 1


def _cmd_purge(args: argparse.Namespace) -> int:
    with _open(args) as dlq:
        n = dlq.clear_older_than(hours=args.older_than)
    noun = "entry" if n == 1 else "entries"
    print(f"removed {n} {noun} last failed more than {args.older_than} h ago")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as dlq:
        print(json.dumps(dlq.get_stats(), indent=2, sort_keys=True))
    return 0


def _reason(text: str) -> str:
    try:
        return coerce_reason(text).value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of hours, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"hours must be >= 0, got {text!r}")
    return value


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``dlq`` and its subcommands to the ``aperion-bus`` command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--path", help="the DLQ's SQLite file (default: [plugins.dlq] path in the config)"
    )
    dlq = subparsers.add_parser("dlq", help="inspect, retry and purge the dead-letter queue")
    sub = dlq.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND")

    p = sub.add_parser("list", parents=[common], help="list the entries, oldest first")
    p.add_argument("--reason", type=_reason, help="only entries with this failure reason")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("show", parents=[common], help="show one entry with its traceback")
    p.add_argument("id", help="the entry id (see `dlq list`)")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser(
        "retry", parents=[common],
        help="re-run the failed handler of one entry, or of every entry (--all); the handlers "
        "come from the config's handler entry points",
    )
    p.add_argument("id", nargs="?", help="the entry id")
    p.add_argument("--all", action="store_true", help="retry every entry")
    p.add_argument("--max-retries", type=int, default=3,
                   help="with --all: skip entries retried this many times (default 3)")
    p.add_argument("--backoff", type=float, default=None,
                   help="with --all: base delay in seconds for exponential backoff")
    p.add_argument("--max-backoff", type=float, default=300.0,
                   help="with --all: longest delay in seconds (default 300)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(func=_cmd_retry)

    p = sub.add_parser("purge", parents=[common], help="remove old entries")
    p.add_argument("--older-than", type=_hours, required=True, metavar="HOURS",
                   help="remove entries whose last failure is older than HOURS")
    p.set_defaults(func=_cmd_purge)

    p = sub.add_parser("stats", parents=[common], help="size, reasons, event types, evictions")
    p.set_defaults(func=_cmd_stats)

    def usage(_args: argparse.Namespace) -> int:
        dlq.print_help()
        return 2

    dlq.set_defaults(func=usage)

"""``aperion-bus dlq list | show ID | retry [ID|--all] | purge --older-than HOURS | stats``."""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aperion_bus import ConfigError, EventBus, hookimpl, load_config
from aperion_bus._cli_output import (
    Progress,
    UsageError,
    confirm,
    escape,
    format_rows,
    json_document,
    json_line,
)

from ._entry import DeadLetter
from ._errors import DLQError, EntryNotFoundError
from ._queue import DeadLetterQueue, coerce_reason

__all__ = ["add_cli_commands", "add_commands"]

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
    limit = None if args.all or args.limit == 0 else args.limit
    with _open(args) as dlq:
        entries = dlq.iter_entries(args.reason)
        shown = entries if limit is None else itertools.islice(entries, limit + 1)
        n = 0
        more = False

        def counted() -> Iterator[DeadLetter]:
            nonlocal n, more
            for e in shown:
                if limit is not None and n >= limit:
                    more = True
                    return
                n += 1
                yield e

        if args.json:
            for e in counted():
                sys.stdout.write(json_line(e.to_dict()) + "\n")
            return 0
        rows = (
            (e.id, e.reason.value, e.event_type, e.handler_name or "-", str(e.attempts),
             _when(e.last_failed_at), _short(e.error, 60))
            for e in counted()
        )
        lines = format_rows(
            ("id", "reason", "event_type", "handler", "attempts", "last_failed", "error"), rows
        )
        it = iter(lines)
        head: str | None = next(it)
        for line in it:
            if head is not None:
                print(head)
                head = None
            print(line)
    if args.quiet:
        return 0
    if n == 0:
        print("(the DLQ is empty)" if args.reason is None else "(no entries with that reason)")
    else:
        print(f"{n} entr{'y' if n == 1 else 'ies'}" + (
            " shown; more: --limit N or --all" if more else ""
        ))
    return 0


def _show(e: DeadLetter) -> None:
    ev = e.event
    x = escape
    print(f"id:              {x(e.id)}")
    print(f"reason:          {e.reason.value}")
    if e.original_reason is not None:
        print(f"original reason: {e.original_reason.value}")
    print(f"event:           {x(ev.event_type)} (event_id {x(ev.event_id)})")
    print(f"correlation_id:  {x(ev.correlation_id)}")
    print(f"source:          {x(ev.source)}")
    print(
        f"handler:         {x(e.handler_name or '-')} "
        f"(subscription {x(e.subscription_id or '-')})"
    )
    if e.failed_handlers:
        print(f"failed handlers: {x(', '.join(e.failed_handlers))}")
    print(f"attempts:        {e.attempts}")
    print(f"first failed:    {_when(e.first_failed_at)}")
    print(f"last failed:     {_when(e.last_failed_at)}")
    print(f"error:           {x(e.error)}")
    print("payload:")
    print(x(json.dumps(ev.payload, indent=2, ensure_ascii=False, default=repr), multiline=True))
    if e.traceback:
        print("traceback:")
        print(x(e.traceback.rstrip(), multiline=True))


def _cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as dlq:
        entry = dlq.get(args.id)
    if entry is None:
        raise EntryNotFoundError(f"no DLQ entry {args.id!r} (see `aperion-bus dlq list`)")
    if args.json:
        print(json_document(entry.to_dict()))
    else:
        _show(entry)
    return 0


def _cmd_retry(args: argparse.Namespace) -> int:
    if (args.id is None) == (not args.all):
        raise DLQError("give either an entry ID or --all")
    progress: Progress | None = None
    with _open(args) as dlq:
        bus = EventBus.from_config(args.config)
        try:
            if args.id is not None:
                ok = dlq.retry(args.id, bus)
                if args.json:
                    entry = None if ok else dlq.get(args.id)
                    print(json_document({
                        "id": args.id, "succeeded": ok,
                        "attempts": None if entry is None else entry.attempts,
                        "error": None if entry is None else entry.error,
                    }))
                    return 0 if ok else 1
                if ok:
                    print(f"{escape(args.id)}: retried, the handler succeeded; entry removed")
                    return 0
                entry = dlq.get(args.id)
                detail = "" if entry is None else f" (attempts {entry.attempts}): {entry.error}"
                print(escape(f"{args.id}: the handler failed again{detail}"))
                return 1
            show = args.progress if args.progress is not None else (
                sys.stderr.isatty() and not args.quiet
            )
            progress = Progress(sys.stderr, "retrying") if show else None
            summary = dlq.retry_all(
                bus,
                max_retries=args.max_retries,
                backoff=args.backoff,
                max_backoff=args.max_backoff,
                progress=progress,
            )
        finally:
            if progress is not None:
                progress.close()
            bus.shutdown()
    if args.json:
        print(json_document({
            "succeeded": summary.succeeded, "failed": summary.failed,
            "skipped": summary.skipped, "not_retryable": summary.not_retryable,
            "missing_handler": summary.missing_handler, "in_progress": summary.in_progress,
        }))
    else:
        print(
            f"succeeded {summary.succeeded}, failed {summary.failed}, "
            f"skipped (max retries reached) {summary.skipped}, "
            f"not retryable {summary.not_retryable}, handler not found {summary.missing_handler}, "
            f"being retried elsewhere {summary.in_progress}"
        )
    return 0 if summary.failed == 0 and summary.missing_handler == 0 else 1


def noun(k: int) -> str:
    return "entry" if k == 1 else "entries"


def _cmd_purge(args: argparse.Namespace) -> int:
    with _open(args) as dlq:
        n = dlq.count_older_than(args.older_than)
        if args.dry_run:
            if args.json:
                print(json_document({"would_remove": n, "older_than_hours": args.older_than}))
            else:
                print(f"would remove {n} {noun(n)} last failed more than {args.older_than} h ago")
            return 0
        if n and not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"dlq purge would remove {n} {noun(n)}: pass --yes to confirm "
                    "(or --dry-run to see the count); not asking: stdin is not a terminal"
                )
            if not confirm(f"remove {n} {noun(n)} last failed more than {args.older_than} h ago?"):
                print("nothing removed", file=sys.stderr)
                return 1
        removed = dlq.clear_older_than(hours=args.older_than)
    if args.json:
        print(json_document({"removed": removed, "older_than_hours": args.older_than}))
    else:
        print(f"removed {removed} {noun(removed)} last failed more than {args.older_than} h ago")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as dlq:
        stats = dlq.get_stats()
    if args.json:
        print(json_document(stats))
        return 0
    print(f"size:      {stats['size']} (max {stats['max_size']})")
    print(f"evicted:   {stats['evicted']}")
    print(f"path:      {escape(stats['path'])}")
    for key, title in (("by_reason", "by reason"), ("by_event_type", "by event type")):
        print(f"{title}:")
        for name, count in sorted(stats[key].items()):
            print(f"  {escape(name)}: {count}")
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


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of entries, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (0 for all), got {text!r}")
    return value


@hookimpl
def add_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """The ``aperion_bus.cli`` entry point ``dlq``."""
    add_commands(subparsers)


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
    p.add_argument("--limit", type=_limit, default=100,
                   help="at most this many (default 100; 0: all); streamed")
    p.add_argument("--all", action="store_true", help="every entry (--limit 0)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("show", parents=[common], help="show one entry with its traceback")
    p.add_argument("id", help="the entry id (see `dlq list`)")
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
                   help="progress line on stderr: count, rate, ETA, redrawn at most 10 times "
                   "a second (default: when stderr is a terminal and not -q)")
    p.set_defaults(func=_cmd_retry)

    p = sub.add_parser("purge", parents=[common], help="remove old entries")
    p.add_argument("--older-than", type=_hours, required=True, metavar="HOURS",
                   help="remove entries whose last failure is older than HOURS")
    p.add_argument("-y", "--yes", action="store_true",
                   help="do not ask (needed when stdin is not a terminal)")
    p.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    p.set_defaults(func=_cmd_purge)

    p = sub.add_parser("stats", parents=[common], help="size, reasons, event types, evictions")
    p.set_defaults(func=_cmd_stats)

    def usage(_args: argparse.Namespace) -> int:
        dlq.print_help()
        return 2

    dlq.set_defaults(func=usage)

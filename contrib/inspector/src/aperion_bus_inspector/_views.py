"""What the pages show, computed from the index: a request's causation tree and waterfall,
handler latency percentiles and failure rates over time. No HTML here (see the templates)."""

from __future__ import annotations

import datetime as _dt
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aperion_bus_audit import HANDLER_RECORD_TYPE

from ._index import Row

__all__ = [
    "Call",
    "Node",
    "RequestView",
    "build_request",
    "handler_summary",
    "parse_time",
    "percentile",
]

HANDLER_ERROR_EVENT = "system.handler_error"


def parse_time(text: str) -> float | None:
    """A time filter: empty -> None; seconds since the epoch; ISO 8601 (a time without a zone,
    as an HTML ``datetime-local`` input sends it, is UTC, as the pages show times).
    Raises ``ValueError`` with a message for anything else."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"invalid time {text!r}: not a finite number")
        return value
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use ISO 8601 (2026-05-01T12:00:00, UTC unless it has a "
            "zone) or seconds since the epoch"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return when.timestamp()


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(slots=True)
class Call:
    """One handler call of an event, from an ``audit.handler`` record."""

    handler: str
    started: float
    duration: float
    outcome: str
    error: str | None
    record_id: int


@dataclass(slots=True)
class Node:
    """One event of a request, with the handler calls it got and the events it caused."""

    row: Row
    record: dict[str, Any]
    depth: int = 0
    calls: list[Call] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    emitted_by: str | None = None
    failed: bool = False

    @property
    def ts(self) -> float | None:
        return self.row.ts


@dataclass(slots=True)
class RequestView:
    correlation_id: str
    nodes: list[Node]  # depth-first order of the causation tree
    start: float
    span: float
    calls: int
    failures: int
    timeouts: int
    truncated: bool

    def left(self, t: float | None) -> float:
        """Percent from the left of the waterfall."""
        if t is None or self.span <= 0:
            return 0.0
        return max(0.0, min(100.0, (t - self.start) / self.span * 100.0))

    def width(self, duration: float) -> float:
        if self.span <= 0:
            return 100.0
        return max(0.3, min(100.0, duration / self.span * 100.0))


def build_request(
    correlation_id: str, records: Sequence[tuple[Row, dict[str, Any]]], truncated: bool = False
) -> RequestView:
    """The causation tree of one correlation id: events by their ``causation_id``, handler
    calls (``audit.handler`` records) under the event they handled, each child event
    attributed to the handler of its parent that was running when it was emitted."""
    nodes: dict[str, Node] = {}
    order: list[Node] = []
    calls: dict[str, list[Call]] = defaultdict(list)
    failed_events: set[str] = set()
    for row, rec in records:
        payload = rec.get("payload")
        if row.event_type == HANDLER_RECORD_TYPE and isinstance(payload, dict):
            started = _num(payload.get("started"))
            duration = _num(payload.get("duration"))
            target = payload.get("event_id")
            if started is None or duration is None or not isinstance(target, str):
                continue
            outcome = payload.get("outcome")
            error = payload.get("error")
            calls[target].append(Call(
                handler=str(payload.get("handler")),
                started=started,
                duration=max(0.0, duration),
                outcome=outcome if isinstance(outcome, str) else "?",
                error=error if isinstance(error, str) else None,
                record_id=row.id,
            ))
            continue
        if row.event_type == HANDLER_ERROR_EVENT and isinstance(payload, dict):
            target = payload.get("event_id")
            if isinstance(target, str):
                failed_events.add(target)
        node = Node(row=row, record=rec)
        if row.event_id is not None and row.event_id not in nodes:
            nodes[row.event_id] = node
        order.append(node)
    roots: list[Node] = []
    for node in order:
        parent = nodes.get(node.row.causation_id or "")
        if parent is not None and parent is not node:
            parent.children.append(node)
        else:
            roots.append(node)
    n_calls = n_fail = n_timeout = 0
    times: list[float] = []
    for node in order:
        eid = node.row.event_id or ""
        node.calls = sorted(calls.get(eid, []), key=lambda c: c.started)
        node.failed = eid in failed_events or any(c.outcome != "ok" for c in node.calls)
        for c in node.calls:
            n_calls += 1
            n_fail += c.outcome == "error"
            n_timeout += c.outcome == "timeout"
            times += [c.started, c.started + c.duration]
        if node.ts is not None:
            times.append(node.ts)
        parent = nodes.get(node.row.causation_id or "")
        if parent is not None and node.ts is not None:
            for c in parent.calls or sorted(calls.get(parent.row.event_id or "", []),
                                            key=lambda c: c.started):
                if c.started <= node.ts <= c.started + c.duration:
                    node.emitted_by = c.handler
                    break
    flat: list[Node] = []
    seen: set[int] = set()

    def walk(node: Node, depth: int) -> None:
        if id(node) in seen:  # a cycle in hand-edited ids
            return
        seen.add(id(node))
        node.depth = depth
        flat.append(node)
        for child in node.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    start = min(times) if times else 0.0
    span = (max(times) - start) if times else 0.0
    return RequestView(correlation_id, flat, start, span, n_calls, n_fail, n_timeout, truncated)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values, nearest rank; 0.0 for none."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


@dataclass(slots=True)
class Bucket:
    start: float
    calls: int
    failures: int
    p50: float
    p95: float
    p99: float

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


@dataclass(slots=True)
class HandlerStats:
    name: str
    calls: int
    failures: int
    timeouts: int
    p50: float
    p95: float
    p99: float
    max: float
    buckets: list[Bucket]

    @property
    def failure_rate(self) -> float:
        return (self.failures + self.timeouts) / self.calls if self.calls else 0.0


def handler_summary(
    calls: Sequence[tuple[float, str, float, str]], n_buckets: int = 24
) -> tuple[list[HandlerStats], float, float]:
    """Per handler: calls, failures, timeouts, latency percentiles, and the same over
    ``n_buckets`` equal time buckets; with the time range covered."""
    if not calls:
        return [], 0.0, 0.0
    t0 = min(c[0] for c in calls)
    t1 = max(c[0] for c in calls)
    width = (t1 - t0) / n_buckets if t1 > t0 else 1.0
    per: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for started, name, duration, outcome in calls:
        per[name].append((started, duration, outcome))
    out: list[HandlerStats] = []
    for name, items in per.items():
        durations = sorted(d for _, d, _ in items)
        by_bucket: list[list[tuple[float, str]]] = [[] for _ in range(n_buckets)]
        for started, d, outcome in items:
            k = min(n_buckets - 1, int((started - t0) / width))
            by_bucket[k].append((d, outcome))
        buckets = []
        for k, group in enumerate(by_bucket):
            ds = sorted(d for d, _ in group)
            buckets.append(Bucket(
                start=t0 + k * width,
                calls=len(group),
                failures=sum(1 for _, o in group if o != "ok"),
                p50=percentile(ds, 0.5),
                p95=percentile(ds, 0.95),
                p99=percentile(ds, 0.99),
            ))
        out.append(HandlerStats(
            name=name,
            calls=len(items),
            failures=sum(1 for _, _, o in items if o == "error"),
            timeouts=sum(1 for _, _, o in items if o == "timeout"),
            p50=percentile(durations, 0.5),
            p95=percentile(durations, 0.95),
            p99=percentile(durations, 0.99),
            max=durations[-1],
            buckets=buckets,
        ))
    out.sort(key=lambda h: (-h.failure_rate, -h.p99, h.name))
    return out, t0, t1

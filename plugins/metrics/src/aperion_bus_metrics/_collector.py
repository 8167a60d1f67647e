"""The :class:`MetricsCollector`: counts and latency histograms, lock-free on the hot path.

Each thread records into its own state (a ``threading.local``): only that thread writes it, so
no lock is taken per measurement; :meth:`MetricsCollector.get_snapshot` merges the states of
every thread. The states of threads that ended are folded into one, so memory is bounded by
the number of live threads times the number of distinct labels (``max_label_values``).
"""

from __future__ import annotations

import bisect
import threading
from typing import Any, Final

from ._backends import MetricsBackend
from ._histogram import LOWER_BOUNDS, N_BUCKETS, percentile

__all__ = ["OTHER", "MetricsCollector"]

#: The label that distinct values beyond ``max_label_values`` are folded into.
OTHER: Final = "other"
_LOWER: Final = LOWER_BOUNDS
_bucket = bisect.bisect_right


class _Cell:
    """One histogram (and its sum) for one label in one thread."""

    __slots__ = ("buckets", "label", "total")

    def __init__(self, label: str) -> None:
        self.label = label
        self.buckets = [0] * N_BUCKETS
        self.total = 0.0


class _ThreadState:
    __slots__ = ("dispatch", "emitted", "handlers", "thread")

    def __init__(self, thread: threading.Thread | None) -> None:
        self.thread = thread
        #: raw handler name -> its cell (only admitted names are cached)
        self.handlers: dict[str, _Cell] = {}
        self.dispatch: dict[str, _Cell] = {}
        #: event type label -> count
        self.emitted: dict[str, int] = {}


class _Labels:
    """Admits up to ``limit`` distinct values; later ones become ``OTHER``."""

    __slots__ = ("limit", "seen")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def admit(self, value: str) -> str:
        seen = self.seen
        if value in seen:
            return value
        if len(seen) < self.limit:
            seen.add(value)
            return value
        return OTHER


def _merge_cell(into: dict[str, _Cell], label: str, buckets: list[int], total: float) -> None:
    cell = into.get(label)
    if cell is None:
        cell = into[label] = _Cell(label)
    b = cell.buckets
    for i, n in enumerate(buckets):
        if n:
            b[i] += n
    cell.total += total


def _summary(buckets: list[int], total: float) -> dict[str, Any]:
    count = sum(buckets)
    return {
        "count": count,
        "total_duration": total,
        "avg_duration": total / count if count else 0.0,
        "p50": percentile(buckets, 0.50, count) or 0.0,
        "p95": percentile(buckets, 0.95, count) or 0.0,
        "p99": percentile(buckets, 0.99, count) or 0.0,
    }


class MetricsCollector:
    """Counts emitted and dropped events, handler calls, failures and latencies.

    ``backend`` (optional) also receives every measurement (:class:`InMemoryMetrics`,
    :class:`CallbackMetrics`, :class:`PrometheusMetrics` or your :class:`MetricsBackend`).
    :meth:`get_snapshot` works whatever the backend. ``max_label_values`` bounds the number of
    distinct event types, handler names and drop/failure reasons kept (each): the values seen
    after that are counted under ``"other"``. Thread-safe.
    """

    def __init__(
        self, backend: MetricsBackend | None = None, *, max_label_values: int = 200
    ) -> None:
        if backend is not None and not isinstance(backend, MetricsBackend):
            raise TypeError(
                "backend must be a MetricsBackend (InMemoryMetrics, CallbackMetrics, "
                f"PrometheusMetrics or a subclass) or None, got {type(backend).__name__}"
            )
        if isinstance(max_label_values, bool) or not isinstance(max_label_values, int):
            raise TypeError(
                f"max_label_values must be an int, got {type(max_label_values).__name__}"
            )
        if max_label_values < 1:
            raise ValueError(f"max_label_values must be >= 1, got {max_label_values}")
        self.backend = backend
        self.max_label_values = max_label_values
        self._lock = threading.Lock()
        self._tl = threading.local()
        self._states: list[_ThreadState] = []
        self._retired = _ThreadState(None)
        self._types = _Labels(max_label_values)
        self._handlers = _Labels(max_label_values)
        self._reasons = _Labels(max_label_values)
        # rare events, kept under the lock
        self._dropped: dict[str, int] = {}
        self._dropped_by_reason: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._timeouts: dict[str, int] = {}
        #: timeouts whose call was already recorded as completed (it finished late, before
        #: the bus reported the timeout): not counted twice as calls, nor as successes
        self._late: dict[str, int] = {}

    # ------------------------------------------------------------------ per-thread state
    def _state(self) -> _ThreadState:
        try:
            return self._tl.state  # type: ignore[no-any-return]
        except AttributeError:
            pass
        st = _ThreadState(threading.current_thread())
        with self._lock:
            self._retire_dead()
            self._states.append(st)
        self._tl.state = st
        return st

    def _retire_dead(self) -> None:
        """Fold the states of ended threads into one (call with the lock held)."""
        live: list[_ThreadState] = []
        retired = self._retired
        for st in self._states:
            t = st.thread
            if t is None or t.is_alive():
                live.append(st)
                continue
            for cells, into in ((st.handlers, retired.handlers), (st.dispatch, retired.dispatch)):
                done: set[int] = set()
                for cell in cells.values():
                    if id(cell) not in done:  # folded names share the "other" cell
                        done.add(id(cell))
                        _merge_cell(into, cell.label, cell.buckets, cell.total)
            for label, n in st.emitted.items():
                retired.emitted[label] = retired.emitted.get(label, 0) + n
        self._states = live

    def _cell(self, table: dict[str, _Cell], raw: str, labels: _Labels) -> _Cell:
        with self._lock:
            label = labels.admit(raw)
        for cell in table.values():
            if cell.label == label:
                break
        else:
            cell = _Cell(label)
        if label == raw:  # cache admitted names only: folded ones are unbounded
            table[raw] = cell
        elif OTHER not in table:
            table[OTHER] = cell
        return cell

    # ------------------------------------------------------------------ recording
    def record_event_emitted(self, event_type: str) -> None:
        """Count one emitted event of ``event_type``."""
        try:
            st: _ThreadState = self._tl.state
        except AttributeError:
            st = self._state()
        em = st.emitted
        n = em.get(event_type)
        if n is None:
            with self._lock:
                event_type = self._types.admit(event_type)
            n = em.get(event_type, 0)
        em[event_type] = n + 1
        backend = self.backend
        if backend is not None:
            backend.event_emitted(event_type)

    def record_handler_call(self, handler: str, duration: float) -> None:
        """Record one completed handler call (successful or not) and its duration (seconds).

        Failures are counted separately, by :meth:`record_handler_failure`.
        """
        try:
            st: _ThreadState = self._tl.state
        except AttributeError:
            st = self._state()
        cell = st.handlers.get(handler)
        if cell is None:
            cell = self._cell(st.handlers, handler, self._handlers)
        cell.buckets[_bucket(_LOWER, duration)] += 1
        cell.total += duration
        backend = self.backend
        if backend is not None:
            backend.handler_call(cell.label, duration)

    def record_dispatch(self, event_type: str, duration: float) -> None:
        """Record how long one event's dispatch to all its handlers took (seconds)."""
        try:
            st: _ThreadState = self._tl.state
        except AttributeError:
            st = self._state()
        cell = st.dispatch.get(event_type)
        if cell is None:
            cell = self._cell(st.dispatch, event_type, self._types)
        cell.buckets[_bucket(_LOWER, duration)] += 1
        cell.total += duration
        backend = self.backend
        if backend is not None:
            backend.dispatch(cell.label, duration)

    def record_event_dropped(self, event_type: str, reason: str = "dropped") -> None:
        """Count one event of ``event_type`` that was not dispatched, and why."""
        with self._lock:
            event_type = self._types.admit(event_type)
            reason = self._reasons.admit(str(reason))
            self._dropped[event_type] = self._dropped.get(event_type, 0) + 1
            self._dropped_by_reason[reason] = self._dropped_by_reason.get(reason, 0) + 1
        backend = self.backend
        if backend is not None:
            backend.event_dropped(event_type, reason)

    def record_handler_failure(
        self, handler: str, event_type: str, *, timeout: bool = False, completed: bool = False
    ) -> None:
        """Count one failed handler call: it raised, or (``timeout=True``) ran out of time.

        A timed-out call counts as one call (a failure, not a success). Pass
        ``completed=True`` when that same call was already given to
        :meth:`record_handler_call` (a sync handler that finished late, before the timeout was
        reported): it is then not counted as a second call nor as a success.
        """
        with self._lock:
            handler = self._handlers.admit(handler)
            event_type = self._types.admit(event_type)
            table = self._timeouts if timeout else self._errors
            table[handler] = table.get(handler, 0) + 1
            if timeout and completed:
                self._late[handler] = self._late.get(handler, 0) + 1
        backend = self.backend
        if backend is not None:
            reason = "handler_timeout" if timeout else "handler_error"
            backend.handler_failed(handler, event_type, reason)

    # ------------------------------------------------------------------ reading
    def get_snapshot(self) -> dict[str, Any]:
        """The counts so far, merged over all threads.

        ``{"events_emitted": {type: n}, "events_dropped": {type: n}, "total_events_emitted": n,
        "total_events_dropped": n, "drop_reasons": {reason: n}, "handler_stats": {handler:
        {"total_calls", "success_count", "failure_count", "error_count", "timeout_count",
        "avg_duration", "total_duration", "p50", "p95", "p99"}}, "dispatch_stats": {type:
        {"count", "avg_duration", "total_duration", "p50", "p95", "p99"}}}``; durations in
        seconds; percentiles within about 6 % (bucketed).
        """
        with self._lock:
            self._retire_dead()
            states = [*self._states, self._retired]
            dropped = dict(self._dropped)
            reasons = dict(self._dropped_by_reason)
            errors = dict(self._errors)
            timeouts = dict(self._timeouts)
            late = dict(self._late)
        emitted: dict[str, int] = {}
        handlers: dict[str, _Cell] = {}
        dispatch: dict[str, _Cell] = {}
        for st in states:
            for label, n in list(st.emitted.items()):
                emitted[label] = emitted.get(label, 0) + n
            for cells, into in ((st.handlers, handlers), (st.dispatch, dispatch)):
                done: set[int] = set()
                for cell in list(cells.values()):
                    if id(cell) not in done:
                        done.add(id(cell))
                        _merge_cell(into, cell.label, list(cell.buckets), cell.total)
        handler_stats: dict[str, dict[str, Any]] = {}
        for name in sorted({*handlers, *errors, *timeouts}):
            found = handlers.get(name)
            s = _summary(found.buckets, found.total) if found else _summary([0], 0.0)
            completed = s.pop("count")
            n_err = errors.get(name, 0)
            n_to = timeouts.get(name, 0)
            n_late = late.get(name, 0)  # timed-out calls also among the completed ones
            handler_stats[name] = {
                "total_calls": completed + n_to - n_late,
                "success_count": max(0, completed - n_err - n_late),
                "failure_count": n_err + n_to,
                "error_count": n_err,
                "timeout_count": n_to,
                **s,
            }
        return {
            "events_emitted": dict(sorted(emitted.items())),
            "events_dropped": dict(sorted(dropped.items())),
            "total_events_emitted": sum(emitted.values()),
            "total_events_dropped": sum(dropped.values()),
            "drop_reasons": dict(sorted(reasons.items())),
            "handler_stats": handler_stats,
            "dispatch_stats": {
                name: _summary(cell.buckets, cell.total) for name, cell in sorted(dispatch.items())
            },
        }

    def reset(self) -> None:
        """Forget every count (label admissions too). Measurements racing with it may be lost."""
        with self._lock:
            for st in [*self._states, self._retired]:
                st.handlers.clear()
                st.dispatch.clear()
                st.emitted.clear()
            for labels in (self._types, self._handlers, self._reasons):
                labels.seen.clear()
            self._dropped.clear()
            self._dropped_by_reason.clear()
            self._errors.clear()
            self._timeouts.clear()
            self._late.clear()

    def __repr__(self) -> str:
        backend = type(self.backend).__name__ if self.backend is not None else None
        return f"<MetricsCollector backend={backend} threads={len(self._states)}>"

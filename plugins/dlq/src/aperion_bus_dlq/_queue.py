"""The :class:`DeadLetterQueue`: storing failures, inspecting them, retrying their handlers."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random as _random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs
from aperion_bus import (
    Event,
    FailureReason,
    HandlerFailure,
    Subscription,
    new_event_id,
)

from ._entry import HANDLER_REASONS, DeadLetter, RetrySummary, error_fields
from ._errors import (
    EntryClaimedError,
    EntryNotFoundError,
    HandlerNotFoundError,
    NotRetryableError,
)
from ._store import MemoryStore, SQLiteStore, Store

if TYPE_CHECKING:
    from aperion_bus import EventBus

__all__ = ["DeadLetterQueue", "coerce_reason"]

_MAX_REPR = 10_000


def coerce_reason(reason: FailureReason | str) -> FailureReason:
    """A :class:`FailureReason` from itself, its value (``"handler_error"``) or its name."""
    if isinstance(reason, FailureReason):
        return reason
    if isinstance(reason, str):
        try:
            return FailureReason(reason.lower())
        except ValueError:
            pass
    valid = ", ".join(r.value for r in FailureReason)
    raise ValueError(f"unknown failure reason {reason!r}; expected one of: {valid}")


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        text = object.__repr__(value)
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "...(truncated)"


def _check_number(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


class DeadLetterQueue:
    """Failed events kept for inspection and retry.

    ``path=None`` (the default) keeps the entries in memory, in this process only. With
    ``path``, they live in a SQLite file (WAL mode) that survives restarts and that several
    processes can write and read at once; the file is created on first use (or by
    :meth:`open`). ``max_size`` bounds the number of entries: adding one to a full queue
    evicts the oldest, and the eviction is counted (``get_stats()["evicted"]``).
    ``busy_timeout``: seconds a write waits for another process's lock before failing.
    ``claim_timeout``: seconds after which the claim of a retry that never finished (its
    process died, or its handler hangs) may be taken over by another retry.
    """

    def __init__(
        self,
        max_size: int = 1000,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = 10.0,
        claim_timeout: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError(f"max_size must be an int, got {type(max_size).__name__}")
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str, a path or None, got {type(path).__name__}")
        if path is not None and not os.fspath(path):
            raise ValueError("path must not be empty (use None for an in-memory queue)")
        _check_number("busy_timeout", busy_timeout, allow_zero=True)
        self.claim_timeout = _check_number("claim_timeout", claim_timeout, allow_zero=False)
        self.max_size = max_size
        self._clock = clock
        self._lock = threading.Lock()
        self._uncopied = 0
        self._store: Store = (
            MemoryStore() if path is None else SQLiteStore(path, busy_timeout=busy_timeout)
        )

    # ------------------------------------------------------------------ life cycle
    @property
    def path(self) -> str | None:
        """The SQLite file, or None for an in-memory queue."""
        return str(self._store.path) if isinstance(self._store, SQLiteStore) else None

    @property
    def persistent(self) -> bool:
        return self._store.persistent

    def open(self) -> None:
        """Open (and if needed create) the SQLite file now; a no-op for a memory queue."""
        if isinstance(self._store, SQLiteStore):
            self._store.open()

    def close(self) -> None:
        """Close the SQLite connection (it reopens on next use); a no-op in memory."""
        self._store.close()

    def __enter__(self) -> DeadLetterQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "memory"
        return f"<DeadLetterQueue {where} max_size={self.max_size}>"

    # ------------------------------------------------------------------ adding
    def add(
        self,
        event: Event,
        reason: FailureReason | str,
        error: BaseException | None = None,
        *,
        handler_name: str | None = None,
        subscription_id: str | None = None,
        failed_handlers: tuple[str, ...] = (),
        attempts: int = 1,
        supersede: bool = False,
    ) -> DeadLetter:
        """Store a new entry and return it.

        ``supersede=True``: the new entry replaces every entry already stored for the same
        ``event_id`` (in one transaction), e.g. a transport's final verdict on an event whose
        earlier deliveries each left their own entries.

        In a SQLite queue, an event whose payload JSON cannot hold is stored with reason
        ``SERIALIZATION_ERROR`` (the original reason in ``original_reason``) and the payload
        replaced by ``{"unserializable_payload": repr(payload)}``; such an entry cannot be
        retried. A memory queue keeps a copy of the event with a deep copy of its payload, so
        that the emitter changing its dict later changes neither the entry nor what ``retry``
        replays; a payload ``copy.deepcopy`` cannot copy is kept as it is (shared), counted in
        ``get_stats()["uncopied_payloads"]``.
        """
        if not isinstance(event, Event):
            raise TypeError(f"event must be an aperion_bus.Event, got {type(event).__name__}")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
        reason = coerce_reason(reason)
        original: FailureReason | None = None
        if self._store.persistent:
            try:
                event.to_jsonl()
            except TypeError:
                event = Event(
                    event.event_type,
                    {"unserializable_payload": _safe_repr(event.payload)},
                    timestamp=event.timestamp,
                    event_id=event.event_id,
                    source=event.source,
                    correlation_id=event.correlation_id,
                    causation_id=event.causation_id,
                )
                original, reason = reason, FailureReason.SERIALIZATION_ERROR
        else:
            try:
                payload = copy.deepcopy(event.payload)
            except Exception:  # a lock, a socket, a broken __deepcopy__: keep it shared
                with self._lock:
                    self._uncopied += 1
            else:
                event = attrs.evolve(event, payload=payload)
        etype, message, tb = error_fields(error)
        now = self._clock()
        entry = DeadLetter(
            id=new_event_id(),
            event=event,
            reason=reason,
            handler_name=handler_name,
            subscription_id=subscription_id,
            error_type=etype,
            error_message=message,
            traceback=tb,
            attempts=attempts,
            first_failed_at=now,
            last_failed_at=now,
            original_reason=original,
            failed_handlers=tuple(failed_handlers),
        )
        self._store.add(entry, self.max_size, supersede)
        return entry

    def add_failure(self, failure: HandlerFailure) -> DeadLetter:
        """Store a handler failure as the bus reports it (``on_handler_error``)."""
        return self.add(
            failure.event,
            failure.reason,
            failure.error,
            handler_name=failure.subscription.name,
            subscription_id=failure.subscription.id,
        )

    # ------------------------------------------------------------------ reading
    def size(self) -> int:
        return self._store.count()

    def __len__(self) -> int:
        return self._store.count()

    def get_all(self) -> list[DeadLetter]:
        """Every entry, oldest first."""
        return self._store.all()

    def get(self, entry_id: str) -> DeadLetter | None:
        """The entry with that id, or None."""
        if not isinstance(entry_id, str):
            raise TypeError(f"entry_id must be a str, got {type(entry_id).__name__}")
        return self._store.get(entry_id)

    def get_by_reason(self, reason: FailureReason | str) -> list[DeadLetter]:
        """The entries with that reason (a ``FailureReason`` or its value), oldest first."""
        return self._store.by_reason(coerce_reason(reason))

    def iter_entries(self, reason: FailureReason | str | None = None) -> Iterator[DeadLetter]:
        """Every entry (or those with ``reason``), oldest first, streamed: a SQLite queue is
        read a batch at a time, so memory stays bounded."""
        return self._store.iter_entries(None if reason is None else coerce_reason(reason))

    def count_older_than(self, hours: float) -> int:
        """How many entries :meth:`clear_older_than` would remove now."""
        hours = _check_number("hours", hours, allow_zero=True)
        return self._store.count_before(self._clock() - hours * 3600.0)

    def get_by_event(self, event_id: str) -> list[DeadLetter]:
        """The entries about one event (one per failed handler, plus any summary)."""
        return self._store.by_event_id(event_id)

    def get_stats(self) -> dict[str, Any]:
        """``size``, ``max_size``, ``by_reason``, ``by_event_type``, ``evicted``, ``path``,
        ``uncopied_payloads``.

        For a SQLite queue, ``evicted`` counts evictions by every process sharing the file.
        ``uncopied_payloads`` (memory queue, this process): entries whose payload could not be
        deep-copied and is shared with the emitter.
        """
        by_reason, by_type, evicted = self._store.stats()
        return {
            "size": sum(by_reason.values()),
            "max_size": self.max_size,
            "by_reason": by_reason,
            "by_event_type": by_type,
            "evicted": evicted,
            "path": self.path,
            "uncopied_payloads": self._uncopied,
        }

    # ------------------------------------------------------------------ removing
    def remove(self, entry_id: str) -> bool:
        """Remove one entry; True if it was there."""
        return self._store.remove(entry_id)

    def clear(self) -> int:
        """Remove every entry; returns how many."""
        return self._store.clear()

    def clear_older_than(self, hours: float) -> int:
        """Remove entries whose last failure is more than ``hours`` ago; returns how many."""
        hours = _check_number("hours", hours, allow_zero=True)
        return self._store.clear_before(self._clock() - hours * 3600.0)

    # ------------------------------------------------------------------ retrying
    def retry(self, entry_id: str, bus: EventBus) -> bool:
        """Re-run the handler that failed, with the original event; True if it succeeded.

        Only that handler runs (not every subscriber), found on ``bus`` by subscription id
        (if the subscription there has the same handler name) else by handler name; the call
        runs inside the event's correlation id. Success removes the entry; failure stores the
        new error and adds one to ``attempts``. Raises :class:`EntryNotFoundError`,
        :class:`EntryClaimedError`,
        :class:`HandlerNotFoundError` or :class:`NotRetryableError`.

        An ``ALL_HANDLERS_FAILED`` entry retries every per-handler entry left for its event
        and succeeds (and is removed) when none is left.

        The entry is claimed first (in the store, so across processes sharing a SQLite file):
        while one retry runs the handler, another raises :class:`EntryClaimedError` instead of
        running it too. The claim is released when the retry ends; one older than
        ``claim_timeout`` (a retry whose process died) may be taken over.
        """
        if not isinstance(entry_id, str):
            raise TypeError(f"entry_id must be a str, got {type(entry_id).__name__}")
        owner = f"{os.getpid()}-{new_event_id()}"
        now = self._clock()
        entry, claimed = self._store.claim(entry_id, owner, now, now - self.claim_timeout)
        if entry is None:
            raise EntryNotFoundError(
                f"no DLQ entry {entry_id!r} (retried, evicted or purged already?)"
            )
        if not claimed:
            raise EntryClaimedError(
                f"DLQ entry {entry_id} is being retried elsewhere (another process or thread "
                f"claimed it less than claim_timeout={self.claim_timeout:g}s ago); its handler "
                "is not run twice at once: try again later"
            )
        try:
            return self._retry_claimed(entry, bus)
        finally:
            self._store.release(entry.id, owner)  # a no-op once the entry is removed

    def _retry_claimed(self, entry: DeadLetter, bus: EventBus) -> bool:
        if entry.reason is FailureReason.ALL_HANDLERS_FAILED:
            return self._resolve_summary(entry, bus, rerun=True)
        if entry.reason not in HANDLER_REASONS:
            raise NotRetryableError(
                f"DLQ entry {entry.id} ({entry.reason.value}, event {entry.event_type}) names no "
                "handler to re-run; inspect it and remove it, or emit a corrected event"
            )
        sub = find_subscription(bus, entry)
        error, reason = call_handler(bus, sub, entry.event)
        if error is None:
            self._store.remove(entry.id)
            return True
        etype, message, tb = error_fields(error)
        self._store.replace(
            attrs.evolve(
                entry,
                reason=reason or FailureReason.HANDLER_ERROR,
                error_type=etype,
                error_message=message,
                traceback=tb,
                attempts=entry.attempts + 1,
                last_failed_at=self._clock(),
            )
        )
        return False

    def _resolve_summary(self, entry: DeadLetter, bus: EventBus, *, rerun: bool) -> bool:
        def remaining() -> list[DeadLetter]:
            return [
                e for e in self._store.by_event_id(entry.event_id)
                if e.id != entry.id and e.reason in HANDLER_REASONS
            ]

        if rerun:
            for other in remaining():
                # gone meanwhile, no handler (it stays failed), or being retried elsewhere:
                # go on with the others
                with contextlib.suppress(LookupError, EntryClaimedError):
                    self.retry(other.id, bus)
        left = remaining()
        if not left:
            self._store.remove(entry.id)
            return True
        names = ", ".join(sorted({e.handler_name or "?" for e in left}))
        self._store.replace(
            attrs.evolve(
                entry,
                error_message=f"{len(left)} handler(s) of the event still fail: {names}",
                attempts=entry.attempts + 1,
                last_failed_at=self._clock(),
            )
        )
        return False

    def retry_all(
        self,
        bus: EventBus,
        max_retries: int = 3,
        *,
        backoff: float | None = None,
        max_backoff: float = 300.0,
        jitter: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        progress: Callable[[int, int], None] | None = None,
    ) -> RetrySummary:
        """Retry every entry that has been retried fewer than ``max_retries`` times.

        One pass: each eligible entry is retried once (per-handler entries first, then
        ``ALL_HANDLERS_FAILED`` summaries, which are resolved without re-running anything).
        With ``backoff`` (seconds), an entry is retried no sooner than
        ``min(max_backoff, backoff * 2 ** (attempts - 1))`` after its last failure, times a
        factor drawn from [0.5, 1) when ``jitter``; entries are taken in the order they become
        due and ``sleep`` waits for each. ``progress(done, total)`` is called after each entry.
        """
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise TypeError(f"max_retries must be an int, got {type(max_retries).__name__}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff is not None:
            backoff = _check_number("backoff", backoff, allow_zero=False)
        max_backoff = _check_number("max_backoff", max_backoff, allow_zero=False)

        counts = {"succeeded": 0, "failed": 0, "skipped": 0, "not_retryable": 0,
                  "missing_handler": 0, "in_progress": 0}
        handlers: list[tuple[float, DeadLetter]] = []
        summaries: list[DeadLetter] = []
        for entry in self._store.all():
            if entry.reason is FailureReason.ALL_HANDLERS_FAILED:
                summaries.append(entry)
            elif entry.reason not in HANDLER_REASONS:
                counts["not_retryable"] += 1
            elif entry.attempts - 1 >= max_retries:
                counts["skipped"] += 1
            else:
                due = entry.last_failed_at
                if backoff is not None:
                    delay = min(max_backoff, backoff * 2.0 ** (entry.attempts - 1))
                    if jitter:
                        delay *= 0.5 + random() / 2
                    due += delay
                handlers.append((due, entry))
        handlers.sort(key=lambda pair: pair[0])
        total = len(handlers) + len(summaries)
        done = 0
        for due, entry in handlers:
            if backoff is not None:
                wait = due - self._clock()
                if wait > 0:
                    sleep(wait)
            try:
                counts["succeeded" if self.retry(entry.id, bus) else "failed"] += 1
            except HandlerNotFoundError:
                counts["missing_handler"] += 1
            except EntryNotFoundError:  # removed meanwhile (another process retried it)
                pass
            except EntryClaimedError:  # another process is retrying it right now
                counts["in_progress"] += 1
            done += 1
            if progress is not None:
                progress(done, total)
        for entry in summaries:
            if entry.attempts - 1 >= max_retries:
                counts["skipped"] += 1
            elif self._store.get(entry.id) is not None:
                resolved = self._resolve_summary(entry, bus, rerun=False)
                counts["succeeded" if resolved else "failed"] += 1
            done += 1
            if progress is not None:
                progress(done, total)
        return RetrySummary(**counts)


def find_subscription(bus: EventBus, entry: DeadLetter) -> Subscription:
    """The live subscription of the handler that failed; raises :class:`HandlerNotFoundError`."""
    name = entry.handler_name
    if entry.subscription_id is not None:
        sub = bus.get_subscription(entry.subscription_id)
        if sub is not None and sub.name == name and sub.handler is not None:
            return sub
    try:
        candidates = bus.handlers_for(entry.event_type)
    except (TypeError, ValueError):
        candidates = []
    for sub in [*candidates, *bus.subscriptions()]:
        if sub.name == name and sub.handler is not None:
            return sub
    raise HandlerNotFoundError(
        f"no live subscription for handler {name!r} on this bus (DLQ entry {entry.id}, event "
        f"{entry.event_type}); subscribe the handler (or build the bus from the config that "
        "loads its handler entry points) and retry"
    )


def call_handler(
    bus: EventBus, sub: Subscription, event: Event
) -> tuple[BaseException | None, FailureReason | None]:
    """Run one handler on ``event`` through the kernel (``EventBus.call_handler``): inside
    the event's scope (correlation id, ``current_event()``), under ``handler_timeout`` (a sync
    handler that runs over is not stopped; an async one is cancelled) and the ``on_handler``
    wrappers. Returns (error, reason); (None, None) on success."""
    try:
        outcome = bus.call_handler(sub, event)
    except LookupError:
        raise HandlerNotFoundError(
            f"handler {sub.name!r} was garbage-collected (weak subscription)"
        ) from None
    return outcome.error, outcome.reason

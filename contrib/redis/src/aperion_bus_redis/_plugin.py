"""The ``redis`` plugin: publish local events to Redis Streams, dispatch remote ones locally."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Coroutine, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import redis.asyncio as aioredis
from aperion_bus import (
    BusClosedError,
    DeliveryFailed,
    DispatchResult,
    Event,
    EventBus,
    EventDecodeError,
    EventForwarded,
    EventRejected,
    FailureReason,
    PluginError,
    hookimpl,
)
from redis.exceptions import RedisError, ResponseError

from ._settings import RedisSettings, masked_url, matches_any

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "DEAD_LETTER_REASON",
    "UNDECODABLE_EVENT",
    "UNPUBLISHED_REASON",
    "PublishBufferFull",
    "RedisConnectionError",
    "RedisStreams",
    "SerializationError",
]

logger = logging.getLogger("aperion_bus.redis")

_T = TypeVar("_T")
#: The ``on_drop`` reason for an entry given up on after ``max_deliveries`` (with a
#: :class:`aperion_bus.DeliveryFailed`): the DLQ plugin keeps such events.
DEAD_LETTER_REASON: Final = "dead_letter"
#: The event type under which an entry that holds no decodable event is reported (with
#: ``DEAD_LETTER_REASON``): its payload carries the raw bytes (at most 4 KiB) and the entry.
UNDECODABLE_EVENT: Final = "system.redis.undecodable"
#: The ``on_drop`` reason for an event handed to the consumer group instead of local handlers.
PUBLISHED_REASON: Final = "redis.published"
#: The ``on_drop`` reason for an event that was accepted by ``emit`` but could not be written
#: to Redis: refused by the server ``_REFUSED_TRIES`` times, or still buffered when the
#: shutdown's ``flush_timeout_ms`` ran out.
UNPUBLISHED_REASON: Final = "redis.unpublished"
_EVENT: Final = b"event"
_ORIGIN: Final = b"o"
#: set on an entry whose emitter already ran its handlers (a waited emit in shared mode)
_HANDLED: Final = b"h"
#: the prefix of a transport header's field (``on_transport_send``): ``hdr:traceparent``
_HEADER: Final = b"hdr:"
#: the name of this transport in the transport hooks
TRANSPORT: Final = "redis"
#: bounds on the headers of one entry, both ways: their number, a name's and a value's length
_HEADERS_MAX: Final = 32
_HEADER_NAME_MAX: Final = 128
_HEADER_VALUE_MAX: Final = 8192
_START_TIMEOUT: Final = 10.0
_LAST_ERRORS_MAX: Final = 10_000
_REFUSED_TRIES: Final = 5  # XADDs of one entry the server refused (not a connection error)
_BACKOFF_MIN: Final = 0.05
_BACKOFF_MAX: Final = 2.0
_RESTART_MIN: Final = 0.1  # the reader's restart delay after an unexpected error ...
_RESTART_MAX: Final = 5.0  # ... doubled up to this while it keeps failing
_ERROR_TEXT_MAX: Final = 1_000
_instances = itertools.count(1)


class SerializationError(EventRejected):
    """A matching event's payload cannot be written as JSON, so it cannot be published."""


class PublishBufferFull(EventRejected):
    """More than ``buffer_size`` events are waiting to be published (Redis slow or down)."""


class RedisConnectionError(PluginError):
    """The plugin could not start on its Redis server: unreachable, authentication refused,
    or a start-up command (``PING``, ``XGROUP CREATE``) refused. The message names the URL,
    its password masked; the redis-py exception is kept as ``__context__``."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url  # masked


class _Flush:
    """A marker put in the outbox; set once everything queued before it was written."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


#: (stream, JSON line, the event, its header fields flattened: name, value, name, value ...)
_Item = tuple[str, str, Event, tuple[bytes, ...]]


@attrs.define
class _Entry:
    stream: str
    entry_id: bytes
    fields: dict[bytes, bytes] | None
    deliveries: int = 1


@attrs.define
class _Dead:
    entry: _Entry
    reason: FailureReason
    error: str
    event: Event | None = None
    handler: str | None = None
    exc: BaseException | None = None


class RedisStreams:
    """Events across processes and machines on Redis Streams (see ``docs/redis.md``).

    Local events whose type matches ``patterns`` are written to the stream (``XADD``, pipelined
    in batches by a background thread). Entries read from the stream are dispatched to the
    local handlers like local events, acknowledged only when every handler succeeded, retried
    after ``claim_idle_ms``, and dead-lettered after ``max_deliveries``.
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = RedisSettings.build(**settings)
        self.consumer: str = self.settings.consumer or ""
        self._bus: EventBus | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._redis: aioredis.Redis | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._dispatch_thread: threading.Thread | None = None
        # (stream, JSON line, the event: reported to on_drop if it cannot be published)
        self._outbox: collections.deque[_Item | _Flush] = collections.deque()
        #: ids of waited emits in shared mode: handled by their emitter, written marked handled
        self._handled_here: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._publisher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reading = False
        self._stopping = False  # the reader stops (on_closing)
        self._publisher_stopping = False  # the publisher stops once flushed (on_shutdown)
        self._started = False
        self._accepting = False  # on_emit publishes: from on_start until on_shutdown
        self._reader_stopped = False
        self._stop_task: asyncio.Task[None] | None = None
        self._origin = b""
        self._group = self.settings.group
        self._url = masked_url(self.settings.url)  # for messages: never the password
        self._last_reader_error: str | None = None
        self._reads = 0  # successful reads (the reader's restart backoff resets on progress)
        # event type -> its stream, "" if not published
        self._publish_cache: dict[str, str] = {}
        self._shared = self.settings.mode == "shared"
        # (stream, entry id) -> last failure: entry ids repeat across per-domain streams
        self._last_errors: collections.OrderedDict[
            tuple[str, bytes], tuple[str, BaseException]
        ] = collections.OrderedDict()
        self._counts: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()
        # the transport hooks' implementations, in call order (looked up in on_start)
        self._send_hooks: list[pluggy.HookImpl] = []
        self._receive_hooks: list[pluggy.HookImpl] = []
        self._header_warnings: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ life cycle
    @hookimpl
    def on_start(self, bus: EventBus) -> None:
        s = self.settings
        self._bus = bus
        hooks = bus.plugin_manager.hook
        self._send_hooks = _plain_impls(hooks.on_transport_send)
        self._receive_hooks = _plain_impls(hooks.on_transport_receive)
        if not self.consumer:
            # host-pid; a second bus of the same process gets a suffix (one PEL per consumer)
            n = next(_instances)
            self.consumer = f"{socket.gethostname()}-{os.getpid()}" + (f"-{n}" if n > 1 else "")
        self._origin = f"{self.consumer}:{uuid.uuid4().hex[:12]}".encode()
        if s.mode == "broadcast":
            self._group = f"{s.group}:{self.consumer}"
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="aperion-redis-loop", daemon=True)
        self._thread.start()
        ready.wait()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="aperion-redis-dispatch"
        )
        try:
            self._call(self._start(), _START_TIMEOUT)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self._call(self._close_client(), _START_TIMEOUT)
            self._stop_loop()
            if isinstance(exc, (RedisError, OSError)):  # TimeoutError is an OSError
                what = str(exc) or type(exc).__name__
                raise RedisConnectionError(
                    f"redis: cannot start on {self._url}: {what}", self._url
                ) from None  # one clear error; redis-py's stays in __context__
            raise
        self._started = True
        self._accepting = True

    async def _start(self) -> None:
        s = self.settings
        self._redis = aioredis.Redis.from_url(s.url)
        await self._redis.ping()
        self._wake = asyncio.Event()
        if s.consume:  # a publish-only process creates no group (it would only show lag)
            start_id = "0" if s.group_start == "earliest" else "$"
            for stream in s.consume_streams():
                await self._ensure_group(stream, start_id)
        self._publisher = asyncio.create_task(self._publish_loop())
        if s.consume:
            self._reader = asyncio.create_task(self._run_reader())

    @hookimpl
    def on_closing(self, bus: EventBus) -> None:
        # shutdown() began and the bus still accepts emits: stop READING only. The batch in
        # flight finishes and is acknowledged; what its handlers (and any other thread) emit
        # until the bus closes is still published (``_accepting`` stays true).
        if not self._started or self._reader_stopped:
            return
        self._reader_stopped = True
        if threading.current_thread() is self._dispatch_thread:
            # shutdown() called from a handler we are running: waiting would deadlock.
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._request_stop)
            return
        try:
            self._call(self._stop_reader(), None)
        except Exception as exc:
            logger.warning("redis: unclean stop of the reader: %r", exc)

    @hookimpl
    def on_shutdown(self, bus: EventBus) -> None:
        # the bus drained its queue and accepts nothing more: publish what is buffered, close
        if not self._started:
            return
        if not self._reader_stopped:  # on_closing did not run (or failed): stop reading now
            self.on_closing(bus)
        self._started = False
        self._accepting = False
        if threading.current_thread() is self._dispatch_thread:
            # from a handler we are running: the batch cannot finish while we wait for it, so
            # the loop finishes the stop by itself once the handler returned.
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._stop_in_background)
            return
        try:
            self._call(self._stop(), None)
        except Exception as exc:
            logger.warning("redis: unclean shutdown: %r", exc)
        self._stop_loop()

    def _stop_in_background(self) -> None:
        loop = self._loop
        assert loop is not None

        async def stop() -> None:
            try:
                await self._stop()
            except Exception as exc:
                logger.warning("redis: unclean shutdown: %r", exc)
            finally:
                loop.stop()
                if self._executor is not None:
                    self._executor.shutdown(wait=False)

        self._stop_task = loop.create_task(stop())

    def _request_stop(self) -> None:
        self._stopping = True
        if self._reader is not None and self._reading:
            self._reader.cancel()

    async def _stop_reader(self) -> None:
        self._request_stop()
        if self._reader is not None:
            try:
                await self._reader  # finishes the batch in flight and acknowledges it
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                logger.warning("redis: reader ended with %r", exc)

    async def _stop(self) -> None:
        await self._stop_reader()
        self._publisher_stopping = True
        self._outbox.append(_Flush())
        self._wake_publisher()
        if self._publisher is not None:
            timeout = self.settings.flush_timeout_ms / 1000
            try:
                await asyncio.wait_for(self._publisher, timeout)
            except Exception as exc:  # TimeoutError: Redis still down after flush_timeout_ms
                left: list[_Item] = []
                for item in self._outbox:
                    if isinstance(item, _Flush):
                        item.done.set()  # flush() waiters: nothing more will be written
                    else:
                        left.append(item)
                self._outbox.clear()
                error = exc if not isinstance(exc, TimeoutError) else TimeoutError(
                    f"not published within flush_timeout_ms={self.settings.flush_timeout_ms}"
                )
                self._unpublished(left, error, "at shutdown")
        s = self.settings
        if s.mode == "broadcast" and s.consumer is None and s.consume and self._redis is not None:
            # a generated consumer name never comes back: its group would only leak
            for stream in s.consume_streams():
                with contextlib.suppress(RedisError):
                    await self._redis.xgroup_destroy(stream, self._group)
        await self._close_client()

    async def _close_client(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _stop_loop(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(5.0)
            if not loop.is_running():
                loop.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[key] += n

    @hookimpl
    def on_stats(self, bus: EventBus) -> dict[str, Any]:
        with self._count_lock:
            counts = dict(self._counts)
        keys = (
            "published", "publish_errors", "publish_dropped", "received", "acked", "failed",
            "claimed", "dead_lettered", "undecodable", "skipped_own", "read_errors",
            "reader_restarts",
        )
        stats: dict[str, Any] = {k: counts.get(k, 0) for k in keys}
        stats.update(
            last_reader_error=self._last_reader_error,
            buffered=self._buffered(),
            mode=self.settings.mode,
            consumer=self.consumer,
            group=self._group,
        )
        return {"redis": stats}

    def _buffered(self) -> int:
        return sum(1 for item in list(self._outbox) if not isinstance(item, _Flush))

    # ------------------------------------------------------------------ publishing
    @hookimpl(trylast=True)
    def on_emit(self, bus: EventBus, event: Event, wait_for_handlers: bool) -> None:
        etype = event.event_type
        stream = self._publish_cache.get(etype)
        if stream is None:  # first sight of this type: its stream, or "" (not published)
            s = self.settings
            stream = s.stream_for(etype) if matches_any(s.patterns, etype) else ""
            if len(self._publish_cache) > 4096:
                self._publish_cache.clear()
            self._publish_cache[etype] = stream
        if not stream or not self._accepting:
            return None
        try:
            data = event.to_jsonl()
        except TypeError as exc:
            raise SerializationError(f"redis: cannot publish {etype}: {exc}") from exc
        outbox = self._outbox
        if len(outbox) >= self.settings.buffer_size:
            self._count("publish_errors")
            s = self.settings
            raise PublishBufferFull(
                f"redis: {len(outbox)} events wait to be published (buffer_size="
                f"{s.buffer_size}); is Redis reachable at {self._url}?"
            )
        headers = self._headers(bus, event) if self._send_hooks else ()
        handled_here = self._shared and wait_for_handlers
        if handled_here:
            # the emitter waits for handlers: this process handles it now, and the entry is
            # marked handled so that the group does not handle it a second time. Noted before
            # the entry is queued: the publisher thread may write it at once.
            self._handled_here.add(event.event_id)
        outbox.append((stream, data, event, headers))
        if not self._wake_pending:
            self._wake_publisher()
        if self._shared and not handled_here:
            # the group handles it: one process of the group, maybe this one, through Redis
            raise EventForwarded(PUBLISHED_REASON)
        return None

    def _headers(self, bus: EventBus, event: Event) -> tuple[bytes, ...]:
        """The ``on_transport_send`` headers for ``event``, as flat stream-entry fields."""
        fields: list[bytes] = []
        for impl in self._send_hooks:
            try:
                headers = _call(impl, bus=bus, event=event, transport=TRANSPORT)
            except Exception:
                logger.warning(
                    "redis: on_transport_send of plugin %r failed; %s sent without its headers",
                    impl.plugin_name, event.event_id, exc_info=True,
                )
                continue
            if headers is None:
                continue
            if not isinstance(headers, dict):
                self._warn_header(impl.plugin_name, f"returned {type(headers).__name__}")
                continue
            for name, value in headers.items():
                if not (
                    isinstance(name, str) and isinstance(value, str)
                    and 0 < len(name) <= _HEADER_NAME_MAX and len(value) <= _HEADER_VALUE_MAX
                ):
                    self._warn_header(impl.plugin_name, "gave a header that is not str to str "
                                      f"within {_HEADER_NAME_MAX}/{_HEADER_VALUE_MAX} characters")
                    continue
                if len(fields) >= 2 * _HEADERS_MAX:
                    self._warn_header(impl.plugin_name, f"more than {_HEADERS_MAX} headers")
                    break
                fields += (_HEADER + name.encode(), value.encode())
        return tuple(fields)

    def _warn_header(self, plugin: str, what: str) -> None:
        """Log a plugin's bad headers once per plugin and kind (it would repeat per event)."""
        if (plugin, what) in self._header_warnings:
            return
        self._header_warnings.add((plugin, what))
        logger.warning("redis: on_transport_send of plugin %r %s: dropped", plugin, what)

    def _wake_publisher(self) -> None:
        self._wake_pending = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(wake.set)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until every event published so far was written to Redis; False on timeout."""
        if not self._started:
            return not self._buffered()
        marker = _Flush()
        self._outbox.append(marker)
        self._wake_publisher()
        return marker.done.wait(timeout)

    async def _publish_loop(self) -> None:
        assert self._wake is not None and self._redis is not None
        outbox = self._outbox
        batch_size = self.settings.batch_size
        backoff = _BACKOFF_MIN
        refusals = 0  # consecutive XADDs of the head entries the server refused
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._wake_pending = False
            while outbox:
                batch: list[_Item] = []
                markers: list[_Flush] = []
                while outbox and len(batch) < batch_size:
                    item = outbox.popleft()
                    if isinstance(item, _Flush):
                        markers.append(item)
                        break
                    batch.append(item)
                if batch:
                    try:
                        refused = await self._xadd_batch(batch)
                    except asyncio.CancelledError:
                        # the shutdown's flush_timeout_ms ran out while this batch was on the
                        # wire: not confirmed, so it is reported with what is still buffered
                        outbox.extendleft([*markers[::-1], *batch[::-1]])
                        raise
                    except Exception as exc:
                        # Redis unreachable (redis-py already retried the connection) or a bug:
                        # the whole batch again, in order, after a backoff. Entries written
                        # before the connection broke are written twice (at-least-once).
                        self._count("publish_errors")
                        log = logger.warning if isinstance(exc, RedisError) else logger.error
                        log(
                            "redis: publishing %d events failed, retrying in %.2f s: %s",
                            len(batch), backoff, _describe(exc),
                            exc_info=not isinstance(exc, RedisError),
                        )
                        outbox.extendleft([*markers[::-1], *batch[::-1]])
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, _BACKOFF_MAX)
                        continue
                    backoff = _BACKOFF_MIN
                    if refused:
                        # the server answered with an error for these entries (OOM, WRONGTYPE,
                        # ACL): retried in order a bounded number of times, then reported
                        refusals += 1
                        self._count("publish_errors")
                        items = [item for item, _ in refused]
                        if refusals < _REFUSED_TRIES:
                            logger.warning(
                                "redis: Redis refused %d events (try %d of %d): %s",
                                len(items), refusals, _REFUSED_TRIES, refused[0][1],
                            )
                            outbox.extendleft([*markers[::-1], *items[::-1]])
                            await asyncio.sleep(_BACKOFF_MIN * 2**refusals)
                            continue
                        self._unpublished(items, refused[0][1], f"refused {refusals} times")
                    refusals = 0
                for m in markers:
                    m.done.set()
            if self._publisher_stopping:
                return

    def _unpublished(self, items: list[_Item], error: BaseException, why: str) -> None:
        """Report events that will not be published: logged, ``on_drop``, then counted (so
        that once ``publish_dropped`` counts an event, every ``on_drop`` observer saw it)."""
        if not items:
            return
        logger.error(
            "redis: %d events not published to %s (%s): %s; event ids %s%s",
            len(items), self._url, why, _describe(error),
            ", ".join(ev.event_id for _, _, ev, _ in items[:10]),
            " ..." if len(items) > 10 else "",
        )
        bus = self._bus
        if bus is not None:
            for _, _, ev, _ in items:
                bus.report_drop(ev, UNPUBLISHED_REASON, error)
        self._count("publish_dropped", len(items))

    async def _xadd_batch(self, batch: list[_Item]) -> list[tuple[_Item, BaseException]]:
        """XADD a batch in one pipeline; returns the entries the server refused (with its
        error). A connection failure raises."""
        assert self._redis is not None
        s = self.settings
        pipe = self._redis.pipeline(transaction=False)
        # XADD <stream> [MAXLEN ~ n] * event <json> [o <origin>], as pipe.xadd(stream, fields,
        # maxlen=maxlen, approximate=True) writes it, without its per-call argument checks
        command = pipe.execute_command
        head: tuple[bytes, ...] = (
            (b"*",) if s.maxlen is None else (b"MAXLEN", b"~", str(s.maxlen).encode(), b"*")
        )
        if s.mode == "broadcast":  # the origin lets this process skip its own entries
            origin = self._origin
            for stream, data, _, hdrs in batch:
                command("XADD", stream, *head, _EVENT, data, _ORIGIN, origin, *hdrs)
        else:  # shared: nobody needs the origin, one field less to write and parse
            handled = self._handled_here
            for stream, data, ev, hdrs in batch:
                if handled and ev.event_id in handled:  # its emitter ran its handlers
                    handled.discard(ev.event_id)
                    command("XADD", stream, *head, _EVENT, data, _HANDLED, b"1", *hdrs)
                else:
                    command("XADD", stream, *head, _EVENT, data, *hdrs)
        results = await pipe.execute(raise_on_error=False)
        refused: list[tuple[_Item, BaseException]] = [
            (item, r) for item, r in zip(batch, results, strict=True) if isinstance(r, Exception)
        ]
        self._count("published", len(batch) - len(refused))
        return refused

    async def _ensure_group(self, stream: str, start_id: str) -> None:
        """Create the group on ``stream`` (and the stream) unless it exists."""
        assert self._redis is not None
        try:
            await self._redis.xgroup_create(stream, self._group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # ------------------------------------------------------------------ consuming
    async def _run_reader(self) -> None:
        """Run the read loop; restart it with backoff if it fails unexpectedly, so that the
        consumer never stops silently (logged at ERROR, ``reader_restarts`` in the stats)."""
        delay = _RESTART_MIN
        while not self._stopping:
            reads = self._reads
            try:
                await self._read_loop()
                return
            except asyncio.CancelledError:
                if self._stop_requested():
                    return
                raise
            except Exception as exc:
                if self._stop_requested():
                    logger.warning("redis: the reader ended with %r while stopping", exc)
                    return
                if self._reads != reads:  # it worked for a while: restart soon
                    delay = _RESTART_MIN
                self._count("reader_restarts")
                self._last_reader_error = _describe(exc)
                logger.error(
                    "redis: the reader of %s failed; restarting it in %.1f s (entries it "
                    "held come again)", self._group, delay, exc_info=True,
                )
            self._reading = True  # the stop may cancel this sleep
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                if self._stop_requested():
                    return
                raise
            finally:
                self._reading = False
            delay = min(delay * 2, _RESTART_MAX)

    def _stop_requested(self) -> bool:
        return self._stopping

    async def _read_loop(self) -> None:
        s = self.settings
        streams = s.consume_streams()
        claim_every = max(s.claim_idle_ms / 2000.0, 0.01)
        block = max(1, min(s.block_ms, int(claim_every * 1000)))
        acks: dict[str, list[bytes]] = {}
        # The batch being dispatched (and then acknowledged at once) while the next one is
        # read: reading overlaps handling. Batches are still dispatched one after the other.
        handling: asyncio.Task[dict[str, list[bytes]]] | None = None
        recovered = False
        backoff = 0.05
        next_claim = time.monotonic() + claim_every
        try:
            while not self._stopping:
                try:
                    if not recovered or time.monotonic() >= next_claim:
                        if handling is not None:  # recovery and claims dispatch: settle first
                            task, handling = handling, None
                            acks = _merged(acks, await task)
                        if not recovered:
                            # entries this consumer name was given before (a restart) first
                            for stream in streams:
                                acks = await self._recover(stream, acks)
                            recovered = True
                        if time.monotonic() >= next_claim:
                            for stream in streams:
                                acks = await self._claim(stream, acks)
                            next_claim = time.monotonic() + claim_every
                    assert self._redis is not None
                    pipe = self._redis.pipeline(transaction=False)
                    for stream, ids in acks.items():
                        pipe.xack(stream, self._group, *ids)
                    # while a batch is being handled the read does not block: its acks must
                    # not wait for new entries to arrive
                    pipe.xreadgroup(
                        self._group, self.consumer, dict.fromkeys(streams, ">"),
                        count=s.batch_size, block=None if handling is not None else block,
                    )
                    self._reading = handling is None
                    try:
                        res = await pipe.execute()
                    finally:
                        self._reading = False
                    self._count("acked", sum(len(v) for v in acks.values()))
                    acks = {}
                    backoff = 0.05
                    self._reads += 1
                    entries = _entries(res[-1])
                    if handling is not None:
                        task, handling = handling, None
                        acks = await task  # the acks that could not be sent yet
                    if entries:
                        handling = asyncio.ensure_future(self._handle_and_ack(entries))
                except RedisError as exc:
                    # Redis unreachable or restarting: keep the acks (XACK is idempotent), retry
                    self._count("read_errors")
                    logger.warning(
                        "redis: reading %s failed, retrying: %s", streams, _describe(exc)
                    )
                    if "NOGROUP" in str(exc):
                        # the stream or the group is gone (deleted, or Redis restarted without
                        # persistence): recreate the group at 0, so that every entry in the
                        # stream now (those publishers wrote since) is delivered, none skipped
                        with contextlib.suppress(RedisError):
                            for stream in streams:
                                await self._ensure_group(stream, "0")
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        finally:
            if handling is not None:  # the batch in flight finishes (it runs on its own)
                try:
                    acks = _merged(acks, await handling)
                except Exception as exc:
                    logger.warning("redis: the last batch ended with %r", exc)
            if acks and self._redis is not None:
                # the blocking read may have been cancelled: acknowledge (again) what we handled
                pipe = self._redis.pipeline(transaction=False)
                for stream, ids in acks.items():
                    pipe.xack(stream, self._group, *ids)
                try:
                    await pipe.execute()
                    self._count("acked", sum(len(v) for v in acks.values()))
                except RedisError as exc:
                    logger.warning("redis: final XACK failed (entries come again): %r", exc)

    async def _handle_and_ack(self, entries: list[_Entry]) -> dict[str, list[bytes]]:
        """Dispatch a batch, then acknowledge it at once (on a second pooled connection,
        while the next read is in flight); returns the acks that could not be sent."""
        acks = await self._handle(entries)
        if acks:
            try:
                await self._ack_now(acks)
            except RedisError as exc:
                logger.debug("redis: XACK failed, retried with the next read: %r", exc)
                return acks
        return {}

    async def _recover(
        self, stream: str, acks: dict[str, list[bytes]]
    ) -> dict[str, list[bytes]]:
        assert self._redis is not None
        last: bytes | str = "0"
        while not self._stopping:
            res = await self._redis.xreadgroup(
                self._group, self.consumer, {stream: last}, count=self.settings.batch_size
            )
            entries = _entries(res)
            if not entries:
                break
            last = entries[-1].entry_id
            await self._set_deliveries(entries)
            acks = await self._ack_now(acks)
            acks = await self._handle(entries)
        return acks

    async def _claim(self, stream: str, acks: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
        assert self._redis is not None
        s = self.settings
        start: bytes | str = "0-0"
        for _ in range(1000):  # bounded: one claim cycle must not starve reading
            res = await self._redis.xautoclaim(
                stream, self._group, self.consumer, s.claim_idle_ms, start_id=start,
                count=s.batch_size,
            )
            start = res[0]
            entries = [_Entry(stream, eid, fields) for eid, fields in res[1]]
            if entries:
                self._count("claimed", len(entries))
                await self._set_deliveries(entries)
                acks = await self._ack_now(acks)
                acks = await self._handle(entries)
            if start in (b"0-0", "0-0") or self._stopping:
                break
        return acks

    async def _ack_now(self, acks: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
        assert self._redis is not None
        for stream, ids in acks.items():
            await self._redis.xack(stream, self._group, *ids)
            self._count("acked", len(ids))
        return {}

    async def _set_deliveries(self, entries: list[_Entry]) -> None:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for e in entries:
            pipe.xpending_range(e.stream, self._group, e.entry_id, e.entry_id, 1)
        for e, info in zip(entries, await pipe.execute(), strict=True):
            if info:
                e.deliveries = int(info[0]["times_delivered"])

    async def _handle(self, entries: list[_Entry]) -> dict[str, list[bytes]]:
        """Dispatch a batch on the dispatch thread; returns the ids to acknowledge."""
        loop = asyncio.get_running_loop()
        ok, dead = await loop.run_in_executor(self._executor, self._dispatch_batch, entries)
        acks: dict[str, list[bytes]] = {}
        for e in ok:
            acks.setdefault(e.stream, []).append(e.entry_id)
        if dead:
            try:
                await self._dead_letter(dead)
            except RedisError as exc:
                # not acknowledged: they come again (claim_idle_ms) and are dead-lettered then
                logger.warning("redis: writing %d dead letters failed: %r", len(dead), exc)
                return acks
            for d in dead:
                acks.setdefault(d.entry.stream, []).append(d.entry.entry_id)
        return acks

    def _dispatch_batch(self, entries: list[_Entry]) -> tuple[list[_Entry], list[_Dead]]:
        """Runs on the dispatch thread: decode, dispatch, sort into ok / dead / retry later."""
        self._dispatch_thread = threading.current_thread()
        bus = self._bus
        assert bus is not None
        s = self.settings
        broadcast = s.mode == "broadcast"
        max_deliveries = s.max_deliveries
        origin = self._origin
        last_errors = self._last_errors
        dispatch = bus.dispatch
        ok: list[_Entry] = []
        dead: list[_Dead] = []
        received = skipped = failed = undecodable = 0
        try:
            for e in entries:
                fields = e.fields
                if not fields:  # trimmed away (MAXLEN) while pending: nothing left to do
                    ok.append(e)
                    continue
                received += 1
                if (broadcast and fields.get(_ORIGIN) == origin) or _HANDLED in fields:
                    skipped += 1  # already dispatched by its emitter (this process, or a
                    ok.append(e)  # waited emit in shared mode)
                    continue
                if e.deliveries > max_deliveries:
                    dead.append(self._dead_entry(e, fields))
                    continue
                try:
                    event = _decode(fields.get(_EVENT, b""))
                except Exception as exc:
                    # EventDecodeError, or whatever a hostile entry provokes in a decoder
                    # (RecursionError, OverflowError, ValueError): dead-lettered and acked
                    undecodable += 1
                    reason = FailureReason.SERIALIZATION_ERROR
                    dead.append(_Dead(e, reason, _describe(exc), exc=exc))
                    continue
                try:
                    if self._receive_hooks:
                        result = self._dispatch_received(bus, event, fields)
                    else:
                        result = dispatch(event)
                except BusClosedError:
                    # shut down from a handler while the next batch was already read: it
                    # stays pending and comes again (claim_idle_ms, or this consumer's restart)
                    logger.warning("redis: bus closed, entries from %r on stay pending", e.entry_id)
                    break
                except Exception as exc:  # the bus itself refused
                    logger.warning("redis: dispatching %s failed: %r", event.event_id, exc)
                    failed += 1
                    continue
                if result.ok:
                    ok.append(e)
                    if last_errors:
                        last_errors.pop((e.stream, e.entry_id), None)
                else:
                    failed += 1
                    f = result.failures[-1]
                    last_errors[(e.stream, e.entry_id)] = (f.handler_name, f.error)
                    if len(last_errors) > _LAST_ERRORS_MAX:
                        last_errors.popitem(last=False)
        finally:  # counted once per batch: the lock is not free
            with self._count_lock:
                counts = self._counts
                counts["received"] += received
                counts["skipped_own"] += skipped
                counts["failed"] += failed
                counts["undecodable"] += undecodable
        return ok, dead

    def _dispatch_received(
        self, bus: EventBus, event: Event, fields: dict[bytes, bytes]
    ) -> DispatchResult:
        """Dispatch ``event`` within the context managers ``on_transport_receive`` gave."""
        headers = _read_headers(fields)
        entered: list[tuple[str, AbstractContextManager[Any]]] = []
        for impl in self._receive_hooks:
            try:
                cm = _call(impl, bus=bus, event=event, headers=dict(headers), transport=TRANSPORT)
                if cm is not None:
                    cm.__enter__()
                    entered.append((impl.plugin_name, cm))
            except Exception:
                logger.warning(
                    "redis: on_transport_receive of plugin %r failed; %s dispatched without it",
                    impl.plugin_name, event.event_id, exc_info=True,
                )
        try:
            return bus.dispatch(event)
        finally:
            for name, cm in reversed(entered):
                try:
                    cm.__exit__(None, None, None)
                except Exception:
                    logger.warning(
                        "redis: leaving the on_transport_receive context of plugin %r failed",
                        name, exc_info=True,
                    )

    def _dead_entry(self, e: _Entry, fields: dict[bytes, bytes]) -> _Dead:
        """An entry delivered more than ``max_deliveries`` times, for the dead-letter stream."""
        s = self.settings
        last = self._last_errors.pop((e.stream, e.entry_id), None)
        event = _decode_or_none(fields)
        if last is None:
            msg = (
                f"delivered {e.deliveries} times (max_deliveries={s.max_deliveries}) "
                "and never acknowledged"
            )
            return _Dead(e, FailureReason.HANDLER_ERROR, msg, event)
        name, exc = last
        reason = (
            FailureReason.HANDLER_TIMEOUT
            if isinstance(exc, TimeoutError)
            else FailureReason.HANDLER_ERROR
        )
        return _Dead(e, reason, f"{type(exc).__name__}: {exc}", event, name, exc)

    async def _dead_letter(self, dead: list[_Dead]) -> None:
        assert self._redis is not None
        s = self.settings
        pipe = self._redis.pipeline(transaction=False)
        for d in dead:
            fields: dict[Any, Any] = {
                "event": (d.entry.fields or {}).get(_EVENT, b""),
                "stream": d.entry.stream,
                "id": d.entry.entry_id,
                "group": self._group,
                "consumer": self.consumer,
                "deliveries": d.entry.deliveries,
                "reason": d.reason.value,
                "error": d.error,
                "handler": d.handler or "",
            }
            pipe.xadd(f"{d.entry.stream}:dead", fields, maxlen=s.maxlen, approximate=True)
        await pipe.execute()
        self._count("dead_lettered", len(dead))
        if self._bus is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._report_dead, dead)

    def _report_dead(self, dead: list[_Dead]) -> None:
        """Report each dead entry that holds an event to the bus (``on_drop`` reason
        ``"dead_letter"``): observers such as the DLQ plugin keep it. An undecodable entry
        is reported as a ``system.redis.undecodable`` event holding its bytes."""
        bus = self._bus
        assert bus is not None
        for d in dead:
            event = d.event if d.event is not None else self._undecodable_event(d)
            failed = DeliveryFailed(
                d.error,
                reason=d.reason.value,
                handler=d.handler,
                attempts=d.entry.deliveries,
                details={
                    "stream": d.entry.stream,
                    "entry_id": d.entry.entry_id.decode(),
                    "group": self._group,
                    "consumer": self.consumer,
                },
            )
            failed.__cause__ = d.exc
            bus.report_drop(event, DEAD_LETTER_REASON, failed)

    def _undecodable_event(self, d: _Dead) -> Event:
        """An entry that holds no event, as an event the DLQ can keep: type
        ``system.redis.undecodable``, the raw bytes (at most 4 KiB, as text with backslash
        escapes) and where they came from in the payload."""
        raw = (d.entry.fields or {}).get(_EVENT, b"")
        return Event(
            UNDECODABLE_EVENT,
            {
                "raw": raw[:4096].decode("utf-8", "backslashreplace"),
                "raw_bytes": len(raw),
                "stream": d.entry.stream,
                "entry_id": d.entry.entry_id.decode(),
                "error": d.error,
            },
            source="redis",
        )


def _plain_impls(caller: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """A hook's plain implementations in pluggy's call order (the last registered first)."""
    return [i for i in reversed(caller.get_hookimpls()) if not (i.wrapper or i.hookwrapper)]


def _call(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    """One implementation with the arguments it takes, by name (as pluggy calls it)."""
    return impl.function(*[kwargs[name] for name in impl.argnames])


def _read_headers(fields: dict[bytes, bytes]) -> dict[str, str]:
    """An entry's ``hdr:`` fields as headers; it comes from outside: names and values that
    are not UTF-8 or too long are left out, and so is anything past ``_HEADERS_MAX``."""
    out: dict[str, str] = {}
    for key, value in fields.items():
        if not key.startswith(_HEADER):
            continue
        if len(out) >= _HEADERS_MAX:
            break
        if len(key) > len(_HEADER) + _HEADER_NAME_MAX or len(value) > _HEADER_VALUE_MAX:
            continue
        try:
            out[key[len(_HEADER) :].decode()] = value.decode()
        except UnicodeDecodeError:
            continue
    return out


def _decode(raw: bytes) -> Event:
    """The kernel's codec, ``Event.from_jsonl``: one decoder, with its documented limits
    (nesting depth, number sizes, finite floats); it raises only ``EventDecodeError``."""
    return Event.from_jsonl(raw)


def _decode_or_none(fields: dict[bytes, bytes]) -> Event | None:
    try:
        return _decode(fields.get(_EVENT, b""))
    except Exception:  # EventDecodeError, or anything hostile input provokes
        return None


def _describe(exc: BaseException) -> str:
    """An exception for a log field or a dead letter: bounded, ``str`` failures tolerated."""
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    if not isinstance(exc, EventDecodeError):
        text = f"{type(exc).__name__}: {text}"
    if len(text) > _ERROR_TEXT_MAX:
        text = text[:_ERROR_TEXT_MAX] + f"... ({len(text)} characters)"
    return text


def _merged(
    acks: dict[str, list[bytes]], more: dict[str, list[bytes]]
) -> dict[str, list[bytes]]:
    if not acks:
        return more
    for stream, ids in more.items():
        acks.setdefault(stream, []).extend(ids)
    return acks


def _entries(res: Any) -> list[_Entry]:
    """XREADGROUP's reply (RESP2 list or RESP3 dict) as a flat list of entries."""
    if not res:
        return []
    items: Iterable[Any] = res.items() if isinstance(res, dict) else res
    out: list[_Entry] = []
    for stream, messages in items:
        name = stream.decode() if isinstance(stream, bytes) else str(stream)
        for eid, fields in messages:
            out.append(_Entry(name, eid, fields or None))
    return out

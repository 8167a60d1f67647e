"""The web app: Starlette routes over the index and the DLQ, pages rendered by Jinja2
(autoescape on), a token gate, and server-sent events for live follow."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import jinja2
from anyio import to_thread
from aperion_bus import FailureReason
from aperion_bus._cli_output import escape, format_time, json_document, json_escape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ._index import Filters, LogIndex, Row
from ._views import HandlerStats, build_request, handler_summary, parse_time

__all__ = ["Inspector", "create_app"]

_HERE: Final = Path(__file__).parent
_PAGE: Final = 50
_DLQ_PAGE: Final = 50
#: Content-Security-Policy of every page: scripts only from the app itself (no inline script,
#: so an injected <script> would not run even if escaping failed), nothing from elsewhere.
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_SECURITY_HEADERS: Final = {
    "content-security-policy": _CSP,
    "x-content-type-options": "nosniff",
    # not no-referrer: a browser then sends `Origin: null` with the forms, refused below
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
_DONE: Final = {
    "retried": "Retried: the handler succeeded, the entry was removed.",
    "retry-failed": "Retried: the handler failed again (the entry's attempts went up).",
    "deleted": "The entry was deleted.",
    "purged": "Purged.",
}


@dataclass
class Inspector:
    """What one ``aperion-bus inspect`` serves: the files, the mode, the per-run token."""

    log: Path | None
    dlq: Path | None = None
    config: Path | None = None
    allow_actions: bool = False
    index_path: Path | None = None
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: seconds between two index refreshes a page may trigger, and between live polls
    refresh_interval: float = 0.5
    follow_interval: float = 0.3
    _index: LogIndex | None = field(default=None, init=False, repr=False)
    _refreshed: float = field(default=0.0, init=False, repr=False)
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or len(self.token) < 16:
            raise ValueError("token must be a string of at least 16 characters (the default is "
                             "a random one: secrets.token_urlsafe(24))")
        for name in ("log", "dlq", "config", "index_path"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a path or None, got {type(value).__name__}")
            if value is not None:
                setattr(self, name, Path(value))

    @property
    def cookie(self) -> str:
        """The token cookie's name: one per run, so two inspectors on one host do not clash."""
        return "aperion_inspector_" + hashlib.sha256(self.token.encode()).hexdigest()[:10]

    @property
    def index(self) -> LogIndex | None:
        """The log's index (opened on first use), or None without a log."""
        if self._index is None and self.log is not None:
            with self._refresh_lock:
                if self._index is None:
                    self._index = LogIndex(self.log, self.index_path)
        return self._index

    def refresh(self, force: bool = False) -> int:
        """Bring the index up to date (at most every ``refresh_interval`` unless ``force``)."""
        index = self.index
        if index is None:
            return 0
        with self._refresh_lock:
            now = time.monotonic()
            if not force and now - self._refreshed < self.refresh_interval:
                return 0
            self._refreshed = now
            return index.refresh()

    def close(self) -> None:
        """Close the index if it was opened (:meth:`index` opens it again)."""
        if self._index is not None:
            self._index.close()
            self._index = None


# ---------------------------------------------------------------------- formatting
def _dur(seconds: object) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return "?"
    s = float(seconds)
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _text(value: object) -> str:
    """Any value as one line of text with its control characters shown (``\\x1b``)."""
    return escape("" if value is None else value)


def _text_lines(value: object) -> str:
    """Multi-line text (a traceback) with its control characters shown, newlines kept."""
    return escape("" if value is None else value, multiline=True)


def _compact(value: object, width: int = 140) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    text = json_escape(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _pretty(value: object) -> str:
    return json_document(value)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,  # every value is HTML-escaped unless marked safe (nothing is)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=format_time, dur=_dur, t=_text, tml=_text_lines, compact=_compact, pretty=_pretty,
        pct=_pct,
    )
    return env


# ---------------------------------------------------------------------- the token gate
class TokenGate:
    """Every request needs the run's token: ``?token=`` once (it is then kept in a cookie,
    ``HttpOnly``, ``SameSite=Strict``, and the URL is cleaned), or the cookie. A request that
    changes something (not GET/HEAD) is refused when it comes from another site
    (``Sec-Fetch-Site``) or another origin (``Origin``); the form carries the token too."""

    def __init__(self, app: ASGIApp, inspector: Inspector) -> None:
        self.app = app
        self.inspector = inspector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        insp = self.inspector
        response: Response | None = None
        given = request.query_params.get("token")
        if scope["path"].startswith("/static/"):
            pass
        elif given is not None and request.method in ("GET", "HEAD"):
            if secrets.compare_digest(given.encode(), insp.token.encode()):
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + (("?" + urlencode(rest)) if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(
                    insp.cookie, insp.token, httponly=True, samesite="strict", path="/"
                )
            else:
                response = _refusal("wrong token", 403)
        else:
            cookie = request.cookies.get(insp.cookie, "")
            if not secrets.compare_digest(cookie.encode(), insp.token.encode()):
                response = _refusal(
                    "this inspector needs its token: open the URL that `aperion-bus inspect` "
                    "printed (it ends with ?token=...)",
                    403,
                )
            elif request.method not in ("GET", "HEAD"):
                response = _cross_origin(request)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)


def _cross_origin(request: Request) -> Response | None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return _refusal(f"refused: a cross-site request (Sec-Fetch-Site: {site})", 403)
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own:
            return _refusal(f"refused: a request from another origin ({origin})", 403)
    return None


def _refusal(message: str, status: int) -> Response:
    return PlainTextResponse(_text(message) + "\n", status_code=status, headers=_SECURITY_HEADERS)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                for k, v in _SECURITY_HEADERS.items():
                    if k.encode() not in have:
                        headers.append((k.encode(), v.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add)


# ---------------------------------------------------------------------- the app
def create_app(inspector: Inspector) -> Starlette:
    """The ASGI app serving ``inspector`` (wrapped in the token gate and security headers)."""
    env = _environment()

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(
            insp=inspector, path=request.url.path, token=inspector.token, **context
        )
        return HTMLResponse(html, status_code=status)

    def bad(request: Request, message: str) -> HTMLResponse:
        return page(request, "error.html", 400, message=message)

    def filters_of(request: Request) -> Filters:
        q = request.query_params
        return Filters(
            event_type=q.get("type", "").strip(),
            correlation_id=q.get("cid", "").strip(),
            source=q.get("source", "").strip(),
            since=parse_time(q.get("since", "")),
            until=parse_time(q.get("until", "")),
            text=q.get("q", "").strip(),
        )

    def events(request: Request) -> Response:
        if inspector.index is None:
            return page(request, "nolog.html")
        try:
            f = filters_of(request)
            before = _int_arg(request, "before")
        except ValueError as exc:
            return bad(request, str(exc))
        inspector.refresh()
        index = inspector.index
        rows, next_before = index.page(f, before=before, limit=_PAGE)
        q = {k: v for k, v in request.query_params.items() if k not in ("before", "token") and v}
        return page(
            request, "events.html",
            rows=rows, f=f, q=q, before=before,
            next_url=None if next_before is None else "/?" + urlencode(
                {**q, "before": next_before}
            ),
            last_id=index.max_id(), total=index.count(), bad_lines=index.bad_lines,
            follow_query=urlencode(q),
        )

    def record(request: Request) -> Response:
        index = inspector.index
        if index is None:
            return page(request, "nolog.html")
        try:
            rid = int(request.path_params["rid"])
        except ValueError:
            return bad(request, "a record id is a number")
        inspector.refresh()
        got = index.get(rid)
        if got is None:
            return page(request, "error.html", 404, message=f"no record {rid} in the log")
        row, rec = got
        return page(request, "record.html", row=row, rec=rec)

    def request_view(request: Request) -> Response:
        index = inspector.index
        if index is None:
            return page(request, "nolog.html")
        cid = request.query_params.get("cid", "")
        if not cid:
            return bad(request, "give a correlation id (?cid=...)")
        inspector.refresh()
        limit = 5000
        records = index.correlation(cid, limit=limit)
        view = build_request(cid, records, truncated=len(records) >= limit)
        return page(request, "request.html", view=view, cid=cid)

    def handlers(request: Request) -> Response:
        index = inspector.index
        if index is None:
            return page(request, "nolog.html")
        inspector.refresh()
        stats, t0, t1 = handler_summary(index.handler_calls())
        charts = [(h, _chart(h)) for h in stats]
        return page(request, "handlers.html", charts=charts, t0=t0, t1=t1)

    async def stream(request: Request) -> Response:
        index = inspector.index
        if index is None:
            return PlainTextResponse("no audit log", status_code=404)
        try:
            f = filters_of(request)
            after = _int_arg(request, "after")
            last = request.headers.get("last-event-id")
            if last is not None and last.isdigit():
                after = int(last)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        if after is None:
            await to_thread.run_sync(inspector.refresh)
            after = index.max_id()
        return StreamingResponse(
            _follow(request, inspector, f, after),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    def dlq_queue() -> Any:
        if inspector.dlq is None or not inspector.dlq.is_file():
            return None
        from aperion_bus_dlq import DeadLetterQueue

        return DeadLetterQueue(path=inspector.dlq)

    def dlq_list(request: Request) -> Response:
        queue = dlq_queue()
        if queue is None:
            return page(request, "nodlq.html")
        q = request.query_params
        reason = q.get("reason", "")
        etype = q.get("type", "").strip()
        text = q.get("q", "").strip().casefold()
        try:
            offset = _int_arg(request, "offset") or 0
            reasons = [FailureReason(reason)] if reason else [None]
        except ValueError:
            return bad(request, f"unknown failure reason {reason!r}" if reason else "bad offset")
        with queue:
            matched = []
            for entry in queue.iter_entries(reasons[0]):
                if etype and not fnmatch.fnmatchcase(entry.event_type, etype):
                    continue
                if text and text not in " ".join(
                    (entry.id, entry.event_type, entry.handler_name or "", entry.error)
                ).casefold():
                    continue
                matched.append(entry)
            stats = queue.get_stats()
        matched.reverse()  # newest first
        shown = matched[offset : offset + _DLQ_PAGE]
        base = {k: v for k, v in q.items() if k not in ("offset", "done", "token") and v}
        more = offset + _DLQ_PAGE < len(matched)
        return page(
            request, "dlq.html", entries=shown, total=len(matched), stats=stats,
            reason=reason, etype=etype, text=q.get("q", ""), offset=offset,
            reasons=[r.value for r in FailureReason],
            next_url="/dlq?" + urlencode({**base, "offset": offset + _DLQ_PAGE}) if more else None,
            done=_DONE.get(q.get("done", "")),
        )

    def dlq_entry(request: Request) -> Response:
        queue = dlq_queue()
        if queue is None:
            return page(request, "nodlq.html")
        with queue:
            entry = queue.get(request.path_params["eid"])
        if entry is None:
            return page(request, "error.html", 404, message="no such dead letter (retried, "
                        "deleted or purged?)")
        done = _DONE.get(request.query_params.get("done", ""))
        return page(request, "dlq_entry.html", e=entry, done=done)

    async def action(request: Request, run: Callable[[Any, dict[str, str]], str]) -> Response:
        if not inspector.allow_actions:
            return page(request, "error.html", 403, message="read-only: start `aperion-bus "
                        "inspect --allow-actions` to retry or purge dead letters")
        form = await _form(request)
        if form is None:
            return page(request, "error.html", 400, message="expected a form "
                        "(application/x-www-form-urlencoded, at most 64 KiB)")
        given = form.get("token")
        if not isinstance(given, str) or not secrets.compare_digest(
            given.encode(), inspector.token.encode()
        ):
            return page(request, "error.html", 403, message="refused: the form's token is "
                        "missing or wrong (reload the page)")
        queue = dlq_queue()
        if queue is None:
            return page(request, "nodlq.html", 404)
        fields = {**form, **request.path_params}
        try:
            with queue:
                target = await to_thread.run_sync(lambda: run(queue, fields))
        except ValueError as exc:
            return bad(request, str(exc))
        except Exception as exc:  # the DLQ's own errors: shown, not a 500
            return page(request, "error.html", 409, message=f"{type(exc).__name__}: {exc}")
        return RedirectResponse(target, status_code=303)

    def _retry(queue: Any, fields: dict[str, str]) -> str:
        from aperion_bus import EventBus

        eid = fields["eid"]
        bus = EventBus.from_config(inspector.config)
        try:
            ok = queue.retry(eid, bus)
        finally:
            bus.shutdown()
        if ok:
            return "/dlq?done=retried"
        return f"/dlq/{_quote(eid)}?done=retry-failed"

    def _delete(queue: Any, fields: dict[str, str]) -> str:
        if not queue.remove(fields["eid"]):
            raise ValueError("no such dead letter")
        return "/dlq?done=deleted"

    def _purge(queue: Any, fields: dict[str, str]) -> str:
        text = fields.get("older_than_hours", "").strip()
        try:
            hours = float(text)
        except ValueError:
            raise ValueError(f"purge: expected a number of hours, got {text!r}") from None
        if not hours >= 0:
            raise ValueError(f"purge: hours must be >= 0, got {text!r}")
        queue.clear_older_than(hours)
        return "/dlq?done=purged"

    async def retry(request: Request) -> Response:
        return await action(request, _retry)

    async def delete(request: Request) -> Response:
        return await action(request, _delete)

    async def purge(request: Request) -> Response:
        return await action(request, _purge)

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("inspector.js", "inspector.css"):
            return PlainTextResponse("not found", status_code=404)
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return Response((_HERE / "static" / name).read_bytes(), media_type=media)

    routes = [
        Route("/", events),
        Route("/record/{rid}", record),
        Route("/request", request_view),
        Route("/handlers", handlers),
        Route("/api/stream", stream),
        Route("/dlq", dlq_list),
        Route("/dlq/purge", purge, methods=["POST"]),
        Route("/dlq/{eid}", dlq_entry),
        Route("/dlq/{eid}/retry", retry, methods=["POST"]),
        Route("/dlq/{eid}/delete", delete, methods=["POST"]),
        Route("/static/{name}", static),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
    app = Starlette(routes=routes)
    app.state.inspector = inspector
    app.add_middleware(TokenGate, inspector=inspector)
    app.add_middleware(SecurityHeaders)
    return app


async def _form(request: Request, limit: int = 64 * 1024) -> dict[str, str] | None:
    """The fields of an urlencoded form (what the pages' forms send; no multipart parser
    needed), or None for another content type or a body over ``limit`` bytes."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None
    return dict(pairs)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _int_arg(request: Request, name: str) -> int | None:
    text = request.query_params.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"{name} must be a number, got {text!r}")
    return int(text)


def row_json(row: Row, rec: dict[str, Any]) -> dict[str, Any]:
    """One timeline row for the live view (every text already has its controls escaped; the
    page's script puts them in with ``textContent``, never as HTML)."""
    return {
        "id": row.id,
        "time": format_time(row.ts),
        "event_type": _text(row.event_type),
        "source": _text(row.source),
        "correlation_id": _text(row.correlation_id),
        "cid": row.correlation_id or "",
        "payload": _compact(rec.get("payload")),
        "failed": row.event_type == "system.handler_error",
    }


async def _follow(
    request: Request, inspector: Inspector, f: Filters, after: int
) -> AsyncIterator[str]:
    index = inspector.index
    assert index is not None
    last_ping = time.monotonic()
    yield "retry: 1000\n\n"
    while True:
        if await request.is_disconnected():
            return
        rows = await to_thread.run_sync(_poll, inspector, index, f, after)
        for row, rec in rows:
            after = max(after, row.id)
            yield f"id: {row.id}\nevent: record\ndata: {json.dumps(row_json(row, rec))}\n\n"
        if rows:
            continue
        now = time.monotonic()
        if now - last_ping > 10:
            last_ping = now
            yield ": ping\n\n"
        await asyncio.sleep(inspector.follow_interval)


def _poll(
    inspector: Inspector, index: LogIndex, f: Filters, after: int
) -> list[tuple[Row, dict[str, Any]]]:
    inspector.refresh(force=True)
    return index.after(after, f)


def _chart(h: HandlerStats, width: int = 480, height: int = 120) -> dict[str, Any]:
    """Polyline points (latency p50/p95/p99) and bars (failure rate) for an SVG chart."""
    top = max((b.p99 for b in h.buckets), default=0.0) or 1.0
    n = len(h.buckets)
    step = width / max(1, n)

    def line(values: Sequence[float]) -> str:
        # a bucket without calls has no latency: no point there (not a dip to zero)
        return " ".join(
            f"{i * step + step / 2:.1f},{height - v / top * (height - 10):.1f}"
            for i, (v, b) in enumerate(zip(values, h.buckets, strict=True))
            if b.calls
        )

    bars = [
        (i * step + 1, b.failure_rate * height, b.failure_rate, b.calls)
        for i, b in enumerate(h.buckets)
    ]

    def y(v: float) -> str:
        return f"{height - v / top * (height - 10):.1f}"

    dots = [
        (f"{i * step + step / 2:.1f}", y(b.p50), y(b.p99), b)
        for i, b in enumerate(h.buckets)
        if b.calls
    ]
    return {
        "width": width, "height": height, "step": step, "top": top,
        "p50": line([b.p50 for b in h.buckets]),
        "p95": line([b.p95 for b in h.buckets]),
        "p99": line([b.p99 for b in h.buckets]),
        "bars": bars,
        "dots": dots,
    }

"""The web app without a browser (Starlette's TestClient): the token gate, the filters and
pages, escaping of hostile values, read-only mode, actions and their cross-origin refusals."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from aperion_bus_dlq import DeadLetterQueue
from aperion_bus_inspector import Inspector, create_app
from starlette.testclient import TestClient

from .conftest import HOSTILE_CID, Project, client_for


def _rows(body: str) -> list[str]:
    return re.findall(r'<tr data-id="\d+"[^>]*>.*?</tr>', body, re.S)


def _types(body: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<td class="etype">(.*?)</td>', body, re.S)]


# ------------------------------------------------------------------ the token
def test_every_page_needs_the_runs_token(project: Project) -> None:
    insp = project.inspector()
    client = TestClient(create_app(insp), base_url="http://127.0.0.1:8790")
    for path in ("/", "/handlers", "/dlq", "/request?cid=req-1", "/record/1", "/api/stream"):
        r = client.get(path)
        assert r.status_code == 403, path
        assert "needs its token" in r.text
    assert client.get("/?token=wrong").status_code == 403
    r = client.get(f"/?type=user.*&token={insp.token}", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/?type=user.%2A"  # the token leaves the URL
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and insp.token in cookie
    assert client.get("/").status_code == 200  # the cookie now


def test_another_runs_cookie_does_not_open_this_one(project: Project) -> None:
    first, second = project.inspector(), project.inspector()
    client_for(first)
    other = TestClient(create_app(second))
    other.cookies.set(second.cookie, first.token)
    assert other.get("/").status_code == 403
    other.cookies.set(second.cookie, second.token)
    assert other.get("/").status_code == 200


def test_pages_carry_a_strict_content_security_policy(project: Project) -> None:
    r = client_for(project.inspector()).get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert r.headers["x-frame-options"] == "DENY"
    assert "<script>" not in r.text  # the one script is a file: /static/inspector.js


# ------------------------------------------------------------------ the timeline
def test_timeline_is_newest_first_and_paginated(project: Project) -> None:
    client = client_for(project.inspector())
    first = client.get("/").text
    ids = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', first)]
    assert len(ids) == 50 and ids == sorted(ids, reverse=True)
    older = re.search(r'href="(/\?before=\d+)" id="older"', first)
    assert older is not None
    second = client.get(html.unescape(older.group(1))).text
    ids2 = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', second)]
    assert ids2 and max(ids2) < min(ids)
    assert 'id="newest"' in second
    assert 'id="follow"' not in second  # live follow only on the first page


def test_filters_type_pattern_correlation_source_text(project: Project) -> None:
    client = client_for(project.inspector())
    body = client.get("/", params={"type": "user.*"}).text
    assert set(_types(body)) == {"user.login"} and len(_rows(body)) == 12
    body = client.get("/", params={"cid": "req-3"}).text
    assert "user.login" in _types(body) and "system.handler_error" in _types(body)
    assert all("req-3" in r for r in _rows(body))
    body = client.get("/", params={"source": "api", "type": "chat.message"}).text
    assert len(_rows(body)) == 12
    body = client.get("/", params={"q": "user7"}).text
    assert _types(body) == ["user.login"]
    body = client.get("/", params={"q": "no such text anywhere"}).text
    assert _rows(body) == [] and "match these filters" in body


def test_time_range_filter(project: Project) -> None:
    client = client_for(project.inspector())
    assert _rows(client.get("/", params={"until": "2000-01-01T00:00"}).text) == []
    assert len(_rows(client.get("/", params={"since": "2000-01-01T00:00"}).text)) == 50
    assert len(_rows(client.get("/", params={"since": "946684800"}).text)) == 50
    assert _rows(client.get("/", params={"since": "4102444800"}).text) == []


def test_a_bad_filter_is_a_clear_400(project: Project) -> None:
    client = client_for(project.inspector())
    r = client.get("/", params={"since": "yesterday-ish"})
    assert r.status_code == 400 and "invalid time &#39;yesterday-ish&#39;" in r.text
    r = client.get("/", params={"before": "x1"})
    assert r.status_code == 400 and "before must be a number" in r.text


# ------------------------------------------------------------------ escaping
def test_hostile_values_are_escaped_everywhere(project: Project) -> None:
    client = client_for(project.inspector())
    pages = [
        client.get("/").text,
        client.get("/", params={"cid": HOSTILE_CID}).text,
        client.get("/request", params={"cid": HOSTILE_CID}).text,
    ]
    rid = re.search(r'<tr data-id="(\d+)"', pages[1])
    assert rid is not None
    pages.append(client.get(f"/record/{rid.group(1)}").text)
    dlq_page = client.get("/dlq").text
    pages.append(dlq_page)
    for body in pages:
        for raw in ("<script>alert", "<img src=x", "<svg onload", "<b>src</b>"):
            assert raw not in body
        # control characters and bidi overrides are shown escaped, except in a filter's own
        # input field (its value must come back as typed to filter again)
        shown = re.sub(r"<form .*?</form>", "", body, flags=re.S)
        for raw in ("\x1b", "\x00", "\x7f", "\u202e"):
            assert raw not in shown
    # and they are shown as text: control characters as \x1b, markup as markup
    assert "evil.&lt;script&gt;alert(&#39;type&#39;)&lt;/script&gt;\\x1b[2J" in pages[0]
    assert "&lt;img src=x onerror=alert(&#39;cid&#39;)&gt;\\u202e" in pages[2]
    assert "store down &lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;" in dlq_page


# ------------------------------------------------------------------ a request
def test_request_view_shows_the_causation_tree_and_handlers(project: Project) -> None:
    body = client_for(project.inspector()).get("/request", params={"cid": "req-2"}).text
    labels = re.findall(r'<div class="wf-label" style="padding-left: ([\d.]+)em">\s*(.*?)</div>',
                        body, re.S)
    texts = [(float(pad), re.sub(r"<[^>]+>", "", text).split()) for pad, text in labels]
    # user.login, its handler, the chat.message its handler emitted (one level down), ...
    assert texts[0] == (0.0, ["user.login"])
    assert texts[1][1][0].endswith(".login") and texts[1][0] == 1.2
    assert texts[2][0] == 1.2 and "chat.message" in texts[2][1]
    assert "emitted by" in " ".join(texts[2][1])
    assert "4 events · 3 handler calls · " in body and ">1 failed<" in body
    assert 'class="wf-row call error"' in body


def test_request_view_highlights_a_timeout(project: Project) -> None:
    body = client_for(project.inspector()).get("/request", params={"cid": "req-report"}).text
    assert 'class="wf-row call timeout"' in body and ">1 timed out<" in body
    assert "TimeoutError" in body


def test_request_view_of_an_unknown_id_and_without_one(project: Project) -> None:
    client = client_for(project.inspector())
    assert 'id="no-request"' in client.get("/request", params={"cid": "nope"}).text
    assert client.get("/request").status_code == 400
    assert client.get("/record/99999999").status_code == 404


# ------------------------------------------------------------------ handlers
def test_handlers_view_has_percentiles_rates_and_charts(project: Project) -> None:
    body = client_for(project.inspector()).get("/handlers").text
    table = body.split('id="handler-table"')[1].split("</table>")[0]
    rows = {
        re.sub(r"<[^>]+>", "", r.split("</td>")[0]).strip(): re.findall(r"<td>(.*?)</td>", r)
        for r in table.split("<tr")[2:]
    }
    store = next(v for k, v in rows.items() if k.endswith(".store"))
    assert store[1:5] == ["24", "12", "0", "50.0%"]  # calls, failed, timed out, rate
    slow = next(v for k, v in rows.items() if k.endswith(".slow"))
    assert slow[1:5] == ["1", "0", "1", "100.0%"]
    assert body.count("<svg") == len(rows) and body.count('<polyline class="p99"') == len(rows)


# ------------------------------------------------------------------ dead letters
def test_dlq_list_filter_and_show(project: Project) -> None:
    client = client_for(project.inspector())
    body = client.get("/dlq").text
    assert "handler_error" in body and "all_handlers_failed" in body
    only = client.get("/dlq", params={"reason": "handler_timeout"}).text
    assert only.count("handler_timeout</td>") == 1 and "handler_error</td>" not in only
    assert "no dead letters match" in client.get("/dlq", params={"type": "nothing.*"}).text
    assert client.get("/dlq", params={"reason": "bogus"}).status_code == 400
    with DeadLetterQueue(path=project.dlq) as queue:
        entry = next(e for e in queue.get_all() if e.reason.value == "handler_error")
    page = client.get(f"/dlq/{entry.id}").text
    assert 'id="traceback"' in page and "RuntimeError" in page and 'id="attempts">1<' in page
    assert 'id="retry"' not in page  # read-only


def test_read_only_refuses_actions(project: Project) -> None:
    insp = project.inspector()
    client = client_for(insp)
    with DeadLetterQueue(path=project.dlq) as queue:
        entry = queue.get_all()[0]
        before = queue.size()
    for path in (f"/dlq/{entry.id}/retry", f"/dlq/{entry.id}/delete", "/dlq/purge"):
        r = client.post(path, data={"token": insp.token, "older_than_hours": "0"})
        assert r.status_code == 403 and "read-only" in r.text
    with DeadLetterQueue(path=project.dlq) as queue:
        assert queue.size() == before


def test_actions_need_the_form_token_and_the_same_origin(project: Project) -> None:
    insp = project.inspector(allow_actions=True)
    client = client_for(insp)
    with DeadLetterQueue(path=project.dlq) as queue:
        entry = queue.get_all()[0]
    path = f"/dlq/{entry.id}/delete"
    assert client.post(path, data={"older_than_hours": "1"}).status_code == 403  # no token
    r = client.post(path, json={"token": insp.token})
    assert r.status_code == 400 and "expected a form" in r.text
    assert client.post(path, data={"token": "guess"}).status_code == 403
    r = client.post(path, data={"token": insp.token},
                    headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "another origin" in r.text
    r = client.post(path, data={"token": insp.token}, headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403 and "cross-site" in r.text
    # no cookie (another site's form cannot send it: SameSite=Strict)
    bare = TestClient(create_app(insp), base_url="http://127.0.0.1:8790")
    assert bare.post(path, data={"token": insp.token}).status_code == 403
    with DeadLetterQueue(path=project.dlq) as queue:
        assert queue.get(entry.id) is not None
    r = client.post(path, data={"token": insp.token},
                    headers={"origin": "http://127.0.0.1:8790", "sec-fetch-site": "same-origin"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dlq?done=deleted"
    with DeadLetterQueue(path=project.dlq) as queue:
        assert queue.get(entry.id) is None


def test_retry_runs_the_configs_handler(project: Project) -> None:
    insp = project.inspector(allow_actions=True)
    client = client_for(insp)
    with DeadLetterQueue(path=project.dlq) as queue:
        entry = next(e for e in queue.get_all() if (e.handler_name or "").endswith(".ship"))
    r = client.post(f"/dlq/{entry.id}/retry", data={"token": insp.token})
    assert r.status_code == 200 and "the handler failed again" in r.text  # still broken
    with DeadLetterQueue(path=project.dlq) as queue:
        got = queue.get(entry.id)
        assert got is not None and got.attempts == 2
    (project.dir / "broken").unlink()
    r = client.post(f"/dlq/{entry.id}/retry", data={"token": insp.token})
    assert "the handler succeeded" in r.text
    with DeadLetterQueue(path=project.dlq) as queue:
        assert queue.get(entry.id) is None


def test_purge_and_its_bad_input(project: Project) -> None:
    insp = project.inspector(allow_actions=True)
    client = client_for(insp)
    r = client.post("/dlq/purge", data={"token": insp.token, "older_than_hours": "soon"})
    assert r.status_code == 400 and "expected a number of hours" in r.text
    r = client.post("/dlq/purge", data={"token": insp.token, "older_than_hours": "0"})
    assert r.status_code == 200 and "Purged." in r.text
    with DeadLetterQueue(path=project.dlq) as queue:
        assert queue.size() == 0


def test_without_files_the_pages_say_what_to_configure(tmp_path: pytest.TempPathFactory) -> None:
    insp = Inspector(log=None, dlq=None)
    client = client_for(insp)
    assert "No audit log" in client.get("/").text
    assert "No dead-letter file configured" in client.get("/dlq").text


def test_the_public_api() -> None:
    import aperion_bus_inspector

    assert aperion_bus_inspector.__all__ == [
        "Filters", "IndexFileError", "Inspector", "LogIndex", "create_app", "index_path_for",
    ]
    assert all(hasattr(aperion_bus_inspector, n) for n in aperion_bus_inspector.__all__)


def test_bad_inspector_arguments_are_clear_errors(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(ValueError, match="token must be a string of at least 16 characters"):
        Inspector(log=None, token="")
    with pytest.raises(TypeError, match="log must be a path or None, got int"):
        Inspector(log=3)  # type: ignore[arg-type]
    assert Inspector(log="events.jsonl").log == Path("events.jsonl")  # type: ignore[arg-type]

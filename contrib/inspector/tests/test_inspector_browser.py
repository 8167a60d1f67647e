"""In a real browser: Playwright driving Debian's Chromium through every view of an inspector
serving logs made by a real bus, hostile records included, and a live follow across rotations.

Skipped only when /usr/bin/chromium is missing outside CI (with ``CI`` set it fails: CI
installs it, see .ci/run). Screenshots of each view go to the test's directory, and to
docs/images/inspector-*.png with ``APERION_SCREENSHOTS=1`` (how the docs' images are made).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aperion_bus import CorrelationContext, EventBus, refresh_entry_points
from aperion_bus_audit import AuditPlugin

from .conftest import HOSTILE_CID, HOSTILE_PAYLOAD, HOSTILE_TYPE, Project, make_project
from .test_inspector_cli import Server, start

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: CI must install chromium (see .ci/run)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    with pytest.MonkeyPatch.context() as mp:
        yield make_project(tmp_path_factory.mktemp("browser"), mp)
        sys.modules.pop("inspector_test_handlers", None)
    refresh_entry_points()


@pytest.fixture(scope="module")
def server(project: Project) -> Iterator[Server]:
    s = start("--config", str(project.config), "--allow-actions")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A page that opened the printed URL (so it holds the token cookie); every dialog a
    script might open (alert) is recorded: there must be none."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.goto(str(server.info["url"]))
    yield pg
    context.close()
    assert dialogs == [], f"a script ran: {dialogs}"


def shot(pg: Page, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"inspector-{name}.png"
    pg.screenshot(path=str(path))
    if os.environ.get("APERION_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(exist_ok=True)
        shutil.copy(path, DOCS_IMAGES / path.name)


def go(pg: Page, selector: str) -> None:
    """Click what leads to another page, and wait for that page."""
    with pg.expect_navigation():
        pg.locator(selector).first.click()


def types(pg: Page) -> list[str]:
    return pg.locator("#rows td.etype").all_inner_texts()


def test_events_filters_pages_and_escapes(page: Page, server: Server, tmp_path: Path) -> None:
    pg = page
    assert pg.url == server.base + "/"  # the token left the address bar
    assert pg.locator("#mode").inner_text() == "actions allowed"
    # the hostile record shows as text: markup as markup, escape sequences as \x1b
    hostile = pg.locator("#rows tr").filter(has_text="evil.").first
    assert hostile.locator("td.etype").inner_text() == (
        HOSTILE_TYPE.replace("\x1b", "\\x1b")
    )
    assert pg.locator("#rows script, #rows img, #rows svg").count() == 0
    shot(pg, "events", tmp_path)
    pg.fill("input[name=type]", "user.*")
    go(pg, "#filters button")
    assert set(types(pg)) == {"user.login"} and len(types(pg)) == 12
    go(pg, "text=clear")
    first = pg.locator("#rows tr").first.get_attribute("data-id")
    go(pg, "#older")
    expect(pg.locator("#newest")).to_be_visible()
    assert int(pg.locator("#rows tr").first.get_attribute("data-id") or 0) < int(first or 0)
    pg.fill("input[name=q]", "user7")
    go(pg, "#filters button")
    assert types(pg) == ["user.login"]


def test_request_view_from_a_correlation_link(page: Page, tmp_path: Path) -> None:
    pg = page
    pg.fill("input[name=cid]", "req-2")
    go(pg, "#filters button")
    with pg.expect_navigation():
        pg.locator("#rows a", has_text="req-2").first.click()
    assert pg.locator("#cid").inner_text() == "req-2"
    assert "4 events · 3 handler calls" in pg.locator("#request-summary").inner_text()
    failed = pg.locator(".wf-row.call.error")
    assert failed.count() == 1 and "error" in failed.inner_text()
    assert "emitted by" in pg.locator(".wf-row.event", has_text="chat.message").first.inner_text()
    assert "<script>" in pg.locator("#request-handlers").inner_text()  # the error, as text
    shot(pg, "request", tmp_path)
    pg.goto(pg.url.split("/request")[0] + "/request?cid=req-report")
    assert pg.locator(".wf-row.call.timeout").count() == 1
    shot(pg, "request-timeout", tmp_path)


def test_hostile_request_and_record(page: Page, tmp_path: Path) -> None:
    pg = page
    pg.fill("input[name=cid]", HOSTILE_CID)
    go(pg, "#filters button")
    assert types(pg)[-1].startswith("evil.")
    with pg.expect_navigation():
        pg.locator("#rows a", has_text="onerror").first.click()
    assert pg.locator("#cid").inner_text() == HOSTILE_CID.replace("\u202e", "\\u202e")
    shot(pg, "hostile", tmp_path)
    with pg.expect_navigation():
        pg.locator(".wf-row.event a", has_text="evil.").click()
    text = pg.locator("#record-json").inner_text()
    assert HOSTILE_PAYLOAD["html"] in text and "\\u001b[31m" in text  # JSON-escaped
    assert pg.locator("#record-json *").count() == 0  # nothing in it became an element


def test_handlers_view(page: Page, tmp_path: Path) -> None:
    pg = page
    go(pg, "#nav-handlers")
    rows = pg.locator("#handler-table tbody tr")
    assert rows.count() >= 4
    assert pg.locator("figure.chart svg").count() == rows.count()
    assert "50.0%" in rows.filter(has_text=".store").inner_text()
    shot(pg, "handlers", tmp_path)


def test_dead_letters_show_retry_delete_purge(page: Page, tmp_path: Path) -> None:
    pg = page
    go(pg, "#nav-dlq")
    assert pg.locator("#dlq tbody tr").count() >= 12
    shot(pg, "dead-letters", tmp_path)
    pg.select_option("select[name=reason]", "handler_error")
    pg.fill("input[name=type]", "order.*")
    go(pg, "#dlq-filters button")
    assert pg.locator("#dlq tbody tr").count() == 1
    with pg.expect_navigation():
        pg.locator("#dlq tbody a").first.click()
    assert "ConnectionError: carrier down" in pg.locator("#traceback").inner_text()
    assert pg.locator("#attempts").inner_text() == "1"
    shot(pg, "dead-letter", tmp_path)
    go(pg, "#retry button")  # the handler is still broken
    assert "failed again" in pg.locator("#done").inner_text()
    assert pg.locator("#attempts").inner_text() == "2"
    go(pg, "#delete button")
    assert "deleted" in pg.locator("#done").inner_text()
    pg.fill("input[name=older_than_hours]", "0")
    go(pg, "#purge button")
    assert pg.locator("#done").inner_text() == "Purged."
    assert "no dead letters" in pg.locator("#dlq").inner_text()


def test_live_follow_across_rotations(page: Page, project: Project, tmp_path: Path) -> None:
    pg = page
    pg.fill("input[name=type]", "live.*")
    go(pg, "#filters button")
    pg.check("#follow")
    expect(pg.locator("#follow-status")).to_have_text("following")
    plugin = AuditPlugin(path=project.log, max_size_bytes=20000, max_files=50)
    with EventBus(plugins=[plugin]) as bus:
        for i in range(120):  # 10 rotations while the page follows
            with CorrelationContext(f"live-{i}"):
                bus.emit("live.tick", {"n": i, "pad": "p" * 1600}, wait_for_handlers=True)
            if i == 60:
                bus.emit("live.<b>bold</b>\x1b", {"x": "<script>alert(1)</script>"},
                         wait_for_handlers=True)
    expect(pg.locator("#rows tr[data-id]")).to_have_count(121)
    payloads: list[Any] = pg.locator("#rows td.payload").all_inner_texts()
    ns = [int(m.group(1)) for p in payloads if (m := re.search(r'"n": (\d+)', p))]
    assert ns == list(range(119, -1, -1))  # every one, newest first, none twice
    assert "live.<b>bold</b>\\x1b" in types(pg)
    assert pg.locator("#rows b, #rows script").count() == 0
    assert plugin.stats()["rotations"] >= 10
    shot(pg, "live", tmp_path)

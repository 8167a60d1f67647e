"""redact + audit on one bus, as a user configures them: no secret reaches the file's bytes.

(In the root tests/ because it needs both distributions: tools/test_isolated.sh installs a
distribution's runtime dependencies from the workspace, not its test group's.)
"""

from __future__ import annotations

import dataclasses
import enum
import types
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from aperion_bus import Event, EventBus
from aperion_bus.testing import wait_until
from aperion_bus_audit import get_events

# header {"alg":"HS256","typ":"JWT"} . {"sub":"1234567890"} . signature
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)
SECRETS = (
    "Hunter2-dataclass",
    "Hunter2-bytes",
    "Hunter2-enum",
    "Hunter2-proxy",
    "Hunter2-nested",
    "Hunter2-tuple",
    "Hunter2-repr",
    "alice@example.com",
    "bob@example.net",
    "carol@example.org",
    "dave@example.com",
    "4111 1111 1111 1111",
    "4111111111111111",
    "5500-0000-0000-0004",
    JWT,
    JWT.split(".")[0] + "." + JWT.split(".")[1],  # no part of the token
    JWT.split(".")[2],
)


@dataclasses.dataclass
class Login:
    email: str
    password: str


@dataclasses.dataclass
class Session:
    login: Login
    tags: frozenset[str]


class Field(enum.StrEnum):
    PASSWORD = "password"
    NOTE = "note"


class Opaque:
    def __repr__(self) -> str:
        return "Opaque(owner='dave@example.com', password='Hunter2-repr')"


Card = namedtuple("Card", "holder number")


def payloads() -> list[dict[Any, Any]]:
    """A fresh set of payloads: PII in every shape a payload can take."""
    return [
        {"creds": Login("alice@example.com", "Hunter2-dataclass")},
        {"session": Session(Login("bob@example.net", "Hunter2-nested"), frozenset({"x"}))},
        {
            "blob": b"password=Hunter2-bytes from carol@example.org",
            "ba": bytearray(b"4111111111111111"),
        },
        {"emails": {"alice@example.com", "bob@example.net"}, "f": frozenset({"carol@example.org"})},
        {Field.PASSWORD: "Hunter2-enum", Field.NOTE: "mail dave@example.com"},
        {"m": types.MappingProxyType({"password": "Hunter2-proxy", "who": "alice@example.com"})},
        {"deep": {"a": [({"b": ["card 4111 1111 1111 1111"]},)]}, "api_key": "Hunter2-nested"},
        {"t": ("user", "pwd: Hunter2-tuple", "alice@example.com"), "token": ("Hunter2-tuple",)},
        {"card": Card("Bob", "5500-0000-0000-0004"), "note": f"Authorization: Bearer {JWT}"},
        {"text": f"the token {JWT} was sent to bob@example.net", "o": Opaque()},
        {"secret_list": ["Hunter2-nested"], "list": [{"credentials": {"pw": "Hunter2-nested"}}]},
    ]


@pytest.mark.parametrize("wait", [True, False], ids=["wait_for_handlers", "background"])
def test_no_secret_reaches_the_audit_file_and_handlers_see_the_original(
    tmp_path: Path, wait: bool
) -> None:
    log = tmp_path / "events.jsonl"
    bus = EventBus(plugins=["redact", "audit"], settings={"audit": {"path": str(log)}})
    seen: list[Event] = []
    bus.subscribe(seen.append, "user.*")

    def failing(event: Event) -> None:  # its error record carries PII in free text
        raise RuntimeError(f"could not mail alice@example.com with {JWT}")

    bus.subscribe(failing, "user.fail")
    sent = payloads()
    ids = [bus.emit("user.login", p, wait_for_handlers=wait) for p in sent]
    bus.emit("user.fail", {"who": "carol@example.org"}, wait_for_handlers=wait)
    if not wait:
        wait_until(lambda: len(seen) == len(sent) + 1)
    stats = bus.get_stats()
    bus.shutdown()

    raw = log.read_bytes()
    for secret in SECRETS:
        assert secret.encode() not in raw, f"{secret!r} reached {log}"
    assert b"Hunter2" not in raw

    # every record is there, whole and findable; nothing was lost or degraded to a repr
    assert stats["audit_records_lost"] == 0
    assert stats["redact"]["errors"] == 0
    assert stats["audit"]["write_errors"] == 0
    found = {e.event_id: e for e in get_events(log, event_type="user.login", limit=None)}
    assert set(found) == set(ids)
    errors = get_events(log, event_type="system.handler_error", limit=None)
    assert len(errors) == 1 and "[REDACTED_EMAIL]" in repr(errors[0].payload)
    assert found[ids[0]].payload == {
        "creds": {"email": "[REDACTED_EMAIL]", "password": "[REDACTED]"}
    }
    assert found[ids[4]].payload == {"password": "[REDACTED]", "note": "mail [REDACTED_EMAIL]"}

    # handlers got the emitters' objects, untouched
    by_id = {e.event_id: e for e in seen}
    fresh = payloads()
    for event_id, original, again in zip(ids, sent, fresh, strict=True):
        got = by_id[event_id].payload
        assert got is original
        assert repr(got) == repr(again)
    assert by_id[ids[0]].payload["creds"].password == "Hunter2-dataclass"
    assert by_id[ids[2]].payload["blob"].startswith(b"password=Hunter2-bytes")

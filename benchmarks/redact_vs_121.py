"""Audit + redaction of a typical 1 kB payload: aperion-bus + redact vs aperion-event-bus 1.2.1.

    uv run --all-packages python benchmarks/redact_vs_121.py [--rounds 7] [--events 3000] [--varied]

The two sides cannot share a process (1.2.1 lives in its own virtual environment, created
under /tmp on first use: ``pip install aperion-event-bus==1.2.1``; set ``AEB121_PYTHON`` to
use another interpreter), so each round runs one subprocess per side, alternating which goes
first; the script prints the median events/s of each side and their ratio (target: >= 5x).

Workload, same on both sides: one handler, ``emit(..., wait_for_handlers=True)``, audit on,
redaction on, the same ~1 kB payload (a checkout event: names, free-text notes, an email, a
phone number, an address, line items, a password field).

- 1.2.1: ``EventBus(enable_audit=True, event_log_path=..., redactor=Redactor())``.
- ours: ``EventBus(plugins=[RedactPlugin(), AuditPlugin(path)])``: the real audit plugin
  (``aperion-bus-audit``, default settings: flush per record, file lock, no fsync).

By default every event carries the same payload object (what the 1.2.1 comparison in the issue
describes). ``--varied`` gives each event its own payload (its own order id, customer, email,
phone, IP, timestamps and note, built before timing), so that no per-string cache can flatter
the numbers: the strings that identify one order are new in every event.

A second table compares the redactors alone (``Redactor().redact(payload)``), in-process per
side, to show where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VENV_121 = Path(os.environ.get("AEB121_VENV", "/tmp/aeb121"))

PAYLOAD: dict[str, Any] = {
    "order_id": "ord_7f3a9c2e41b8",
    "customer": {
        "id": "cus_48213",
        "name": "Alice Johnson",
        "email": "alice.johnson@example.com",
        "phone": "+1 (415) 555-2671",
        "address": "1600 Amphitheatre Parkway, Mountain View, CA 94043",
        "password": "hunter2-correct-horse",
    },
    "items": [
        {"sku": "SKU-10042", "title": "Wireless mouse, black", "qty": 1, "price": 24.99},
        {"sku": "SKU-20417", "title": "USB-C charging cable 2m", "qty": 2, "price": 9.5},
        {"sku": "SKU-30991", "title": "Laptop stand, aluminium", "qty": 1, "price": 39.0},
    ],
    "currency": "USD",
    "total": 82.99,
    "note": (
        "Please leave the parcel with the concierge if nobody answers. Gift wrap the stand, "
        "include a card saying happy birthday. Call before delivery if the weather is bad."
    ),
    "shipping": {"method": "express", "carrier": "UPS", "eta": "2024-01-17T18:00:00Z"},
    "client": {"user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0", "ip": "203.0.113.7"},
    "created_at": "2024-01-15T10:30:00Z",
    "tags": ["web", "promo-winter", "returning-customer"],
}


# ----------------------------------------------------------------------------- one side
def varied_payloads(n: int) -> list[dict[str, Any]]:
    """``n`` payloads shaped like PAYLOAD, each with its own order-specific strings."""
    out = []
    for i in range(n):
        p = json.loads(json.dumps(PAYLOAD))
        p["order_id"] = f"ord_{0x7F3A9C2E41B8 + i * 7919:012x}"
        c = p["customer"]
        c["id"] = f"cus_{48213 + i}"
        c["name"] = f"Customer {i:05d} Johnson"
        c["email"] = f"alice.johnson{i}@example.com"
        c["phone"] = f"+1 (415) 555-{i % 10000:04d}"
        c["address"] = f"{1600 + i % 900} Amphitheatre Parkway, Mountain View, CA 94043"
        c["password"] = f"hunter2-correct-horse-{i}"
        p["note"] = PAYLOAD["note"] + f" Order {i} of the winter promotion."
        p["client"]["ip"] = f"203.0.{i // 256 % 256}.{i % 256}"
        minute, second = divmod(i % 3600, 60)
        p["created_at"] = f"2024-01-15T10:{minute:02d}:{second:02d}Z"
        p["shipping"]["eta"] = f"2024-01-17T18:{minute:02d}:{second:02d}Z"
        out.append(p)
    return out


def _emitter(bus: Any, events: int, varied: bool) -> Any:
    if not varied:
        return lambda: bus.emit("order.created", PAYLOAD, wait_for_handlers=True)
    payloads = varied_payloads(events + min(200, events))
    it = iter(payloads)
    return lambda: bus.emit("order.created", next(it), wait_for_handlers=True)


def _redact_timer(r: Any, varied: bool) -> Any:
    if not varied:
        return lambda: r.redact(PAYLOAD)
    payloads = varied_payloads(2001)
    it = iter(payloads)
    return lambda: r.redact(next(it))


def _run(make_bus: Any, redactor: Any, events: int, varied: bool) -> dict[str, float]:
    """One side: ``make_bus(path)`` builds a bus that audits to ``path`` with redaction on."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        bus = make_bus(path)
        count = [0]

        def handler(event: Any) -> None:
            count[0] += 1

        bus.subscribe(handler, "order.*")
        rate = _measure(_emitter(bus, events, varied), events)
        bus.shutdown()
        lines = path.read_text(encoding="utf-8").splitlines()
        _check(lines[-1], count[0])
    return {"events_per_s": rate, "redact_us": _time_us(_redact_timer(redactor, varied))}


def run_ours(events: int, varied: bool) -> dict[str, float]:
    from aperion_bus import EventBus
    from aperion_bus_audit import AuditPlugin
    from aperion_bus_redact import Redactor, RedactPlugin

    def make_bus(path: Path) -> EventBus:
        return EventBus(plugins=[RedactPlugin(), AuditPlugin(path)])

    return _run(make_bus, Redactor(), events, varied)


def run_121(events: int, varied: bool) -> dict[str, float]:
    from aperion_event_bus import EventBus, Redactor  # type: ignore[import-not-found]

    def make_bus(path: Path) -> Any:
        return EventBus(enable_audit=True, event_log_path=path, redactor=Redactor(enabled=True))

    return _run(make_bus, Redactor(enabled=True), events, varied)


def _measure(emit: Any, events: int) -> float:
    for _ in range(min(200, events)):  # warm up
        emit()
    t0 = time.perf_counter()
    for _ in range(events):
        emit()
    return events / (time.perf_counter() - t0)


def _time_us(fn: Any, n: int = 2000) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def _check(last_line: str, handled: int) -> None:
    record = json.loads(last_line)
    text = json.dumps(record)
    assert handled > 0
    assert "hunter2" not in text and "@example.com" not in text, text
    assert "555-" not in text and "203.0." not in text, text


# ----------------------------------------------------------------------------- driver
def _python_121() -> str:
    exe = os.environ.get("AEB121_PYTHON")
    if exe:
        return exe
    py = VENV_121 / "bin" / "python"
    if not py.exists():
        subprocess.run(["uv", "venv", "-q", "--python", "python3", str(VENV_121)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "-q", "-p", str(py), "aperion-event-bus==1.2.1"], check=True
        )
    return str(py)


def _side(python: str, side: str, events: int, varied: bool) -> dict[str, float]:
    out = subprocess.run(
        [python, __file__, "--side", side, "--events", str(events)]
        + (["--varied"] if varied else []),
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["ours", "121"])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--varied", action="store_true", help="a different payload per event (no cache hits)"
    )
    args = parser.parse_args()
    if args.side:
        run = run_ours if args.side == "ours" else run_121
        result = run(args.events, args.varied)
        print(json.dumps(result))
        return
    print(
        f"payload: {len(json.dumps(PAYLOAD))} bytes of JSON; {args.events} events per round; "
        + ("a different payload per event (--varied)" if args.varied else "the same payload")
    )
    sides = {"ours": sys.executable, "121": _python_121()}
    samples: dict[str, list[dict[str, float]]] = {"ours": [], "121": []}
    for r in range(args.rounds):
        order = ["ours", "121"] if r % 2 == 0 else ["121", "ours"]
        for side in order:
            samples[side].append(_side(sides[side], side, args.events, args.varied))
        print(
            f"round {r + 1}: ours {samples['ours'][-1]['events_per_s']:,.0f}/s, "
            f"1.2.1 {samples['121'][-1]['events_per_s']:,.0f}/s",
            flush=True,
        )
    med = {
        side: {k: statistics.median(s[k] for s in samples[side]) for k in samples[side][0]}
        for side in samples
    }
    ratio = med["ours"]["events_per_s"] / med["121"]["events_per_s"]
    redact_ratio = med["121"]["redact_us"] / med["ours"]["redact_us"]
    print()
    print("| measure (median of rounds) | aperion-event-bus 1.2.1 | aperion-bus + redact | ratio |")
    print("|---|---|---|---|")
    print(
        f"| audit + redaction, events/s | {med['121']['events_per_s']:,.0f} | "
        f"{med['ours']['events_per_s']:,.0f} | {ratio:.1f}x |"
    )
    print(
        f"| Redactor.redact(payload), us | {med['121']['redact_us']:.1f} | "
        f"{med['ours']['redact_us']:.1f} | {redact_ratio:.1f}x |"
    )
    print(f"\ntarget >= 5x: {'met' if ratio >= 5 else 'NOT met'} ({ratio:.1f}x)")


if __name__ == "__main__":
    main()

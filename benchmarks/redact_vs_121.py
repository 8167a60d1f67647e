"""Audit + redaction of a typical 1 kB payload: aperion-bus + redact vs aperion-event-bus 1.2.1.

    uv run --all-packages python benchmarks/redact_vs_121.py [--rounds 7] [--events 3000]

The two sides cannot share a process (1.2.1 lives in its own virtual environment, created
under /tmp on first use: ``pip install aperion-event-bus==1.2.1``; set ``AEB121_PYTHON`` to
use another interpreter), so each round runs one subprocess per side, alternating which goes
first; the script prints the median events/s of each side and their ratio (target: >= 5x).

Workload, same on both sides: one handler, ``emit(..., wait_for_handlers=True)``, audit on,
redaction on, the same ~1 kB payload (a checkout event: names, free-text notes, an email, a
phone number, an address, line items, a password field).

- 1.2.1: ``EventBus(enable_audit=True, event_log_path=..., redactor=Redactor())``.
- ours: ``EventBus(plugins=[RedactPlugin(), JsonlWriter(path)])`` where ``JsonlWriter`` is a
  minimal writer defined here (``on_audit`` trylast: ``json.dumps`` + write + flush per
  record), standing in for the audit plugin, which was being written in parallel.

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
def run_ours(events: int) -> dict[str, float]:
    from aperion_bus import Event, EventBus, hookimpl
    from aperion_bus_redact import Redactor, RedactPlugin

    class JsonlWriter:
        def __init__(self, path: Path) -> None:
            self.path = path
            self.fh: Any = None

        @hookimpl
        def on_start(self) -> None:
            self.fh = self.path.open("a", encoding="utf-8")

        @hookimpl(trylast=True)
        def on_audit(self, record: dict[str, Any]) -> None:
            self.fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.fh.flush()

        @hookimpl
        def on_shutdown(self) -> None:
            self.fh.close()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        bus = EventBus(plugins=[RedactPlugin(), JsonlWriter(path)])
        count = [0]

        def handler(event: Event) -> None:
            count[0] += 1

        bus.subscribe(handler, "order.*")
        rate = _measure(lambda: bus.emit("order.created", PAYLOAD, wait_for_handlers=True), events)
        bus.shutdown()
        lines = path.read_text(encoding="utf-8").splitlines()
        _check(lines[-1], count[0])
    r = Redactor()
    return {"events_per_s": rate, "redact_us": _time_us(lambda: r.redact(PAYLOAD))}


def run_121(events: int) -> dict[str, float]:
    from aperion_event_bus import EventBus, Redactor  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        bus = EventBus(enable_audit=True, event_log_path=path, redactor=Redactor(enabled=True))
        count = [0]

        def handler(event: Any) -> None:
            count[0] += 1

        bus.subscribe(handler, "order.*")
        rate = _measure(lambda: bus.emit("order.created", PAYLOAD, wait_for_handlers=True), events)
        bus.shutdown()
        lines = path.read_text(encoding="utf-8").splitlines()
        _check(lines[-1], count[0])
    r = Redactor(enabled=True)
    return {"events_per_s": rate, "redact_us": _time_us(lambda: r.redact(PAYLOAD))}


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
    assert "hunter2" not in text and "alice.johnson@example.com" not in text, text


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


def _side(python: str, side: str, events: int) -> dict[str, float]:
    out = subprocess.run(
        [python, __file__, "--side", side, "--events", str(events)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["ours", "121"])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.side:
        result = run_ours(args.events) if args.side == "ours" else run_121(args.events)
        print(json.dumps(result))
        return
    print(f"payload: {len(json.dumps(PAYLOAD))} bytes of JSON; {args.events} events per round")
    sides = {"ours": sys.executable, "121": _python_121()}
    samples: dict[str, list[dict[str, float]]] = {"ours": [], "121": []}
    for r in range(args.rounds):
        order = ["ours", "121"] if r % 2 == 0 else ["121", "ours"]
        for side in order:
            samples[side].append(_side(sides[side], side, args.events))
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

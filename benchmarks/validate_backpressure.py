"""Cost of aperion-bus-validate and aperion-bus-backpressure on the emit path.

Prints ns per emit and the ratio to the bare bus, measured side by side (interleaved rounds,
medians). Run: ``uv run --all-packages python benchmarks/validate_backpressure.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import attrs
from aperion_bus import Event, EventBus
from aperion_bus_backpressure import BackpressurePlugin
from aperion_bus_validate import ValidatePlugin

ROUNDS = 7
SYNC_N = 20_000
BG_N = 20_000


@attrs.define
class Login:
    user: str
    age: int


DICT_SCHEMA = {
    "type": "object",
    "required": ["user", "age"],
    "properties": {"user": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
}


def sink(_event: Event) -> None:
    pass


def make(plugins: list[object]) -> EventBus:
    bus = EventBus(plugins)
    bus.subscribe(sink, "user.*")
    return bus


def sync_case(bus: EventBus) -> Callable[[], float]:
    def run() -> float:
        payload = {"user": "al", "age": 3}
        emit = bus.emit
        t = time.perf_counter_ns()
        for _ in range(SYNC_N):
            emit("user.login", payload, wait_for_handlers=True)
        return (time.perf_counter_ns() - t) / SYNC_N

    return run


def bg_case(bus: EventBus) -> Callable[[], float]:
    def run() -> float:
        payload = {"user": "al", "age": 3}
        emit = bus.emit
        t = time.perf_counter_ns()
        for _ in range(BG_N):
            emit("user.login", payload)
        bus.wait_for_pending()
        return (time.perf_counter_ns() - t) / BG_N

    return run


def measure(cases: dict[str, Callable[[], float]]) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, run in cases.items():  # interleaved: drift hits every case alike
            samples[name].append(run())
    return {name: statistics.median(v) for name, v in samples.items()}


def report(title: str, medians: dict[str, float]) -> None:
    base = next(iter(medians.values()))
    print(f"\n{title}")
    for name, ns in medians.items():
        print(f"  {name:<40} {ns:>10,.0f} ns/emit   x{ns / base:.2f}")


def main() -> None:
    buses = {
        "bare bus": make([]),
        "validate (names only)": make([ValidatePlugin()]),
        "validate + dict schema": make([ValidatePlugin(schemas={"user.login": DICT_SCHEMA})]),
        "validate + attrs schema (cattrs)": make([ValidatePlugin(schemas={"user.login": Login})]),
    }
    report("emit(wait_for_handlers=True), 1 handler", measure(
        {name: sync_case(bus) for name, bus in buses.items()}
    ))
    bg = {
        "bare bus": make([]),
        "backpressure drop (limit never reached)": make([BackpressurePlugin(10**9, "drop")]),
        "backpressure block, limit 1000": make([BackpressurePlugin(1000, "block")]),
    }
    report("emit() in the background, 1 handler, incl. draining", measure(
        {name: bg_case(bus) for name, bus in bg.items()}
    ))
    for bus in [*buses.values(), *bg.values()]:
        bus.shutdown()


if __name__ == "__main__":
    main()

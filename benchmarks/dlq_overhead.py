"""Cost of the dlq plugin on the emit path, measured side by side (interleaved, medians).

    uv run --all-packages python benchmarks/dlq_overhead.py

Prints ns per ``emit(..., wait_for_handlers=True)`` with one succeeding handler for: the bare
kernel, the plugin with ``record_all_failed=False``, and the default plugin (all-handlers-failed
is recorded from a plain ``on_dispatch`` call: one call per dispatch, nothing else on the success
path); then the cost of recording one failure in memory and in SQLite.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from aperion_bus import Event, EventBus
from aperion_bus_dlq import DLQPlugin

N = 20_000
ROUNDS = 7


def ok(event: Event) -> None:
    pass


def failing(event: Event) -> None:
    raise ValueError("boom")


def per_emit(bus: EventBus, event_type: str, n: int) -> float:
    emit = bus.emit
    t0 = time.perf_counter()
    for _ in range(n):
        emit(event_type, {"k": 1}, wait_for_handlers=True)
    return (time.perf_counter() - t0) / n * 1e9


def main() -> None:
    buses = {
        "bare kernel": EventBus(),
        "dlq record_all_failed=False": EventBus([DLQPlugin(record_all_failed=False)]),
        "dlq default": EventBus([DLQPlugin()]),
    }
    for bus in buses.values():
        bus.subscribe(ok, "a.b")
    samples: dict[str, list[float]] = {k: [] for k in buses}
    for _ in range(ROUNDS):
        for name, bus in buses.items():
            samples[name].append(per_emit(bus, "a.b", N))
    base = statistics.median(samples["bare kernel"])
    print(f"success path, one handler, {N} emits x {ROUNDS} rounds (median ns/emit):")
    for name, vals in samples.items():
        med = statistics.median(vals)
        print(f"  {name:36s} {med:9.0f} ns  x{med / base:.2f}")

    with tempfile.TemporaryDirectory() as d:
        failing_buses = {
            "memory": EventBus([DLQPlugin(max_size=1000, record_all_failed=False)]),
            "sqlite": EventBus(
                [DLQPlugin(max_size=1000, path=Path(d) / "b.sqlite", record_all_failed=False)]
            ),
        }
        for bus in failing_buses.values():
            bus.subscribe(failing, "x.y")
        fail: dict[str, list[float]] = {k: [] for k in failing_buses}
        for _ in range(ROUNDS):
            for name, bus in failing_buses.items():
                fail[name].append(per_emit(bus, "x.y", 300))
        print("failure path: emit + system.handler_error + one DLQ entry (median us/failure):")
        for name, vals in fail.items():
            print(f"  {name:36s} {statistics.median(vals) / 1000:9.1f} us")
        for bus in failing_buses.values():
            bus.shutdown()
    for bus in buses.values():
        bus.shutdown()


if __name__ == "__main__":
    main()

"""Kernel dispatch cost vs the peers, side by side in one process (issue: kernel speed).

Run:  uv run --all-packages --group bench python benchmarks/kernel_dispatch.py

Prints Markdown tables: ns per event for 1 and 10 sync handlers (wait_for_handlers=True, no
timeout) for a plain loop, pyee, blinker and aperion-bus; emit_async vs awaiting the handlers in
a loop; memory growth over 1,000,000 emits.
"""

from __future__ import annotations

import asyncio
import sys
import time
import tracemalloc

from _harness import interleaved, table
from aperion_bus import EventBus


def sync_cases(n_handlers: int) -> dict[str, float]:
    import blinker
    from pyee import EventEmitter

    counter = [0]
    handlers = []
    for _ in range(n_handlers):

        def h(event: object) -> None:
            counter[0] += 1

        handlers.append(h)
    payload: dict[str, object] = {"user": "alice"}

    ee = EventEmitter()
    sig = blinker.Signal()
    bus = EventBus()
    for h in handlers:
        ee.on("user.login", h)
        sig.connect(h, weak=False)
        bus.subscribe(h, "user.login")

    def loop() -> None:
        for h in handlers:
            h(payload)

    emit = bus.emit
    res = interleaved(
        [
            ("plain loop", loop),
            ("pyee", lambda: ee.emit("user.login", payload)),
            ("blinker", lambda: sig.send(payload)),
            ("aperion-bus", lambda: emit("user.login", payload, wait_for_handlers=True)),
        ]
    )
    bus.shutdown()
    return res


def async_cases(n_handlers: int) -> dict[str, float]:
    counter = [0]
    handlers = []
    for _ in range(n_handlers):

        async def h(event: object) -> None:
            counter[0] += 1

        handlers.append(h)
    bus = EventBus()
    for h in handlers:
        bus.subscribe(h, "user.login")
    payload: dict[str, object] = {}
    number = 5000

    async def await_loop() -> None:
        for _ in range(number):
            for h in handlers:
                await h(payload)

    async def bus_loop() -> None:
        for _ in range(number):
            await bus.emit_async("user.login", payload)

    loop = asyncio.new_event_loop()
    results: dict[str, list[float]] = {"await loop": [], "aperion-bus emit_async": []}
    for _ in range(11):
        for name, fn in (("await loop", await_loop), ("aperion-bus emit_async", bus_loop)):
            t0 = time.perf_counter_ns()
            loop.run_until_complete(fn())
            results[name].append((time.perf_counter_ns() - t0) / number)
    loop.close()
    bus.shutdown()
    return {k: sorted(v)[len(v) // 2] for k, v in results.items()}


def memory_growth(n: int = 1_000_000) -> float:
    bus = EventBus()
    bus.subscribe(lambda e: None, "user.*")
    emit = bus.emit
    for _ in range(10_000):
        emit("user.login", {"i": 1}, wait_for_handlers=True)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        emit("user.login", {"i": i}, wait_for_handlers=True)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    bus.shutdown()
    return (after - before) / 1e6


def from_config_ms() -> tuple[float, float, list[str]]:
    """ms for EventBus.from_config with seven plugins: the first call in a process (entry
    points scanned, plugin modules imported) and the median of later ones."""
    import os
    import statistics
    import tempfile
    from pathlib import Path

    from aperion_bus import installed_plugins

    wanted = ["validate", "redact", "audit", "dlq", "backpressure", "metrics", "structlog"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "aperion-bus.toml"
        cfg.write_text("".join(f"[plugins.{n}]\n" for n in wanted).replace(
            "[plugins.audit]\n", f'[plugins.audit]\npath = "{tmp}/events.jsonl"\n'))
        old = os.getcwd()
        os.chdir(tmp)
        try:
            t0 = time.perf_counter()
            EventBus.from_config(cfg).shutdown()
            cold = (time.perf_counter() - t0) * 1e3
            warm = []
            for _ in range(15):
                t0 = time.perf_counter()
                bus = EventBus.from_config(cfg)
                warm.append((time.perf_counter() - t0) * 1e3)
                bus.shutdown()
        finally:
            os.chdir(old)
    have = {p.name for p in installed_plugins()}
    return cold, statistics.median(warm), [n for n in wanted if n in have]


def main() -> None:
    rows = []
    for n in (1, 10):
        r = sync_cases(n)
        rows.append(
            [
                n,
                *(f"{r[k]:,.0f}" for k in ("plain loop", "pyee", "blinker", "aperion-bus")),
                f"{r['aperion-bus'] / r['pyee']:.2f}",
                f"{r['aperion-bus'] / r['plain loop']:.2f}",
            ]
        )
    print("### Sync dispatch, ns per event (medians of interleaved rounds)\n")
    print(
        table(
            [
                "handlers",
                "plain loop",
                "pyee",
                "blinker",
                "aperion-bus",
                "bus / pyee",
                "bus / loop",
            ],
            rows,
        )
    )
    arows = []
    for n in (1, 10):
        a = async_cases(n)
        arows.append(
            [
                n,
                f"{a['await loop']:,.0f}",
                f"{a['aperion-bus emit_async']:,.0f}",
                f"{a['aperion-bus emit_async'] / a['await loop']:.2f}",
            ]
        )
    print("\n### Async dispatch, ns per event\n")
    print(table(["handlers", "await loop", "aperion-bus emit_async", "bus / loop"], arows))
    cold, warm, names = from_config_ms()
    print(f"\n### EventBus.from_config with {len(names)} plugins ({', '.join(names)})\n")
    print(f"first call in a process: {cold:.1f} ms; later calls: {warm:.1f} ms (median)")
    if "--no-memory" not in sys.argv:
        growth = memory_growth()
        print(f"\n### Memory\n\n1,000,000 emits: tracemalloc growth {growth:.3f} MB")


if __name__ == "__main__":
    main()

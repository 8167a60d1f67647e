"""Kernel dispatch cost vs the peers, side by side in one process (issue: kernel speed).

Run:  uv run --all-packages --group bench python benchmarks/kernel_dispatch.py

Prints Markdown tables: ns per event for 1 and 10 sync handlers (wait_for_handlers=True, no
timeout) for a plain loop, pyee, blinker and aperion-bus, each measured in 7 fresh processes;
emit_async vs awaiting the handlers in a loop; from_config; memory growth over 1,000,000 emits.
The same sync cases in CPU instructions (deterministic): benchmarks/kernel_instructions.py.
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


_COLD_SCRIPT = """
import os, sys, time
import asyncio  # for scale: the kernel needs it anyway
from aperion_bus import EventBus
t0 = time.perf_counter()
EventBus.from_config(sys.argv[1]).shutdown()
print((time.perf_counter() - t0) * 1e3)
"""

_ASYNCIO_SCRIPT = """
import time
t0 = time.perf_counter()
import asyncio
print((time.perf_counter() - t0) * 1e3)
"""


def _fresh_process_ms(script: str, *args: str) -> float:
    """ms printed by ``script`` run in a new interpreter that may write bytecode caches
    (like a deployed service; this machine sets PYTHONDONTWRITEBYTECODE for everything else)."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def from_config_ms() -> tuple[float, float, float, float, list[str]]:
    """ms for EventBus.from_config with seven plugins: the first call in a new process (entry
    points scanned, plugin modules imported; median of 5 processes, bytecode cached), the same
    with no bytecode cache (the very first run after installing), later calls in one process
    (median), and ``import asyncio`` in a new process, for the scale of this machine."""
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
            os.environ["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            try:  # the first process compiles everything into that empty cache
                uncached = _fresh_process_ms(_COLD_SCRIPT, str(cfg))
                cold = statistics.median(
                    _fresh_process_ms(_COLD_SCRIPT, str(cfg)) for _ in range(5)
                )
                asyncio_ms = statistics.median(
                    _fresh_process_ms(_ASYNCIO_SCRIPT) for _ in range(5)
                )
            finally:
                del os.environ["PYTHONPYCACHEPREFIX"]
            EventBus.from_config(cfg).shutdown()
            warm = []
            for _ in range(15):
                t0 = time.perf_counter()
                bus = EventBus.from_config(cfg)
                warm.append((time.perf_counter() - t0) * 1e3)
                bus.shutdown()
        finally:
            os.chdir(old)
    have = {p.name for p in installed_plugins()}
    return cold, uncached, statistics.median(warm), asyncio_ms, [n for n in wanted if n in have]


_PROCESSES = 7


def sync_in_processes(n_handlers: int, processes: int = _PROCESSES) -> dict[str, float]:
    """sync_cases in ``processes`` fresh interpreters: the median of each case's ns and of each
    per-process ratio (on a shared VM the ratio moves by 10-20 % from one process to the next,
    with the memory layout, more than within one)."""
    import json
    import statistics
    import subprocess

    runs = []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, __file__, "--child-sync", str(n_handlers)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout))
    res = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for peer in ("pyee", "plain loop"):
        res[f"bus / {peer}"] = statistics.median(r["aperion-bus"] / r[peer] for r in runs)
    res["bus / pyee range"] = (
        min(r["aperion-bus"] / r["pyee"] for r in runs),
        max(r["aperion-bus"] / r["pyee"] for r in runs),
    )  # type: ignore[assignment]
    return res


def main() -> None:
    if "--child-sync" in sys.argv:
        import json

        print(json.dumps(sync_cases(int(sys.argv[sys.argv.index("--child-sync") + 1]))))
        return
    rows = []
    for n in (1, 10):
        r = sync_in_processes(n)
        lo, hi = r["bus / pyee range"]  # type: ignore[misc]
        rows.append(
            [
                n,
                *(f"{r[k]:,.0f}" for k in ("plain loop", "pyee", "blinker", "aperion-bus")),
                f"{r['bus / pyee']:.2f} ({lo:.2f} to {hi:.2f})",
                f"{r['bus / plain loop']:.2f}",
            ]
        )
    print(
        f"### Sync dispatch, ns per event (medians of interleaved rounds; median of "
        f"{_PROCESSES} processes, the range of bus / pyee across them in brackets)\n"
    )
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
    cold, uncached, warm, asyncio_ms, names = from_config_ms()
    print(f"\n### EventBus.from_config with {len(names)} plugins ({', '.join(names)})\n")
    print(
        f"first call in a new process: {cold:.1f} ms (bytecode cached; {uncached:.1f} ms "
        f"with none); later calls: {warm:.1f} ms (median). For scale, `import asyncio` "
        f"in a new process takes {asyncio_ms:.1f} ms on this machine."
    )
    if "--no-memory" not in sys.argv:
        growth = memory_growth()
        print(f"\n### Memory\n\n1,000,000 emits: tracemalloc growth {growth:.3f} MB")


if __name__ == "__main__":
    main()

"""What the metrics plugin adds per handler call (aperion-bus-metrics).

Buses with 1 and 10 trivial handlers, ``emit(wait_for_handlers=True)``, measured side by side
in interleaved rounds in one process; medians. Variants:

- ``bare``: no plugin (the kernel's fast path);
- ``noop-wrapper``: a plugin whose ``on_handler`` wrapper does nothing: the kernel's own cost
  of having any ``on_handler`` wrapper (the general dispatch path, a generator per call);
- ``metrics``: ``MetricsPlugin()`` (memory backend, the default);
- ``metrics-prom``: ``MetricsPlugin(backend="prometheus")`` (adds the dispatch histogram);
- ``sim-post-hook``: no plugin, but each handler wrapped in what a kernel with a plain
  (non-wrapper) post-call hook would run on its fast path: time the call, then call one
  observer ``(bus, event, subscription, duration, error)`` that records into a
  ``MetricsCollector``: the proposed kernel change, simulated.

Also times the collector's own recording (``record_handler_call``) alone.
Run: ``uv run --all-packages python benchmarks/metrics_overhead.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Generator
from typing import Any

from aperion_bus import EventBus, hookimpl


class NoopWrapper:
    @hookimpl(wrapper=True)
    def on_handler(self, bus: Any, event: Any, subscription: Any) -> Generator[None, Any, None]:
        yield


def handler(event: object) -> None:
    pass


def simulated_post_hook(bus: EventBus, k: int) -> None:
    """Subscribe ``k`` handlers wrapped the way a kernel post-call hook would time them."""
    from aperion_bus_metrics import MetricsCollector

    record = MetricsCollector().record_handler_call
    perf = time.perf_counter

    def observer(bus: Any, event: Any, sub: Any, duration: float, error: Any) -> None:
        record(sub.name, duration)

    observers = (observer,)
    for _ in range(k):
        sub_box: list[Any] = []

        def timed(event: Any, fn: Any = handler, box: list[Any] = sub_box) -> None:
            t0 = perf()
            fn(event)
            d = perf() - t0
            for obs in observers:
                obs(bus, event, box[0], d, None)

        sub_box.append(bus.get_subscription(bus.subscribe(timed, "bench.event")))


def make(kind: str, k: int) -> EventBus:
    from aperion_bus_metrics import MetricsPlugin

    plugins: list[object] = []
    if kind == "noop-wrapper":
        plugins = [NoopWrapper()]
    elif kind == "metrics":
        plugins = [MetricsPlugin()]
    elif kind == "metrics-prom":
        plugins = [MetricsPlugin(backend="prometheus")]
    bus = EventBus(plugins=plugins)
    if kind == "sim-post-hook":
        simulated_post_hook(bus, k)
        return bus
    for _ in range(k):
        bus.subscribe(handler, "bench.event")
    return bus


def per_emit(bus: EventBus, n: int) -> float:
    emit = bus.emit
    t0 = time.perf_counter_ns()
    for _ in range(n):
        emit("bench.event", None, None, None, True)
    return (time.perf_counter_ns() - t0) / n


def per_call(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=41)
    ap.add_argument("--n", type=int, default=2000, help="emits per round")
    args = ap.parse_args()
    kinds = ["bare", "noop-wrapper", "metrics", "metrics-prom", "sim-post-hook"]
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        kinds.remove("metrics-prom")
    print(f"{args.rounds} interleaved rounds x {args.n} emits; medians, ns")
    for k in (1, 10):
        buses = {kind: make(kind, k) for kind in kinds}
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        for bus in buses.values():  # warm up
            per_emit(bus, 200)
        for r in range(args.rounds):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for kind in order:
                samples[kind].append(per_emit(buses[kind], args.n))
        med = {kind: statistics.median(v) for kind, v in samples.items()}
        base = med["bare"]
        print(f"\n{k} handler(s): per emit")
        for kind in kinds:
            added = (med[kind] - base) / k
            print(f"  {kind:13s} {med[kind]:9.0f}   added per handler call vs bare: {added:7.0f}")
        wrap = med["noop-wrapper"]
        for kind in ("metrics", "metrics-prom"):
            if kind not in med:
                continue
            own = (med[kind] - wrap) / k
            print(f"  {kind:13s} added per handler call vs noop-wrapper (plugin's own): {own:6.0f}")
        for bus in buses.values():
            bus.shutdown()

    from aperion_bus_metrics import MetricsCollector

    c = MetricsCollector()
    rec = c.record_handler_call

    def record() -> None:
        rec("bench.handler", 1.5e-6)

    def empty() -> None:
        pass

    a: list[float] = []
    b: list[float] = []
    for _ in range(args.rounds):
        a.append(per_call(record, 20000))
        b.append(per_call(empty, 20000))
    own = statistics.median(a) - statistics.median(b)
    print(f"\nMetricsCollector.record_handler_call alone: {own:.0f} ns (minus an empty call)")


if __name__ == "__main__":
    main()

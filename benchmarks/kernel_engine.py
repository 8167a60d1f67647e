"""The dispatch engine's targets (issue 11), in CPU instructions per event and side by side.

Run:  uv run --all-packages --group bench python benchmarks/kernel_engine.py

Every case runs in a child interpreter under ``valgrind --tool=cachegrind`` twice, with 0 and
with N events; the difference divided by N is one event's cost (every thread counted, start-up
excluded). Instruction counts do not move from run to run as times do on this shared VM;
``--time`` adds the same cases timed in fresh processes (median of 5), and the context
switches and memory per pending event are measured directly.

Cases, each next to what it is compared with:
- background emit (emit + worker) vs a waited emit, 1 and 10 sync handlers, with and without
  ``handler_timeout=30``;
- a waited emit under ``handler_timeout=30`` vs one bare thread hand-off running the same
  handlers (a ``SimpleQueue`` put, the worker releases a ``Lock``);
- ``emit_async`` with 10 async handlers that return without suspending, with and without a
  timeout;
- 10,000 exact types and 100,000 types under ``*`` emitted round-robin vs the hot single type;
- a subscribe/unsubscribe pair at 10,000 subscriptions vs at 1.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from _harness import table

_CHILD = r"""
import asyncio, queue, sys, threading, time
case, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from aperion_bus import EventBus
payload = {"user": "alice"}

def handlers(k):
    out = []
    for _ in range(k):
        def h(event):
            pass
        out.append(h)
    return out

def run():
    if case in ("waited", "background", "waited-t30", "background-t30"):
        bus = EventBus(handler_timeout=30 if case.endswith("t30") else None)
        for h in handlers(k):
            bus.subscribe(h, "user.login")
        wait = case.startswith("waited")
        emit = bus.emit
        emit("user.login", payload, wait_for_handlers=True)
        emit("user.login", payload)
        bus.wait_for_pending()
        t0 = time.perf_counter()
        for _ in range(n):
            emit("user.login", payload, wait_for_handlers=wait)
        bus.wait_for_pending()
        return bus, t0
    if case in ("handoff", "handoff-timed"):  # -timed: the emitter's wait has a timeout
        timed = case == "handoff-timed"
        hs = handlers(k)
        q = queue.SimpleQueue()
        def worker():
            while True:
                item = q.get()
                if item is None:
                    return
                ev, done = item
                for h in hs:
                    h(ev)
                done.release()
        t = threading.Thread(target=worker, daemon=True)
        t.start()
        def once():
            done = threading.Lock()
            done.acquire()
            q.put((payload, done))
            if timed:
                done.acquire(True, 30.0)
            else:
                done.acquire()
        once()
        t0 = time.perf_counter()
        for _ in range(n):
            once()
        q.put(None)
        return None, t0
    if case == "bg-floor":
        # the least any background path must add to a waited emit: a C queue, a context
        # copy, the scope set in it, the handlers called in it on another thread (no event
        # is built here: this is the hand-off alone)
        import contextvars
        from aperion_bus._correlation import _scope
        hs = handlers(k)
        q = queue.SimpleQueue()
        scope_set = _scope.set
        copy = contextvars.copy_context
        def worker():
            get = q.get
            while True:
                item = get()
                if item is None:
                    return
                ev, ctx = item
                ctx.run(scope_set, ev)
                for h in hs:
                    ctx.run(h, ev)
        t = threading.Thread(target=worker, daemon=True)
        t.start()
        put = q.put
        t0 = time.perf_counter()
        for _ in range(n):
            put((payload, copy()))
        q.put(None)
        t.join()
        return None, t0
    if case in ("watch-call", "empty-loop"):  # what timing one call costs at the least
        import collections
        token = collections.deque()
        clock = time.monotonic
        t0 = time.perf_counter()
        if case == "watch-call":  # read the clock, publish the deadline, settle it
            for _ in range(n):
                token.append(clock() + 30.0)
                token.pop()
        else:
            for _ in range(n):
                pass
        return None, t0
    if case == "direct":  # the same handlers called in a loop, for the floor's own share
        hs = handlers(k)
        t0 = time.perf_counter()
        for _ in range(n):
            for h in hs:
                h(payload)
        return None, t0
    if case in ("async", "async-t30"):
        bus = EventBus(handler_timeout=30 if case == "async-t30" else None)
        for _ in range(k):
            async def ah(event):
                pass
            bus.subscribe(ah, "user.login")
        async def main():
            await bus.emit_async("user.login", payload)
            t0 = time.perf_counter()
            for _ in range(n):
                await bus.emit_async("user.login", payload)
            return t0
        return bus, asyncio.run(main())
    if case in ("hot", "exact-10000", "star-100000"):
        bus = EventBus()
        if case == "exact-10000":
            types = [f"t{i}.x" for i in range(10_000)]
            for t in types:
                bus.subscribe(handlers(1)[0], t)
        elif case == "star-100000":
            types = [f"t{i}.x" for i in range(100_000)]
            bus.subscribe(handlers(1)[0], "*")
        else:
            types = ["user.login"]
            bus.subscribe(handlers(1)[0], "user.login")
        emit = bus.emit
        for t in types:  # a first round: every type seen once
            emit(t, payload, wait_for_handlers=True)
        m = len(types)
        t0 = time.perf_counter()
        for i in range(n):
            emit(types[i % m], payload, wait_for_handlers=True)
        return bus, t0
    if case in ("pair-1", "pair-10000"):
        bus = EventBus()
        h = handlers(1)[0]
        size = 1 if case == "pair-1" else 10_000
        for i in range(size):
            bus.subscribe(h, f"t{i}.x")
            bus.emit(f"t{i}.x", payload, wait_for_handlers=True)  # plans cached
        t0 = time.perf_counter()
        for _ in range(n):
            bus.unsubscribe(bus.subscribe(h, "bench.pair"))
        return bus, t0
    raise SystemExit(f"unknown case {case}")

bus, t0 = run()
elapsed = time.perf_counter() - t0
if bus is not None:
    bus.shutdown()
print(elapsed)
"""

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _instructions(case: str, n: int, k: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-c", _CHILD, case, str(n), str(k)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict probes in every run
    )
    match = _REFS.search(out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def per_event(case: str, k: int, n: int = 5_000) -> float:
    with ThreadPoolExecutor(2) as pool:
        base, full = pool.map(lambda m: _instructions(case, m, k), (0, n))
    return (full - base) / n


def timed(case: str, k: int, n: int = 20_000, runs: int = 5) -> float:
    """ns per event: the median of ``runs`` fresh processes."""
    out = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", _CHILD, case, str(n), str(k)],
                              capture_output=True, text=True, check=True)
        out.append(float(proc.stdout.strip().splitlines()[-1]) / n * 1e9)
    return statistics.median(out)


def context_switches(k: int, n: int = 50_000) -> float:
    """Context switches per background event (every thread of the process), steady state."""
    code = r"""
import resource, sys
from aperion_bus import EventBus
n, k = int(sys.argv[1]), int(sys.argv[2])
bus = EventBus()
for _ in range(k):
    bus.subscribe(lambda e: None, "user.login")
for _ in range(1000):
    bus.emit("user.login", {})
bus.wait_for_pending()
r0 = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(n):
    bus.emit("user.login", {})
bus.wait_for_pending()
r1 = resource.getrusage(resource.RUSAGE_SELF)
print((r1.ru_nvcsw + r1.ru_nivcsw) - (r0.ru_nvcsw + r0.ru_nivcsw))
bus.shutdown()
"""
    proc = subprocess.run([sys.executable, "-c", code, str(n), str(k)], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout.strip()) / n


def pending_bytes(n: int = 20_000) -> float:
    """Memory one queued background event holds (tracemalloc), the worker held busy."""
    code = r"""
import threading, tracemalloc, sys
from aperion_bus import EventBus
n = int(sys.argv[1])
bus = EventBus()
gate = threading.Event()
bus.subscribe(lambda e: gate.wait(), "hold.it")
bus.subscribe(lambda e: None, "user.login")
bus.emit("hold.it", {})
payload = {"user": "alice"}
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
for _ in range(n):
    bus.emit("user.login", payload)
after = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
print((after - before) / n)
gate.set()
bus.shutdown()
"""
    proc = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True,
                          check=True)
    return float(proc.stdout.strip())


def event_floor_bytes(n: int = 20_000) -> float:
    """Memory one Event (its id and timestamp included) holds, built as emit builds it."""
    code = r"""
import tracemalloc, sys
from aperion_bus import EventBus
n = int(sys.argv[1])
bus = EventBus()
payload = {"user": "alice"}
keep = []
bus.subscribe(keep.append, "user.login")
tracemalloc.start()
keep.append(None); keep.pop()
before = tracemalloc.get_traced_memory()[0]
for _ in range(n):
    bus.emit("user.login", payload, wait_for_handlers=True)
after = tracemalloc.get_traced_memory()[0]
print((after - before) / n - 8)  # less the list's slot
bus.shutdown()
"""
    proc = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True,
                          check=True)
    return float(proc.stdout.strip())


def main() -> None:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: nothing measured (apt-get install valgrind)")
        return
    show_time = "--time" in sys.argv
    ins = {}
    for k in (1, 10):
        for case in ("waited", "background", "waited-t30", "background-t30", "handoff"):
            ins[case, k] = per_event(case, k)
    for k in (1, 10):
        for case in ("bg-floor", "direct"):
            ins[case, k] = per_event(case, k)
    watch_call = per_event("watch-call", 1, 50_000) - per_event("empty-loop", 1, 50_000)
    for k in (1, 10):
        ins["handoff-timed", k] = per_event("handoff-timed", k)
    ins["async", 10] = per_event("async", 10)
    ins["async-t30", 10] = per_event("async-t30", 10)
    # whole rounds of the types (each emitted as often as the others): 2 of 10,000, 1 of 100,000
    for case, n in (("hot", 20_000), ("exact-10000", 20_000), ("star-100000", 100_000)):
        ins[case, 1] = per_event(case, 1, n)
    ins["pair-1", 1] = per_event("pair-1", 1, 2_000)
    ins["pair-10000", 1] = per_event("pair-10000", 1, 2_000)

    def row(label: str, a: tuple[str, int], b: tuple[str, int], target: str) -> list[object]:
        r = [label, f"{ins[a]:,.0f}", f"{ins[b]:,.0f}", f"{ins[a] / ins[b]:.2f}", target]
        if show_time:
            ta, tb = timed(*a), timed(*b)
            r += [f"{ta:,.0f}", f"{tb:,.0f}", f"{ta / tb:.2f}"]
        return r

    rows = [
        row("background / waited, 1 handler", ("background", 1), ("waited", 1), "<= 1.25"),
        row("background / waited, 10 handlers", ("background", 10), ("waited", 10), "<= 1.25"),
        row("background / waited, timeout, 1", ("background-t30", 1), ("waited", 1), "<= 1.5"),
        row("background / waited, timeout, 10", ("background-t30", 10), ("waited", 10), "<= 1.5"),
        row("waited+timeout / hand-off, 1", ("waited-t30", 1), ("handoff", 1), "<= 2.2"),
        row("waited+timeout / hand-off, 10", ("waited-t30", 10), ("handoff", 10), "<= 2.0"),
        row("emit_async timeout / untimed, 10", ("async-t30", 10), ("async", 10), "<= 1.5"),
        row("10,000 exact types / hot", ("exact-10000", 1), ("hot", 1), "<= 1.5"),
        row("100,000 types under * / hot", ("star-100000", 1), ("hot", 1), "<= 1.5"),
        row("sub+unsub at 10,000 / at 1", ("pair-10000", 1), ("pair-1", 1), "<= 5"),
    ]
    extra = (ins["waited-t30", 10] - ins["waited-t30", 1]) - (
        ins["handoff", 10] - ins["handoff", 1]
    )
    head = ["case", "instructions", "compared with", "ratio", "target"]
    if show_time:
        head += ["ns", "ns compared with", "time ratio"]
    print("### Dispatch engine, CPU instructions per event (valgrind)\n")
    print(table(head, rows))
    print(
        f"\nBookkeeping per extra handler, waited emit under a timeout (beyond the hand-off's "
        f"own per-handler cost): {extra / 9:,.0f} instructions (target <= 1,100)"
    )
    for k in (1, 10):
        print(f"Context switches per background event, {k} handler(s): {context_switches(k):.4f}"
              " (target < 0.01)")
    print(f"Memory per pending background event: {pending_bytes():.0f} B (target <= 200)")
    print("\nFloors: the least a background path adds to a waited emit, with no event built and"
          " no bookkeeping (a SimpleQueue, a context copy, the scope set in it, the handlers"
          " called in it on the worker thread):")
    for k in (1, 10):
        handoff = ins["bg-floor", k] - ins["direct", k]
        floor = (ins["waited", k] + handoff) / ins["waited", k]
        print(f"- {k} handler(s): the hand-off alone {handoff:,.0f} instructions; waited emit + "
              f"hand-off = {floor:.2f}x a waited emit (the bus: "
              f"{ins['background', k] / ins['waited', k]:.2f}x)")
    print(f"\nUnder a timeout, each handler's call is timed on its own (its deadline counts from"
          f" its start): a clock read and an atomic publish/settle, at the least "
          f"{watch_call:,.0f} instructions a handler (a deque append and pop, nothing more); a"
          f" waited emit's wait has a timeout (the hand-off with `done.acquire(True, 30)`: "
          f"{ins['handoff-timed', 1] - ins['handoff', 1]:+,.0f} instructions):")
    for k in (1, 10):
        waited = ins["waited", k] + ins["handoff-timed", k] - ins["direct", k] + k * watch_call
        print(f"- waited under a timeout, {k} handler(s): waited emit + hand-off with a timed wait"
              f" + {k} timed call(s) = {waited / ins['handoff', k]:.2f}x the bare hand-off (the"
              f" bus: {ins['waited-t30', k] / ins['handoff', k]:.2f}x)")
        bg = ins["waited", k] + ins["bg-floor", k] - ins["direct", k] + k * watch_call
        print(f"- background under a timeout, {k} handler(s): waited emit + background hand-off +"
              f" {k} timed call(s) = {bg / ins['waited', k]:.2f}x a waited emit (the bus: "
              f"{ins['background-t30', k] / ins['waited', k]:.2f}x)")
    print("- an Event object, its id and timestamp held while queued: "
          f"{event_floor_bytes():.0f} B (the bus: see above)")


if __name__ == "__main__":
    main()

"""Kernel dispatch vs the peers in CPU instructions per event (deterministic; needs valgrind).

Run:  uv run --all-packages --group bench python benchmarks/kernel_instructions.py

Timings on a shared VM move by 10-20 % from one process to the next; instruction counts do
not. Each case runs in a child interpreter under ``valgrind --tool=cachegrind`` twice, with 0
and with N events; the difference divided by N is the cost of one event, start-up excluded.
Instructions are not time (allocation and cache misses weigh more in time), so this table
complements benchmarks/kernel_dispatch.py and does not replace it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from _harness import table

_N = 20_000

_CHILD = """
import sys
case, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = {"user": "alice"}
handlers = []
for _ in range(k):
    def h(event):
        pass
    handlers.append(h)
if case == "pyee":
    from pyee import EventEmitter
    ee = EventEmitter()
    for h in handlers:
        ee.on("user.login", h)
    def once():
        ee.emit("user.login", payload)
elif case == "blinker":
    import blinker
    sig = blinker.Signal()
    for h in handlers:
        sig.connect(h, weak=False)
    def once():
        sig.send(payload)
elif case == "aperion-bus":
    from aperion_bus import EventBus
    bus = EventBus()
    for h in handlers:
        bus.subscribe(h, "user.login")
    emit = bus.emit
    emit("user.login", payload, wait_for_handlers=True)
    def once():
        emit("user.login", payload, wait_for_handlers=True)
else:
    def once():
        for h in handlers:
            h(payload)
for _ in range(n):
    once()
"""

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _instructions(case: str, n: int, k: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            _CHILD,
            case,
            str(n),
            str(k),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = _REFS.search(out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def per_event(case: str, k: int) -> float:
    with ThreadPoolExecutor(2) as pool:
        base, full = pool.map(lambda n: _instructions(case, n, k), (0, _N))
    return (full - base) / _N


def main() -> None:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: nothing measured (apt-get install valgrind)")
        return
    cases = ("plain loop", "pyee", "blinker", "aperion-bus")
    rows = []
    for k in (1, 10):
        r = {case: per_event(case, k) for case in cases}
        rows.append(
            [
                k,
                *(f"{r[c]:,.0f}" for c in cases),
                f"{r['aperion-bus'] / r['pyee']:.3f}",
                f"{r['aperion-bus'] / r['plain loop']:.2f}",
            ]
        )
    print("### Sync dispatch, CPU instructions per event (valgrind, deterministic)\n")
    print(table(["handlers", *cases, "bus / pyee", "bus / loop"], rows))


if __name__ == "__main__":
    main()

"""aperion-event-bus 2.0 (the compat distribution) against aperion-event-bus 1.2.1, with the
1.x defaults: events per second for 1, 5 and 10 handlers, audit on and off,
``emit(..., wait_for_handlers=True)`` ("sync") and the default background emit ("bg").

Both sides run the SAME worker code (``from aperion_event_bus import EventBus``; the bus as a
1.x user writes it: ``EventBus(event_log_path=...)`` for audit on, ``EventBus(enable_audit=
False)`` for audit off; every other argument at its default, so ``handler_timeout=30.0``),
each in its own interpreter: 2.0 in this one, 1.2.1 in ``--old-python``. Rounds alternate
between the two, each round a fresh subprocess writing to a fresh log in a temp dir; medians.
"bg" times emitting N events plus waiting until all are handled (``shutdown()``, the only
drain 1.2.1 has; the worker checks that every handler call happened). The last two columns
show 2.0 with ``handler_timeout=None``: with a timeout, a waited emit must hand its handlers
to another thread (a Python thread cannot be killed, so only another thread lets emit stop
waiting), and that hand-off, tens of microseconds on a VM, is most of the cost.

    uv run --all-packages python benchmarks/compat_vs_121.py --old-python /tmp/aeb121/bin/python \
        [--rounds 5] [--handlers 1 5 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import json, sys, time
from pathlib import Path
from aperion_event_bus import EventBus
mode, audit, path = sys.argv[1], sys.argv[2] == "on", sys.argv[5]
handlers, n = int(sys.argv[3]), int(sys.argv[4])
extra = {"handler_timeout": None} if sys.argv[6] == "none" else {}
payload = {"user_id": 42, "action": "login", "ip": "10.0.0.1", "tags": ["a", "b"], "ok": True}
bus = (EventBus(event_log_path=Path(path), **extra) if audit
       else EventBus(enable_audit=False, **extra))
cnt = [0]
def make():
    def handler(event):
        cnt[0] += 1
    return handler
for _ in range(handlers):
    bus.subscribe(make(), "bench.*")
emit = bus.emit
wait = mode == "sync"
warm = max(n // 10, 50)
for _ in range(warm):
    emit("bench.tick", payload, wait_for_handlers=True)
t0 = time.perf_counter()
for _ in range(n):
    emit("bench.tick", payload, wait_for_handlers=wait)
if not wait:
    bus.shutdown()
dt = time.perf_counter() - t0
if wait:
    bus.shutdown()
expected = (n + warm) * handlers
assert cnt[0] == expected, (cnt[0], expected)
print(json.dumps({"eps": n / dt}))
"""

# events per round: sized so that one round takes a fraction of a second on either side
N_NEW = {"sync": 20_000, "bg": 20_000}
N_OLD = {"sync": 2_000, "bg": 2_000}


def run(
    python: str, mode: str, audit: str, handlers: int, n: int, timeout: str = "default"
) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            [python, "-c", WORKER, mode, audit, str(handlers), str(n), str(Path(d, "e.jsonl")),
             timeout],
            check=True,
            capture_output=True,
            text=True,
            cwd=d,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["eps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-python", default="/tmp/aeb121/bin/python")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--handlers", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--modes", nargs="+", default=["sync", "bg"])
    args = ap.parse_args()
    new_py = sys.executable
    check = subprocess.run(
        [args.old_python, "-c",
         "import importlib.metadata as m; print(m.version('aperion-event-bus'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    print(f"old: aperion-event-bus {check} ({args.old_python}); new: 2.0 ({new_py})")
    print(f"{args.rounds} alternating rounds per cell, medians\n")
    print("| handlers | emit | audit | 1.2.1 ev/s | 2.0 ev/s | ratio "
          "| 2.0, handler_timeout=None | ratio |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for mode in args.modes:
        for audit in ("off", "on"):
            for h in args.handlers:
                old: list[float] = []
                new: list[float] = []
                untimed: list[float] = []
                for r in range(args.rounds):
                    pair = [("old", args.old_python), ("new", new_py)]
                    if r % 2:
                        pair.reverse()
                    for side, py in pair:
                        if side == "old":
                            old.append(run(py, mode, audit, h, N_OLD[mode]))
                        else:
                            new.append(run(py, mode, audit, h, N_NEW[mode]))
                            untimed.append(run(py, mode, audit, h, N_NEW[mode], "none"))
                o, n = statistics.median(old), statistics.median(new)
                u = statistics.median(untimed)
                label = "wait_for_handlers=True" if mode == "sync" else "background"
                row = (f"| {h} | {label} | {audit} | {o:,.0f} | {n:,.0f} | {n / o:.1f}x "
                       f"| {u:,.0f} | {u / o:.1f}x |")
                print(row, flush=True)


if __name__ == "__main__":
    main()

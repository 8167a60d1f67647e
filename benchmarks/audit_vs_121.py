"""Audit on (flush per record), 1 trivial handler, emit(wait_for_handlers=True): events/s of
aperion-bus + aperion-bus-audit against aperion-event-bus 1.2.1 with ``enable_audit=True``.

Each side runs in its own interpreter (1.2.1 in its own virtual environment); rounds alternate
between the two, each round a fresh subprocess writing to a fresh log; medians are reported.

    uv run --all-packages python benchmarks/audit_vs_121.py [--old-python PATH] [--rounds 7]

Without ``--old-python`` the script creates ``$TMPDIR/aperion-event-bus-1.2.1-venv`` with
``uv venv`` + ``uv pip install aperion-event-bus==1.2.1`` (once).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

N_DEFAULT = 60_000
PAYLOAD = {"user_id": 42, "action": "login", "ip": "10.0.0.1", "tags": ["a", "b"], "ok": True}

# The child script of one side: only the import and the construction of the bus differ.
_CHILD = r"""
import json, sys, time
from pathlib import Path
{make_bus}
path, n, payload = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
bus = EventBus({bus_args})
cnt = [0]
def handler(event):
    cnt[0] += 1
bus.subscribe(handler, "bench.*")
emit = bus.emit
for _ in range(min(n, 2000)):
    emit("bench.tick", payload, wait_for_handlers=True)
t0 = time.perf_counter()
for _ in range(n):
    emit("bench.tick", payload, wait_for_handlers=True)
dt = time.perf_counter() - t0
bus.shutdown()
lines = sum(1 for _ in open(path, "rb"))
print(json.dumps({{"eps": n / dt, "handled": cnt[0], "lines": lines}}))
"""
NEW = _CHILD.format(
    make_bus="from aperion_bus import EventBus",
    bus_args='plugins=["audit"], settings={"audit": {"path": path}}',
)
OLD = _CHILD.format(
    make_bus="from aperion_event_bus import EventBus",
    bus_args="enable_audit=True, event_log_path=Path(path)",
)


def old_python(explicit: str | None) -> str:
    if explicit:
        return explicit
    venv = Path(tempfile.gettempdir()) / "aperion-event-bus-1.2.1-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        uv = shutil.which("uv")
        if uv is None:
            sys.exit("uv not found: pass --old-python, an interpreter with aperion-event-bus 1.2.1")
        subprocess.run([uv, "venv", "-q", "--python", "python3", str(venv)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "-p", str(py), "aperion-event-bus==1.2.1"], check=True
        )
    return str(py)


def run(python: str, code: str, n: int, workdir: Path, tag: str) -> float:
    path = workdir / f"{tag}.jsonl"
    for p in workdir.glob(f"{tag}*"):
        p.unlink()
    out = subprocess.run(
        [python, "-c", code, str(path), str(n), json.dumps(PAYLOAD)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    warm = min(n, 2000)
    if res["handled"] != n + warm or res["lines"] < n + warm:
        raise SystemExit(f"{tag}: wrong counts {res} (expected {n + warm})")
    return float(res["eps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-python", help="interpreter with aperion-event-bus==1.2.1 installed")
    ap.add_argument("--new-python", default=sys.executable,
                    help="interpreter with aperion-bus and aperion-bus-audit (default: this one)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("-n", type=int, default=N_DEFAULT, help="events per round (new)")
    ap.add_argument("--old-n", type=int, default=None,
                    help="events per round for 1.2.1 (default n/12: it is slower; similar time)")
    args = ap.parse_args()
    old = old_python(args.old_python)
    old_n = args.old_n or max(1000, args.n // 12)
    new_eps: list[float] = []
    old_eps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            order = [("new", args.new_python, NEW, args.n), ("old", old, OLD, old_n)]
            if r % 2:
                order.reverse()
            for tag, py, code, n in order:
                eps = run(py, code, n, work, tag)
                (new_eps if tag == "new" else old_eps).append(eps)
                print(f"round {r + 1} {tag:3}: {eps:>10,.0f} events/s", flush=True)
    new_m, old_m = statistics.median(new_eps), statistics.median(old_eps)
    # the load of a shared machine drifts: the ratio of each round's pair is steadier
    paired = statistics.median(n / o for n, o in zip(new_eps, old_eps, strict=True))
    print()
    print("audit on, flush per record, 1 handler, emit(wait_for_handlers=True)")
    print(f"aperion-bus + audit       : {new_m:>10,.0f} events/s (median of {len(new_eps)})")
    print(f"aperion-event-bus 1.2.1   : {old_m:>10,.0f} events/s (median of {len(old_eps)})")
    print(f"ratio of the medians      : {new_m / old_m:.1f}x (target >= 10x)")
    print(f"median of per-round ratios: {paired:.1f}x")


if __name__ == "__main__":
    main()

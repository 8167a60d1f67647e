"""``aperion-bus log query --correlation-id`` side by side with ``grep -F ID | jq -c .``.

Writes a JSONL audit log of ``--records`` records (default 1,000,000, ~420 bytes each, like
the field log of 419 MB) into a temporary directory, picks one correlation id that occurs a
few times (a request), then times both commands in interleaved rounds and prints medians,
their ratio, and the query's peak RSS. Also times ``--since`` on the newest records and
``--all --json`` streaming a large share of the file (memory only).

    uv run --all-packages python benchmarks/log_query.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "aperion_bus"]


def write_log(path: Path, n: int, needle: str) -> None:
    rnd = random.Random(7)
    t = time.time() - n * 0.001
    with path.open("w") as fh:
        for i in range(n):
            cid = needle if i % (n // 5 or 1) == 3 else f"{rnd.getrandbits(128):032x}"
            rec = {
                "schema": 1,
                "event_type": f"order.{('created', 'paid', 'shipped')[i % 3]}",
                "payload": {
                    "order_id": i,
                    "customer": f"customer-{i % 997}",
                    "items": [{"sku": f"SKU-{i % 101:05d}", "qty": 1 + i % 4, "price": 19.99}],
                    "note": "x" * 120,
                },
                "timestamp": t + i * 0.001,
                "event_id": f"{i:024x}",
                "source": "orders-service",
                "correlation_id": cid,
                "causation_id": None,
            }
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")


def timed(cmd: list[str] | str, shell: bool = False) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, shell=shell, check=True, capture_output=True).stdout
    return time.perf_counter() - t0, out


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak RSS of one child run (``ru_maxrss`` of a fresh child via a wrapper process)."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True)
    return int(out.stdout) / 1024


def compile_bytecode() -> None:
    """Compile the interpreter's import path once, as an installer does (pip compiles
    bytecode at install; uv and an editable workspace do not, and with
    PYTHONDONTWRITEBYTECODE set nothing is ever cached): otherwise every run of the command
    compiles its sources again, which is no part of what a deployed CLI costs."""
    code = "import sys, json; print(json.dumps([p for p in sys.path if p]))"
    paths = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                      capture_output=True, text=True).stdout)
    dirs = [p for p in paths if Path(p).is_dir() and ("site-packages" in p or "/src" in p)]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *dirs],
                   check=False, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    opts = ap.parse_args()
    if not shutil.which("jq"):
        sys.exit("jq is needed for the comparison (apt-get install jq)")
    compile_bytecode()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "events.jsonl"
        needle = "c0ffee00-1234-4321-8888-0123456789ab"
        t0 = time.perf_counter()
        write_log(log, opts.records, needle)
        size = log.stat().st_size
        print(f"log: {opts.records:,} records, {size / 1e6:.0f} MB, written in "
              f"{time.perf_counter() - t0:.1f} s")
        grep = f"grep -F {needle} {log} | jq -c ."
        ours = [*CLI, "log", "query", "--path", str(log), "--correlation-id", needle,
                "--all", "--json"]
        bare = [sys.executable, "-c", "import aperion_bus"]
        samples: dict[str, list[float]] = {"grep | jq": [], "log query": [], "import": []}
        timed(grep, shell=True)
        _, out = timed(ours)
        hits = out.count(b"\n")
        for r in range(opts.rounds):
            order = ["grep | jq", "log query", "import"]
            for name in order if r % 2 == 0 else reversed(order):
                if name == "grep | jq":
                    samples[name].append(timed(grep, shell=True)[0])
                elif name == "log query":
                    samples[name].append(timed(ours)[0])
                else:
                    samples[name].append(timed(bare)[0])
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"--correlation-id ({hits} matching records), medians of {opts.rounds} rounds:")
        print(f"  grep -F | jq -c .            {med['grep | jq']:.3f} s")
        print(f"  aperion-bus log query        {med['log query']:.3f} s "
              f"({med['log query'] / med['grep | jq']:.2f}x)")
        print(f"  of which python + import aperion_bus  {med['import']:.3f} s")
        print(f"  peak RSS of the query: {peak_rss_mb(ours):.0f} MB")
        since = [*CLI, "log", "query", "--path", str(log), "--since",
                 str(time.time() - 60), "--all", "--json"]
        t, out = timed(since)
        n_since = out.count(b"\n")
        print(f"--since (last 60 s, {n_since:,} records): {t:.3f} s")
        everything = [*CLI, "log", "query", "--path", str(log), "--type", "order.paid",
                      "--all", "--json"]
        print(f"--type order.paid --all --json (a third of the file) peak RSS: "
              f"{peak_rss_mb(everything):.0f} MB")


if __name__ == "__main__":
    main()

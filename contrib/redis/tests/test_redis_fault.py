"""Fault test: three consumer processes in one group, one killed with SIGKILL mid-stream."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aperion_bus import EventBus
from aperion_bus.testing import wait_until

WORKER = r"""
import sys, time
from aperion_bus import EventBus
url, stream, out, name = sys.argv[1:5]
f = open(out, "a", buffering=1)
def handle(event):
    time.sleep(0.002)
    f.write(f"{event.payload['n']}\n")
bus = EventBus(["redis"], settings={"redis": {
    "url": url, "stream": stream, "group": "workers", "claim_idle_ms": 1000, "batch_size": 10,
    "consumer": name,
}}, handlers=[lambda bus: bus.subscribe(handle, "job.*")])
print("ready", flush=True)
sys.stdin.read()  # run until the test closes our stdin
bus.shutdown()
f.close()
"""


def _lines(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(x) for x in path.read_text().split()]  # a torn last line cannot happen: \n last


@pytest.mark.slow
def _pending_of(client: Any, stream: str, consumer: str) -> int:
    for info in client.xinfo_consumers(stream, "workers"):
        if info["name"].decode() == consumer:
            return int(info["pending"])
    return 0


def test_sigkill_one_of_three_consumers_loses_nothing(
    redis_url: str, tmp_path: Path, client: Any
) -> None:
    n_events = 600
    stream = f"fault:{uuid.uuid4().hex}"
    outs = [tmp_path / f"worker{i}.txt" for i in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, stream, str(out), f"worker{i}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for i, out in enumerate(outs)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        producer = EventBus(
            ["redis"],
            settings={"redis": {"url": redis_url, "stream": stream, "group": "workers",
                                "consume": False}},
        )
        for i in range(n_events):
            producer.emit("job.run", {"n": i})
        producer.shutdown()  # flushes every event to Redis

        victim = procs[0]
        wait_until(lambda: len(_lines(outs[0])) >= 30, timeout=20)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_after = len(_lines(outs[0]))
        # mid-batch: it held entries it had read (or was handling) and never acknowledged
        held = _pending_of(client, stream, "worker0")
        assert held > 0

        def all_handled() -> bool:
            seen: set[int] = set()
            for out in outs:
                seen.update(_lines(out))
            return len(seen) == n_events

        wait_until(all_handled, timeout=30)
        # what the victim held was claimed (XAUTOCLAIM) by the others and acknowledged there
        wait_until(lambda: _pending_of(client, stream, "worker0") == 0, timeout=30)
        time.sleep(0.2)
        counts = collections.Counter(n for out in outs for n in _lines(out))
        assert set(counts) == set(range(n_events))  # none lost
        duplicates = sum(c - 1 for c in counts.values())
        print(
            f"\nfault test: {n_events} events, victim handled {killed_after} before SIGKILL "
            f"and held {held} pending entries, "
            f"survivors {[len(_lines(o)) for o in outs[1:]]}, duplicates {duplicates}"
        )
        # only what the victim was holding can come twice: at most one batch (batch_size=10)
        assert duplicates <= 10
    finally:
        for p in procs:
            if p.poll() is None:
                assert p.stdin is not None
                p.stdin.close()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()

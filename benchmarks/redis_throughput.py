"""End-to-end publish -> consume throughput: aperion-bus-redis vs a plain redis-py loop.

Both sides run against the same redis-server, interleaved, and the medians are compared:

* plain: redis-py asyncio, one task XADDs JSON records (pipelined, batches of 100) while
  another XREADGROUPs (count 100), decodes with json.loads, calls the handler and XACKs.
  The record has the same fields as a serialized event (type, payload, timestamp, id,
  source, correlation and causation ids), so both sides move entries of the same size;
* aperion: a publish-only bus emits events (the plugin XADDs them in pipelined batches), a
  consume-only bus in the same process dispatches them to a handler and XACKs.

On both sides the clock runs from the first emit/XADD until the handler saw the last event.
Target: aperion >= 70 % of plain. Usage: python benchmarks/redis_throughput.py [N] [ROUNDS]
(set REDIS_URL to use a running server, else a temporary redis-server is started).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis
from aperion_bus import Event, EventBus
from aperion_bus.testing import free_port

PAYLOAD = {"user_id": 42, "action": "login", "ip": "10.0.0.1", "ok": True}
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # compact, as the kernel's codec


def _record(i: int) -> dict[str, object]:
    """What the plain loop writes: an event-shaped record as large as the plugin's entry."""
    return {
        "event_type": "user.login",
        "payload": {**PAYLOAD, "n": i},
        "timestamp": time.time(),
        "event_id": f"{time.time_ns() << 24 | (i & 0xFFFFFF):022x}",
        "source": None,
        "correlation_id": None,
        "causation_id": None,
    }


async def _plain(url: str, n: int) -> float:
    stream = f"bench:plain:{uuid.uuid4().hex}"
    prod = aioredis.Redis.from_url(url)
    cons = aioredis.Redis.from_url(url)
    await prod.xgroup_create(stream, "g", id="$", mkstream=True)
    seen = 0
    t_last = 0.0

    def handler(data: dict[str, object]) -> None:
        nonlocal seen, t_last
        seen += 1
        if seen == n:
            t_last = time.perf_counter()  # the clock stops here, as on the aperion side

    async def consume() -> None:
        while seen < n:
            res: Any = await cons.xreadgroup("g", "c", {stream: ">"}, count=100, block=1000)
            for _name, entries in res or []:
                ids = []
                for eid, fields in entries:
                    handler(json.loads(fields[b"event"]))
                    ids.append(eid)
                await cons.xack(stream, "g", *ids)

    async def produce() -> None:
        for start in range(0, n, 100):
            pipe = prod.pipeline(transaction=False)
            for i in range(start, min(start + 100, n)):
                pipe.xadd(stream, {"event": _dumps(_record(i))},
                          maxlen=100_000, approximate=True)
            await pipe.execute()

    t0 = time.perf_counter()
    await asyncio.gather(consume(), produce())
    elapsed = t_last - t0
    await prod.delete(stream)
    await prod.aclose()
    await cons.aclose()
    return elapsed


def plain(url: str, n: int) -> float:
    return asyncio.run(_plain(url, n))


def aperion(url: str, n: int) -> float:
    stream = f"bench:aperion:{uuid.uuid4().hex}"
    common = {"url": url, "stream": stream}
    consumer = EventBus(["redis"], settings={"redis": {**common, "patterns": []}})
    producer = EventBus(["redis"], settings={"redis": {**common, "consume": False}})
    done = threading.Event()
    seen = 0

    def handler(event: Event) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            done.set()

    consumer.subscribe(handler, "user.login")
    t0 = time.perf_counter()
    for i in range(n):
        producer.emit("user.login", {**PAYLOAD, "n": i})
    if not done.wait(120):
        raise RuntimeError(f"only {seen} of {n} events arrived")
    elapsed = time.perf_counter() - t0
    producer.shutdown()
    consumer.shutdown()
    redis.Redis.from_url(url).delete(stream)
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    url = os.environ.get("REDIS_URL")
    server = None
    if url is None:
        exe = shutil.which("redis-server")
        if exe is None:
            sys.exit("redis-server not found: install it or set REDIS_URL")
        port = free_port()
        server = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
    try:
        plain(url, n // 10)  # warm up both paths
        aperion(url, n // 10)
        p_times, a_times = [], []
        for _ in range(rounds):
            p_times.append(plain(url, n))
            a_times.append(aperion(url, n))
        p, a = statistics.median(p_times), statistics.median(a_times)
        aperion_entry = Event("user.login", {**PAYLOAD, "n": n}).to_jsonl()
        print(f"events per round: {n}, rounds: {rounds} (interleaved, medians)")
        print(f"entry size: plain {len(_dumps(_record(n)))} B, "
              f"aperion {len(aperion_entry)} B; batches of 100 on both sides")
        print(f"plain redis-py XADD/XREADGROUP/XACK : {n / p:10,.0f} events/s")
        print(f"aperion-bus-redis emit -> handler   : {n / a:10,.0f} events/s")
        print(f"ratio aperion / plain               : {p / a:10.1%}  (target >= 70 %)")
    finally:
        if server is not None:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()

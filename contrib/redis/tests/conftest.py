"""A real redis-server for the tests: started once per session on a free port, stopped by PID."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from aperion_bus.testing import free_port


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        msg = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; CI=true, so the Redis tests must run")
        pytest.skip(msg)
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        cli = shutil.which("redis-cli")
        while True:
            if cli is not None:
                ok = subprocess.run(
                    [cli, "-p", str(port), "ping"], capture_output=True, text=True, check=False
                ).stdout.strip() == "PONG"
            else:  # pragma: no cover - redis-cli ships with redis-server
                import socket

                with socket.socket() as s:
                    ok = s.connect_ex(("127.0.0.1", port)) == 0
            if ok:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def stream() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    """redis-py's sync client (typed Any: its reply types are unions too wide to narrow)."""
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()

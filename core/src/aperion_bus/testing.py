"""Helpers for testing code that uses aperion-bus (and for the project's own tests).

Shared by every distribution's tests: add helpers here rather than copying them.
:class:`EventCapture` (what a bus emitted, like pytest's ``caplog`` for events) and
:func:`bus_from_config` (a bus from the project's config file, its transport kept in-process)
are also behind the pytest plugin's ``bus``, ``bus_events`` and ``bus_from_config`` fixtures
(``aperion_bus.pytest_plugin``, see ``docs/testing.md``). This module never imports pytest.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._capture import IN_PROCESS_DISABLE, EventCapture, bus_from_config
from ._event import Event

if TYPE_CHECKING:
    pass

__all__ = [
    "IN_PROCESS_DISABLE",
    "EventCapture",
    "Recorder",
    "assert_bad_setting",
    "bus_from_config",
    "free_port",
    "install_distribution",
    "run_python",
    "wait_until",
]


class Recorder:
    """A thread-safe handler that records the events it receives.

    >>> rec = Recorder(); bus.subscribe(rec, "user.*")   # doctest: +SKIP
    >>> rec.wait_for(3)                                   # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    @property
    def types(self) -> list[str]:
        with self._cond:
            return [e.event_type for e in self.events]

    @property
    def payloads(self) -> list[dict[str, object]]:
        with self._cond:
            return [e.payload for e in self.events]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Event]:
        """Block until at least ``count`` events arrived; raises ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.events) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"got {len(self.events)} of {count} events in {timeout}s")
                self._cond.wait(remaining)
            return list(self.events)


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate()`` until it is true; raises ``TimeoutError`` after ``timeout``."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_python(
    code: str,
    *args: str,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter of the same environment; returns the finished process."""
    cmd: Sequence[str] = [sys.executable, "-c", code, *args]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"subprocess failed ({proc.returncode}):\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def install_distribution(project: str | Path, target: str | Path) -> Path:
    """Build and install the distribution in ``project`` into the directory ``target``.

    A real install (wheel built by its build backend, ``*.dist-info`` with entry points) that
    touches nothing else: put ``target`` on ``sys.path`` (and call
    ``aperion_bus.refresh_entry_points()``) to use it. Uses ``uv pip`` when available, else pip.
    """
    target = Path(target).resolve()
    project = Path(project).resolve()  # a path, not a name to look up in an index
    uv = shutil.which("uv")
    if uv is not None:
        cmd = [
            uv,
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--python",
            sys.executable,
            "--target",
            str(target),
            str(project),
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(project),
        ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"installing {project} failed:\n{proc.stdout}\n{proc.stderr}")
    return target


_FROM_SETTINGS: Any = object()


def assert_bad_setting(
    plugin: str,
    settings: Mapping[str, Any],
    key: str,
    expected: str,
    value: Any = _FROM_SETTINGS,
) -> str:
    """Assert that a bus with the ``plugin`` entry point and ``settings`` is refused with a
    :class:`~aperion_bus.ConfigError` naming the plugin, ``key``, the value (``settings[key]``
    unless given) and ``expected`` (a part of the expectation); return the message."""
    from ._bus import EventBus
    from ._errors import ConfigError
    from .settings import describe

    if value is _FROM_SETTINGS:
        value = settings[key]
    try:
        bus = EventBus([plugin], settings={plugin: dict(settings)})
    except ConfigError as exc:
        msg = str(exc)
    else:
        bus.shutdown()
        raise AssertionError(f"plugin {plugin!r} accepted the settings {settings!r}")
    for part in (repr(plugin), key, describe(value), expected):
        if part not in msg:
            raise AssertionError(f"{part!r} is missing from the ConfigError: {msg}")
    return msg


# ---------------------------------------------------------------------------- event capture

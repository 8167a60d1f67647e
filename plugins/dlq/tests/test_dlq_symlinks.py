"""Symbolic links planted at the SQLite DLQ's paths are refused, never followed (issue 13).

The database, its ``-wal``, ``-shm`` and ``-journal`` files: a link (to a victim file, or
dangling) makes opening the queue fail with DLQStorageError naming the path; the victim is
untouched and a dangling link's target is never created.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from aperion_bus import ConfigError, Event, EventBus, FailureReason
from aperion_bus_dlq import DeadLetterQueue, DLQStorageError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")

SECRET = b"victim: do not touch\n"
SUFFIXES = ["", "-wal", "-shm", "-journal"]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim.txt"
    v.write_bytes(SECRET)
    return v


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_link_to_a_victim_is_refused(tmp_path: Path, victim: Path, suffix: str) -> None:
    path = tmp_path / "dlq.sqlite"
    link = Path(f"{path}{suffix}")
    link.symlink_to(victim)
    dlq = DeadLetterQueue(path=path)
    with pytest.raises(DLQStorageError, match="is a symbolic link") as info:
        dlq.open()
    assert repr(str(link)) in str(info.value)
    assert victim.read_bytes() == SECRET
    assert link.is_symlink()
    dlq.close()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_dangling_link_never_creates_its_target(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "dlq.sqlite"
    target = tmp_path / "elsewhere" / "created"
    target.parent.mkdir()
    Path(f"{path}{suffix}").symlink_to(target)
    dlq = DeadLetterQueue(path=path)
    with pytest.raises(DLQStorageError, match="is a symbolic link"):
        dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("x"))
    assert not target.exists()
    dlq.close()


def test_the_plugin_refuses_to_start_on_a_link(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "dlq.sqlite"
    path.symlink_to(victim)
    with pytest.raises((DLQStorageError, ConfigError), match="is a symbolic link"):
        EventBus(["dlq"], settings={"dlq": {"path": str(path)}})
    assert victim.read_bytes() == SECRET


def test_a_link_planted_after_opening_is_refused_at_the_next_connection(
    tmp_path: Path, victim: Path
) -> None:
    path = tmp_path / "dlq.sqlite"
    dlq = DeadLetterQueue(path=path)
    dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("x"))
    dlq.close()
    path.unlink()
    path.symlink_to(victim)
    with pytest.raises(DLQStorageError, match="is a symbolic link"):
        DeadLetterQueue(path=path).open()
    assert victim.read_bytes() == SECRET

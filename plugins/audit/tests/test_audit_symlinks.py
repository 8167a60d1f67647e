"""Symbolic links planted at the log's paths are refused, never followed (issue 13).

A link at the live file, the lock file or a rotated name, dangling or to a victim file: the
plugin refuses to start (ConfigError naming the path), a link planted later makes records fail
(counted, logged) instead of reaching the victim, ``clear_log`` and the readers refuse it, and
a dangling link never creates its target. Directories the plugin creates are 0700.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from aperion_bus import ConfigError, EventBus
from aperion_bus_audit import (
    HAVE_FLOCK,
    AuditPlugin,
    SymlinkError,
    clear_log,
    get_records,
    lock_path,
    rotated_path,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")

SECRET = b"victim: do not touch\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim.txt"
    v.write_bytes(SECRET)
    return v


def assert_untouched(victim: Path) -> None:
    assert victim.read_bytes() == SECRET


def links(tmp_path: Path, log: Path) -> dict[str, Path]:
    return {
        "live": log,
        "lock": lock_path(log),
        "rotated": rotated_path(log, 1),
        "rotated_far": rotated_path(log, 3),
    }


# the single-process mode (no fcntl) has no lock file to plant a link at
LOCK = pytest.param("lock", marks=pytest.mark.skipif(not HAVE_FLOCK, reason="no lock file"))


@pytest.mark.parametrize("where", ["live", LOCK, "rotated", "rotated_far"])
def test_a_link_to_a_victim_refuses_the_start(tmp_path: Path, victim: Path, where: str) -> None:
    log = tmp_path / "logs" / "events.jsonl"
    log.parent.mkdir()
    link = links(tmp_path, log)[where]
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match=r"audit: refusing to start: .*is a symbolic link") as e:
        EventBus(plugins=[AuditPlugin(path=log)])
    assert str(link) in str(e.value)
    assert_untouched(victim)
    assert link.is_symlink()


@pytest.mark.parametrize("where", ["live", LOCK])
def test_a_dangling_link_never_creates_its_target(tmp_path: Path, where: str) -> None:
    log = tmp_path / "events.jsonl"
    target = tmp_path / "elsewhere" / "created.txt"
    target.parent.mkdir()
    link = links(tmp_path, log)[where]
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        EventBus(plugins=[AuditPlugin(path=log)])
    assert not target.exists()


def test_a_link_planted_at_the_live_path_after_start_is_refused(
    tmp_path: Path, victim: Path
) -> None:
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log)
    bus = EventBus(plugins=[plugin])
    bus.emit("a.before", {}, wait_for_handlers=True)
    log.unlink()
    log.symlink_to(victim)
    plugin.writer._next_check = 0.0  # the writer's periodic check that path is its file
    bus.emit("a.after", {"secret": "x"}, wait_for_handlers=True)
    stats = bus.get_stats()["audit"]
    bus.shutdown()
    assert stats["write_errors"] == 1
    assert "is a symbolic link" in stats["last_error"]
    assert_untouched(victim)


def test_a_link_at_the_rotated_name_refuses_the_rotation(tmp_path: Path, victim: Path) -> None:
    log = tmp_path / "events.jsonl"
    bus = EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=400, max_files=3)])
    bus.emit("a.first", {"pad": "x" * 200}, wait_for_handlers=True)
    rotated_path(log, 1).symlink_to(victim)  # planted while running
    bus.emit("a.second", {"pad": "y" * 200}, wait_for_handlers=True)  # would rotate
    stats = bus.get_stats()["audit"]
    bus.shutdown()
    assert stats["rotations"] == 0
    assert stats["write_errors"] == 1
    assert str(rotated_path(log, 1)) in stats["last_error"]
    assert_untouched(victim)
    assert rotated_path(log, 1).is_symlink()
    assert [json.loads(line)["event_type"] for line in log.read_bytes().splitlines()] == [
        "a.first"
    ]


def test_a_link_at_the_live_path_at_rotation_time_is_refused(
    tmp_path: Path, victim: Path
) -> None:
    log = tmp_path / "events.jsonl"
    bus = EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=400, max_files=3)])
    bus.emit("a.first", {"pad": "x" * 200}, wait_for_handlers=True)
    log.unlink()
    log.symlink_to(victim)
    bus.emit("a.second", {"pad": "y" * 200}, wait_for_handlers=True)
    stats = bus.get_stats()["audit"]
    bus.shutdown()
    assert stats["write_errors"] == 1
    assert "is a symbolic link" in stats["last_error"]
    assert_untouched(victim)
    assert not rotated_path(log, 1).exists()


@pytest.mark.parametrize("where", ["live", LOCK, "rotated"])
def test_clear_log_never_truncates_through_a_link(
    tmp_path: Path, victim: Path, where: str
) -> None:
    log = tmp_path / "events.jsonl"
    with EventBus(plugins=[AuditPlugin(path=log)]) as bus:
        bus.emit("a.b", {}, wait_for_handlers=True)
    link = links(tmp_path, log)[where]
    if link.exists():
        link.unlink()
    link.symlink_to(victim)
    with pytest.raises(SymlinkError, match="is a symbolic link"):
        clear_log(log)
    assert_untouched(victim)
    assert link.is_symlink()


@pytest.mark.parametrize("where", ["live", "rotated"])
def test_readers_refuse_a_link(tmp_path: Path, victim: Path, where: str) -> None:
    log = tmp_path / "events.jsonl"
    with EventBus(plugins=[AuditPlugin(path=log)]) as bus:
        bus.emit("a.b", {}, wait_for_handlers=True)
    link = links(tmp_path, log)[where]
    if link.exists():
        link.unlink()
    link.symlink_to(victim)
    with pytest.raises(SymlinkError, match=str(link)):
        get_records(log)


def test_created_directories_are_owner_only(tmp_path: Path) -> None:
    log = tmp_path / "a" / "b" / "events.jsonl"
    with EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=200)]) as bus:
        for i in range(5):
            bus.emit("a.b", {"i": i, "pad": "z" * 50}, wait_for_handlers=True)
    for d in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in (log, rotated_path(log, 1), *([lock_path(log)] if HAVE_FLOCK else [])):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o755)
    with EventBus(plugins=[AuditPlugin(path=d / "events.jsonl")]) as bus:
        bus.emit("a.b", {}, wait_for_handlers=True)
    assert stat.S_IMODE(d.stat().st_mode) == 0o755

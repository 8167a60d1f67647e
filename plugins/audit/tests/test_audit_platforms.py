"""Without ``fcntl`` (Windows) the plugin imports and works in its single-process mode (issue 12).

``sys.modules["fcntl"] = None`` makes ``import fcntl`` fail as it does on Windows.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from aperion_bus.testing import run_python

# as on Windows: no fcntl, and an mmap without the POSIX flags
NO_FCNTL = (
    'import sys, mmap\nsys.modules["fcntl"] = None\n'
    'for n in ("MAP_SHARED", "MAP_PRIVATE", "MAP_POPULATE", "PROT_READ", "PROT_WRITE"):\n'
    "    if hasattr(mmap, n):\n"
    "        delattr(mmap, n)\n"
)


def test_the_plugin_works_without_fcntl(tmp_path: Path) -> None:
    code = NO_FCNTL + textwrap.dedent(
        """
        import warnings
        import aperion_bus_audit
        from aperion_bus import EventBus
        from aperion_bus_audit import AuditLogWarning, AuditPlugin, clear_log, get_events
        from aperion_bus_audit import lock_path, log_files

        assert aperion_bus_audit.HAVE_FLOCK is False
        log = sys.argv[1] + "/events.jsonl"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):  # two buses: the warning comes once per process
                with EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=300)]) as bus:
                    for i in range(10):
                        bus.emit("a.b", {"i": i, "pad": "p" * 60}, wait_for_handlers=True)
        mine = [w for w in caught if issubclass(w.category, AuditLogWarning)]
        assert len(mine) == 1, [str(w.message) for w in caught]
        assert "single-process mode" in str(mine[0].message)
        assert [e.payload["i"] for e in get_events(log, limit=3)] == [9, 8, 7]
        from aperion_bus_audit._reader import query_records  # the CLI's mapped search
        hits = [rec["payload"]["i"] for rec, _line in query_records(log, event_type="a.b")]
        assert hits[:3] == [9, 8, 7], hits
        assert len(log_files(log)) > 1  # it rotated
        from pathlib import Path
        assert not lock_path(Path(log)).exists()  # no lock file in this mode
        assert clear_log(log) is True
        assert get_events(log) == []
        print("ok")
        """
    )
    assert run_python(code, str(tmp_path)).stdout.strip() == "ok"


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("APERION_BUS_TEST_NO_FCNTL") == "1", reason="already without fcntl"
)
def test_the_audit_test_suite_passes_without_fcntl() -> None:
    tests = Path(__file__).parent
    proc = run_python(
        "import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))",
        str(tests), "-q", "-p", "no:cacheprovider",
        cwd=tests.parents[2],  # the workspace root: its pytest settings
        env={**os.environ, "APERION_BUS_TEST_NO_FCNTL": "1"},
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout

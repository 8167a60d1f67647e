"""``import aperion_event_bus`` works without ``fcntl``, as on Windows (issue 12)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from aperion_bus.testing import run_python


def test_the_facade_imports_and_audits_without_fcntl(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["fcntl"] = None  # import fcntl now fails, as on Windows
        import warnings
        warnings.simplefilter("ignore")  # the audit plugin's single-process-mode warning
        import aperion_event_bus
        import aperion_bus_audit
        from aperion_bus import EventBus
        from aperion_bus_audit import AuditPlugin, get_events

        assert aperion_bus_audit.HAVE_FLOCK is False
        log = sys.argv[1] + "/events.jsonl"
        with EventBus(plugins=[AuditPlugin(path=log)]) as bus:
            bus.emit("user.login", {"user": "alice"}, wait_for_handlers=True)
        assert [e.event_type for e in get_events(log)] == ["user.login"]
        print("ok")
        """
    )
    assert run_python(code, str(tmp_path)).stdout.strip() == "ok"

"""``aperion-bus demo``: a bus built from a config file, a realistic flow, a summary."""

from __future__ import annotations

import collections
from pathlib import Path

from ._bus import EventBus
from ._correlation import CorrelationContext
from ._event import Event
from ._plugins import installed_plugins

__all__ = ["run_demo"]

_CONFIG = """\
# Written by `aperion-bus demo`. Every installed first-party plugin that the demo knows is
# listed with its settings; see docs/configuration.md.
{plugins}
[bus]
handler_timeout = 0.5
"""


def run_demo(workdir: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    installed = {p.name for p in installed_plugins()}
    config_path = workdir / "aperion-bus.toml"
    config_path.write_text(_CONFIG.format(plugins=_plugin_tables(installed, workdir)))
    names = ", ".join(sorted(installed)) or "none"
    print(f"aperion-bus demo: config {config_path} (plugins installed: {names})")
    seen: collections.Counter[str] = collections.Counter()
    with EventBus.from_config(config_path) as bus:
        bus.subscribe(lambda e: seen.update([e.event_type]), "*", priority=1000)

        @bus.on("user.*")
        def welcome(event: Event) -> None:
            pass

        @bus.on("chat.message")
        def flaky(event: Event) -> None:
            if "fail" in event.payload.get("text", ""):
                raise RuntimeError("chat store unavailable")

        for user in ("alice", "bob"):
            with CorrelationContext(f"req-{user}"):
                bus.emit(
                    "user.login",
                    {"username": user, "email": f"{user}@example.com", "password": "hunter2"},
                    wait_for_handlers=True,
                )
                bus.emit("chat.message", {"text": "hello"}, wait_for_handlers=True)
                bus.emit("chat.message", {"text": "please fail"}, wait_for_handlers=True)
        bus.wait_for_pending()
        stats = bus.get_stats()
    print("\nevents by type:")
    for name, n in sorted(seen.items()):
        print(f"  {name:24} {n}")
    active = ", ".join(stats["plugins"]) or "none"
    print(f"\nhandler errors: {stats['handler_errors']}, plugins active: {active}")
    return 0


def _plugin_tables(installed: set[str], workdir: Path) -> str:
    known = {
        "validate": "",
        "redact": "",
        "audit": f'path = "{workdir / "events.jsonl"}"\n',
        "dlq": f'path = "{workdir / "dead-letters.sqlite3"}"\n',
        "backpressure": 'max_pending_events = 50\noverflow_policy = "drop"\n',
        "metrics": "",
    }
    return "".join(
        f"[plugins.{name}]\n{settings}\n" for name, settings in known.items() if name in installed
    )

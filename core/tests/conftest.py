"""Fixtures shared by the kernel's tests: a working directory, and ``acme_site``, a real
distribution (acme-bus-extras) with plugin and handler entry points, installed into a folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aperion_bus import refresh_entry_points
from aperion_bus.testing import install_distribution


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory, with no config file named by the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APERION_BUS_CONFIG", raising=False)
    return tmp_path


PYPROJECT = """\
[project]
name = "acme-bus-extras"
version = "1.4.0"
requires-python = ">=3.11"

[project.entry-points."aperion_bus.plugins"]
acme_counter = "acme_bus_extras:CounterPlugin"
acme_broken = "acme_bus_extras.missing_module:Nope"
acme_fragile = "acme_bus_extras:FragilePlugin"
acme_strict = "acme_bus_extras:StrictPlugin"

[project.entry-points."aperion_bus.handlers"]
acme_welcome = "acme_bus_extras:register"
acme_module = "acme_bus_extras.handlers"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["acme_bus_extras"]
"""

INIT = """
from aperion_bus import hookimpl

WELCOMED = []


class CounterPlugin:
    def __init__(self, start=0):
        self.count = start

    @hookimpl
    def on_emit(self, event):
        self.count += 1

    @hookimpl
    def on_stats(self):
        return {"acme_counter": self.count}

    @staticmethod
    @hookimpl
    def add_cli_commands(subparsers):
        hello = subparsers.add_parser("acme-hello", help="say hello")
        hello.add_argument("--name", default="world")
        hello.set_defaults(func=lambda args: print(f"hello {args.name} from acme") or 0)


class FragilePlugin:
    def __init__(self):
        raise RuntimeError("no backend here")


class StrictPlugin:
    def __init__(self, limit=1, required_flag=True):
        from aperion_bus.settings import Settings

        s = Settings("acme_strict")
        self.limit = s.integer("limit", limit, min=1)
        self.flag = s.boolean("required_flag", required_flag)


def register(bus):
    bus.subscribe(lambda e: WELCOMED.append(e.payload["user"]), "user.login")
"""

HANDLERS = """
from aperion_bus import handler

SEEN = []


@handler("user.*", priority=5)
def on_user(event):
    SEEN.append(event.event_type)
"""


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("acme")
    project = root / "project"
    pkg = project / "acme_bus_extras"
    pkg.mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "__init__.py").write_text(INIT)
    (pkg / "handlers.py").write_text(HANDLERS)
    site = install_distribution(project, root / "site")
    sys.path.insert(0, str(site))
    refresh_entry_points()
    yield site
    sys.path.remove(str(site))
    for name in [m for m in sys.modules if m.startswith("acme_bus_extras")]:
        del sys.modules[name]
    refresh_entry_points()

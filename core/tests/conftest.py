"""Fixtures shared by the kernel's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory, with no config file named by the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APERION_BUS_CONFIG", raising=False)
    return tmp_path

"""Fixtures of the aperion-bus-dlq tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aperion_bus_dlq import DeadLetterQueue


@pytest.fixture(params=["memory", "sqlite"])
def dlq(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeadLetterQueue]:
    """A DeadLetterQueue of each kind: every test using it runs against both stores."""
    queue = DeadLetterQueue(
        max_size=50, path=None if request.param == "memory" else tmp_path / "dlq.sqlite"
    )
    yield queue
    queue.close()

"""Fixtures of the aperion-bus-audit tests.

With ``APERION_BUS_TEST_NO_FCNTL=1`` in the environment, ``fcntl`` is made unimportable (and
``mmap`` loses its POSIX-only flags) before the plugin is imported, as on Windows: the whole
suite then runs in the single-process mode (``test_audit_platforms.py`` does this in a
subprocess).
"""

from __future__ import annotations

import os
import sys

if os.environ.get("APERION_BUS_TEST_NO_FCNTL") == "1":
    if "aperion_bus_audit" in sys.modules:
        raise RuntimeError("aperion_bus_audit was imported before fcntl could be hidden")
    sys.modules["fcntl"] = None  # type: ignore[assignment]
    import mmap  # Windows' mmap has no POSIX flags either

    for _name in ("MAP_SHARED", "MAP_PRIVATE", "MAP_POPULATE", "PROT_READ", "PROT_WRITE"):
        if hasattr(mmap, _name):
            delattr(mmap, _name)

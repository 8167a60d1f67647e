"""Finding a byte string in the reader's window: the C library's ``memmem`` where it has one.

``bytearray.find`` scans this log's text at ~3.5 GB/s on the project VM: its skip table
knows only whether a byte occurs in the needle, and a hex correlation id contains most of
the bytes of a log made of hex ids, so it mostly steps one byte at a time. glibc's
``memmem`` (a two-byte hash shift table) scans the same window at ~17 GB/s, as fast as
``grep -F``; measured with 64 MiB of a benchmark log and a 38-byte quoted id that does not
occur (``benchmarks/log_query.py``'s log): find 17.8 ms, memmem 3.8 ms. StringZilla's
``find`` measured 3.3 ms, not enough over ``memmem`` to add a dependency.

The C library is reached through :mod:`ctypes` (``dlopen(NULL)``: the symbols the process
already has, no library search); where it has no ``memmem`` (Windows) or :mod:`ctypes`
is missing, :func:`finder` returns the window's own ``find``. Both give the same answer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["finder"]

Find = Callable[[bytes, int, int], int]


def _load_memmem() -> Any:
    if sys.platform == "win32":
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None).memmem
    except (ImportError, OSError, AttributeError):
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    return fn


_UNLOADED: Any = object()
_memmem: Any = _UNLOADED


class _MemmemFind:
    """``find(needle, start, end)`` over one window through ``memmem``."""

    __slots__ = ("_base", "_buffer", "_memmem", "_size", "_window")

    def __init__(self, window: bytearray, memmem: Any) -> None:
        import ctypes

        self._window = window
        self._size = len(window)
        self._buffer = (ctypes.c_char * self._size).from_buffer(window)  # pins the window
        self._base = ctypes.addressof(self._buffer)
        self._memmem = memmem

    def __call__(self, needle: bytes, start: int, end: int) -> int:
        n = len(needle)
        if start < 0 or end < 0 or not n:  # offsets from the end, an empty needle: as find
            return self._window.find(needle, start, end)
        end = min(end, self._size)
        if end - start < n:
            return -1
        hit = self._memmem(self._base + start, end - start, needle, n)
        return -1 if hit is None else int(hit) - self._base


def finder(window: bytearray) -> Find:
    """``find(needle, start, end)`` over ``window``, answering as ``window.find`` does.

    The window must not be resized while the function is in use (it holds the window's
    buffer; :class:`bytearray` refuses to resize meanwhile, with ``BufferError``).
    """
    global _memmem
    if _memmem is _UNLOADED:
        _memmem = _load_memmem()
    if _memmem is None or not window:
        return window.find
    return _MemmemFind(window, _memmem)

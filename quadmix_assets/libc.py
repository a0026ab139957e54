"""The C library, loaded once for the few calls Python does not expose: atomic exchange of two paths
(``renameat2``), malloc tuning (``mallopt``) and dying with the parent process (``prctl``). Every caller
has a fallback where there is no glibc (another OS, musl without the symbol): :func:`function` returns
None, never raises."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

__all__ = ["function"]

_LOCK = threading.Lock()
_LIBC: ctypes.CDLL | bool | None = None  # None: not tried yet; False: no C library could be loaded


def _load() -> ctypes.CDLL | None:
    global _LIBC
    with _LOCK:
        if _LIBC is None:
            try:  # use_errno: renameat2 callers read errno
                _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            except OSError:
                _LIBC = False
    return _LIBC or None


def function(name: str):
    """The C library's function ``name`` (a ctypes function), or None where the library or the symbol is
    missing."""
    libc = _load()
    return getattr(libc, name, None) if libc is not None else None

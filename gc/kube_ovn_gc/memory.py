"""Memory helpers shared by the adapters."""

from __future__ import annotations

import ctypes
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """How many pauses are in force, across threads: the collector is one per process, and lists are read
    by several threads at once (the owner kinds together), so the first pause to end must not switch it
    back on under the others."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.was_enabled = False


_PAUSES = _Pauses()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a big answer is decoded and turned into snapshots.

    Decoding allocates millions of containers, none of them in a cycle: with the
    collector running, its scans of the growing heap cost more than the decoding
    (x2.5 on pod pages, ~1.3 s more on a 100k-port NB reply). Nests, in one thread
    or across threads; the collector is back on (if it was on) when the last pause ends.
    """
    with _PAUSES.lock:
        if _PAUSES.count == 0:
            _PAUSES.was_enabled = gc.isenabled()
            gc.disable()
        _PAUSES.count += 1
    try:
        yield
    finally:
        with _PAUSES.lock:
            _PAUSES.count -= 1
            if _PAUSES.count == 0 and _PAUSES.was_enabled:
                gc.enable()


def give_back() -> None:
    """Return the allocator's free pages inside its heap to the system (glibc ``malloc_trim``; a no-op where the C
    library has none, e.g. musl). After a pass's reads: ~5 MB at 150k pods; what freed objects leave in Python's
    own arenas stays (an arena goes back only when all of it is free)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)

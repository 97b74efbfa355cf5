"""Memory helpers shared by the adapters."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a big answer is decoded and turned into snapshots.

    Decoding allocates millions of containers, none of them in a cycle: with the
    collector running, its scans of the growing heap cost more than the decoding
    (x2.5 on pod pages, ~1.3 s more on a 100k-port NB reply). Nests; the collector
    is back on when the outermost pause ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

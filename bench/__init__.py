"""The scale benchmark of kube-ovn-gc: ``python -m bench`` (see ``bench/run.py`` and the README's "Scale").

It reuses the test servers of ``tests/`` (the fake API server, the ovsdb-server fixture),
so their directory goes on the path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "tests", ROOT / "gc"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

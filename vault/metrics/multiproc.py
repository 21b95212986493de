"""Setting up the library's multiprocess mode: free of ``prometheus_client`` imports, since it must run first.

``prometheus_client`` decides once, at import, whether values live in memory or in files under
``PROMETHEUS_MULTIPROC_DIR``, one file per process, summed at scrape time. ``evault serve`` therefore points it
at ``<data dir>/prometheus`` before importing anything that imports the library. The directory is emptied at
each start, as the library requires: counters restart from zero with the service, as ``rate()`` expects.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir(data_dir: Path) -> Path:
    return data_dir / "prometheus"


def use_multiprocess_dir(path: Path) -> None:
    """Empty ``path`` and make it this process's (and its children's) metrics directory."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(path)

"""What a worker process of ``core.engine`` sees: a module that imports nothing itself, so a
worker that has scikit-learn loaded got it from the fork server."""

from __future__ import annotations

import os
import sys


def where_it_ran(name: str, value: int) -> tuple[int, int, int, bool]:
    """(value, process id, parent process id, scikit-learn already imported)."""
    return value, os.getpid(), os.getppid(), "sklearn.cluster" in sys.modules

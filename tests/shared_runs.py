"""Types of the results that session fixtures (conftest.py) compute once and tests only read."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClusterRun:
    """``python -m clustering cluster`` run once on the small sample: its output folder and the
    finished process (what it printed)."""

    out: Path
    done: subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class RecordedRun:
    """``python -m clustering run full_pipeline_job`` run once in a project folder holding the
    small sample in data/raw, recorded in the instance under ``root / "dagster_home"``."""

    root: Path
    done: subprocess.CompletedProcess[str]


def project_env(root: Path) -> dict[str, str]:
    """The environment of ``python -m clustering …`` run in the project folder ``root``: no
    CLUSTERING_* variable from the developer's shell, one worker, the instance in
    ``root / "dagster_home"`` (created with telemetry off when missing)."""
    home = root / "dagster_home"
    if not home.is_dir():
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env.update(DAGSTER_HOME=str(home), CLUSTERING_WORKERS="1")
    return env

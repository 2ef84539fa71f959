"""scripts/run_pipeline.py and the make run-<job> targets, as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_script_runs_a_job_with_tags_recorded_on_the_run(small_data: Path, tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    for name in ["internal_sales.parquet", "need_state.csv", "external_sales.parquet"]:
        shutil.copy(small_data / name, raw / name)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env["DAGSTER_HOME"] = str(home)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "run_pipeline.py"),
            "--job",
            "internal_preprocessing_job",
            "--env",
            "dev",
            "--tag",
            "run_type=test",
            "--tag",
            "version=1.0.0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "internal_need_state_sales" in done.stdout

    instance = dg.DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    assert len(runs) == 1
    assert runs[0].job_name == "internal_preprocessing_job"
    assert runs[0].tags["run_type"] == "test"
    assert runs[0].tags["version"] == "1.0.0"
    assert runs[0].tags["clustering/env"] == "dev"

    unknown = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_pipeline.py"), "--job", "nope_job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert unknown.returncode == 2
    assert "unknown job 'nope_job'; expected one of:" in unknown.stderr


def test_make_run_target_uses_the_requested_environment(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        ["make", "--no-print-directory", "run-internal_preprocessing", "ENV=staging"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0
    assert "environment variable CLUSTERING_STAGING_RAW_DIR is not set" in done.stderr

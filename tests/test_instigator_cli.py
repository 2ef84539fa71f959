"""Sensor, schedule and jobs commands through a subprocess, with a temporary instance home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env["DAGSTER_HOME"] = str(root / "home")
    return subprocess.run(
        [sys.executable, "-m", "clustering", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _status(listing: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in listing.splitlines() if line.strip()}


def test_sensor_and_schedule_commands(small_data: Path, tmp_path: Path) -> None:
    listing = _cli(tmp_path, "sensor", "list")
    assert listing.returncode == 0, listing.stderr
    assert _status(listing.stdout) == {
        "external_data_sensor": "STOPPED",
        "internal_clustering_complete_sensor": "STOPPED",
        "internal_data_sensor": "STOPPED",
        "run_failure_alert_sensor": "RUNNING",
        "asset_check_alert_sensor": "RUNNING",
    }
    assert "internal_clustering_complete_sensor  STOPPED  merging_job" in listing.stdout

    started = _cli(tmp_path, "sensor", "start", "internal_data")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "Started: internal_data_sensor."
    assert _status(_cli(tmp_path, "sensor", "list").stdout)["internal_data_sensor"] == "RUNNING"

    stopped = _cli(tmp_path, "sensor", "stop")
    assert stopped.returncode == 0
    assert set(_status(_cli(tmp_path, "sensor", "list").stdout).values()) == {"STOPPED"}

    preview = _cli(tmp_path, "sensor", "preview", "internal_data_sensor")
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.startswith("internal_data_sensor would skip: no input files match")

    unknown = _cli(tmp_path, "sensor", "start", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().startswith("error: unknown sensor 'nope'; expected one of:")

    schedules = _cli(tmp_path, "schedule", "list")
    assert schedules.returncode == 0, schedules.stderr
    assert (
        "daily_internal_clustering_schedule   STOPPED  internal_clustering_job  0 0 * * * UTC"
        in (schedules.stdout)
    )
    assert "weekly_external_clustering_schedule  STOPPED  external_clustering_job  0 0 * * 1" in (
        schedules.stdout
    )

    jobs = _cli(tmp_path, "jobs")
    assert jobs.returncode == 0
    assert "full_pipeline_job" in jobs.stdout and "internal_ml_job" in jobs.stdout

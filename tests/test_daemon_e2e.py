"""The daemon end to end: a started sensor sees new data, launches one run, and ignores repeats."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 240


def _settle(path: Path) -> None:
    past = time.time() - 120  # older than the sensor's settle time
    os.utime(path, (past, past))


def _runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs())


def _wait_for(home: Path, count: int, timeout: float = RUN_TIMEOUT_S) -> list[dg.DagsterRun]:
    """Wait until ``count`` runs exist and all have finished; return them."""
    deadline = time.monotonic() + timeout
    runs: list[dg.DagsterRun] = []
    while time.monotonic() < deadline:
        runs = _runs(home)
        if len(runs) >= count and all(run.is_finished for run in runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"expected {count} finished runs, found {[r.status for r in runs]}")


def test_sensor_launches_one_run_per_change(small_data: Path, tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    for name in ["internal_sales.parquet", "need_state.csv", "external_sales.parquet"]:
        shutil.copy(small_data / name, raw / name)
        _settle(raw / name)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env.update(DAGSTER_HOME=str(home), CLUSTERING_WORKERS="1")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clustering", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    started = cli("sensor", "start", "internal_data")
    assert started.returncode == 0, started.stderr

    daemon = subprocess.Popen(
        [sys.executable, "-m", "clustering", "daemon"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # First tick: the inputs present are new to the sensor -> one run.
        first = _wait_for(home, 1)
        assert [run.status for run in first] == [dg.DagsterRunStatus.SUCCESS]
        assert first[0].job_name == "full_pipeline_job"

        # A half-written file is left alone.
        sales = pd.read_parquet(raw / "internal_sales.parquet")
        partial = raw / ".internal_sales.parquet.tmp"
        partial.write_bytes(b"PAR1 not finished")

        # New content -> exactly one more run, which succeeds.
        sales.loc[sales.index[:50], "TOTAL_SALES"] *= 1.5
        staged = tmp_path / "new_sales.parquet"
        sales.to_parquet(staged, index=False)
        shutil.copy(staged, raw / "internal_sales.parquet")
        _settle(raw / "internal_sales.parquet")
        second = _wait_for(home, 2)
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in second)

        # The identical file again -> no new run after a few ticks.
        shutil.copy(staged, raw / "internal_sales.parquet")
        _settle(raw / "internal_sales.parquet")
        time.sleep(45)  # the file sensors tick every 30 s
        assert len(_runs(home)) == 2
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)

"""The daemon on a Dagster instance kept in a real PostgreSQL server.

A sensor started from the command line is ticked by the daemon, which launches the full
pipeline; the run is recorded in PostgreSQL's run storage and succeeds. After a daemon restart
the sensor is still running and remembers its cursor: its next tick skips the unchanged files
instead of running the pipeline again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from postgres_server import PostgresServer

from clustering.infra.instance_storage import postgres_template_text
from clustering.infra.ui_server import stop_group

pytestmark = pytest.mark.slow

SENSOR = "internal_data_sensor"
RUN_TIMEOUT_S = 240
TICK_TIMEOUT_S = 90
POLL_S = 2.0  # each poll is a few queries; polling faster only takes CPU from the daemon


@pytest.fixture
def instance(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The test's view of the instance: DAGSTER_HOME holds the PostgreSQL dagster.yaml."""
    home = tmp_path / "instance"
    home.mkdir()
    (home / "dagster.yaml").write_text(postgres_template_text(), encoding="utf-8")
    for key, value in postgres.instance_env(postgres.create_database("postgres_daemon")).items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(home)) as opened:
        yield opened


def _sensor_state(instance: dg.DagsterInstance) -> Any:
    states = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR]
    return states[0] if states else None


def _ticks(instance: dg.DagsterInstance) -> list[Any]:
    """The sensor's ticks, oldest first."""
    state = _sensor_state(instance)
    if state is None:
        return []
    return list(reversed(instance.get_ticks(state.instigator_origin_id, state.selector_id)))


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def _start_daemon(root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "clustering", "daemon"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_postgres_sensor_ticked_by_daemon_keeps_its_state_across_a_restart(
    instance: dg.DagsterInstance, small_data: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    settled = time.time() - 120  # older than the sensor's settle time
    for name in ("internal_sales.parquet", "need_state.csv", "external_sales.parquet"):
        shutil.copy(small_data / name, raw / name)
        os.utime(raw / name, (settled, settled))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env.update(DAGSTER_HOME=str(tmp_path / "instance"), CLUSTERING_WORKERS="1")

    # The daemon starts while the sensor is being started: it ticks running sensors only, and
    # picks up the new state on its next loop.
    daemon = _start_daemon(tmp_path, env)
    try:
        started = subprocess.run(
            [sys.executable, "-m", "clustering", "sensor", "start", "internal_data"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"Started: {SENSOR}."

        # First tick: the inputs are new to the sensor -> one full pipeline run.
        _wait(
            lambda: any(r.is_finished for r in instance.get_runs()), RUN_TIMEOUT_S, "the first run"
        )
        [run] = instance.get_runs()
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.job_name == "full_pipeline_job"
        assert run.tags.get("dagster/sensor_name") == SENSOR
        final = instance.get_latest_materialization_event(dg.AssetKey("final_store_clusters"))
        assert final is not None and final.run_id == run.run_id
        first = _ticks(instance)[0]
        assert first.status.value == "SUCCESS" and list(first.run_ids) == [run.run_id]
        cursor = _sensor_state(instance).instigator_data.cursor
        assert "internal_sales.parquet" in cursor

        stop_group(daemon)
        restarted_at = time.time()
        daemon = _start_daemon(tmp_path, env)
        _wait(
            lambda: any(t.timestamp > restarted_at for t in _ticks(instance)),
            TICK_TIMEOUT_S,
            "a tick of the restarted daemon",
        )
    finally:
        stop_group(daemon)
    later = [t for t in _ticks(instance) if t.timestamp > restarted_at]
    state = _sensor_state(instance)
    assert state.is_running  # still started: the state lives in PostgreSQL
    assert state.instigator_data.cursor == cursor
    assert later[0].status.value == "SKIPPED"
    assert later[0].skip_reason.startswith("no input file changed since the last tick")
    assert len(instance.get_runs()) == 1

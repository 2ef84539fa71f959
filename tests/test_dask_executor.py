"""``dagster.executor: dask``: steps run as tasks on a local dask cluster of two worker
processes (dagster-dask), or on a running scheduler named in the configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from clustering.core.errors import ConfigError
from clustering.dagster.definitions import create_definitions
from clustering.infra.config import load_config

pytestmark = pytest.mark.usefixtures("clean_clustering_env")

DAGSTER = str(Path(sys.executable).with_name("dagster"))
ROOT_ASSETS = ("need_state_map", "external_store_features")


def _site(root: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "site.yml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("CLUSTERING_CONFIG", "site.yml")


def test_dask_executor_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _site(tmp_path, "dagster:\n  executor: dask\n", monkeypatch)
    local = create_definitions("dev", project_root=tmp_path).resolve_job_def("full_pipeline_job")
    assert local.executor_def.name == "dask"

    _site(tmp_path, "dagster:\n  executor: dask\n  dask:\n    local_workers: 0\n", monkeypatch)
    with pytest.raises(ConfigError, match=r"dagster\.dask\.local_workers: .*greater than or equal"):
        load_config("dev", project_root=tmp_path)
    _site(tmp_path, "dagster:\n  executor: spark\n", monkeypatch)
    with pytest.raises(ConfigError, match=r"dagster\.executor: Input should be 'multiprocess'"):
        load_config("dev", project_root=tmp_path)


@pytest.mark.slow
def test_dask_local_cluster_runs_steps_in_two_worker_processes(
    small_data: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    for name in ("internal_sales.parquet", "need_state.csv", "external_sales.parquet"):
        shutil.copy(small_data / name, raw / name)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    (tmp_path / "site.yml").write_text(
        "dagster:\n  executor: dask\n  dask:\n    local_workers: 2\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERING_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), CLUSTERING_CONFIG="site.yml", CLUSTERING_WORKERS="1")

    # The two root assets do not depend on each other: the cluster runs them side by side.
    done = subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "clustering.dagster.definitions",
            "--select",
            ",".join(ROOT_ASSETS),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        events = [e for e in instance.all_logs(run.run_id) if e.dagster_event is not None]
        run_pid = next(
            e.dagster_event.pid
            for e in events
            if e.dagster_event_type == dg.DagsterEventType.RUN_START
        )
        step_pids = {
            e.step_key: e.dagster_event.pid
            for e in events
            if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS
        }
        for asset in ROOT_ASSETS:
            assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None
    assert set(step_pids) == set(ROOT_ASSETS)
    # Each step ran in its own dask worker process, not in the run's process.
    assert len(set(step_pids.values())) == 2
    assert run_pid not in step_pids.values()

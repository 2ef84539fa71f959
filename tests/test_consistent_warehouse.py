"""Nothing lost, nothing mixed: tables that do not belong together are refused with a sentence,
and a run killed at any point leaves the last good final table and exports as they were."""

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

from clustering.dagster.resources.io_manager import ClusteringIOManager
from clustering.sample.files import write_sample_data

ROOT = Path(__file__).resolve().parents[1]
STOP_HALFWAY: dict[str, bool] = {"now": False}


@dg.multi_asset(
    name="clustering_step",
    group_name="clustering",
    outs={"features": dg.AssetOut(), "assignments": dg.AssetOut()},
)
def clustering_step() -> object:
    """Writes its first table, then (when told) stops before the second, like a killed run."""
    yield dg.Output(pd.DataFrame({"STORE_NBR": [1, 2], "VALUE": [0.5, 0.7]}), "features")
    if STOP_HALFWAY["now"]:
        raise RuntimeError("the machine went down")
    yield dg.Output(pd.DataFrame({"STORE_NBR": [1, 2], "CLUSTER": [1, 2]}), "assignments")


@dg.asset(group_name="merging")
def final(features: pd.DataFrame, assignments: pd.DataFrame) -> pd.DataFrame:
    return assignments.merge(features, on="STORE_NBR")


def test_tables_of_one_step_from_different_runs_are_refused(tmp_path: Path) -> None:
    manager = ClusteringIOManager(
        duckdb_path=str(tmp_path / "w.duckdb"),
        exports_dir=str(tmp_path / "exports"),
        producing_jobs={"features": "clustering_job", "assignments": "clustering_job"},
    )
    resources = {"io_manager": manager}
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([clustering_step, final], resources=resources, instance=instance).success
    STOP_HALFWAY["now"] = True
    try:
        stopped = dg.materialize(
            [clustering_step], resources=resources, instance=instance, raise_on_error=False
        )
    finally:
        STOP_HALFWAY["now"] = False
    assert not stopped.success  # features rewritten, assignments still from the first run
    again = dg.materialize(
        [clustering_step, final],
        selection=[final],
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not again.success
    failure = next(e for e in again.all_events if e.event_type_value == "STEP_FAILURE")
    data = failure.step_failure_data
    assert data.user_failure_data is not None
    sentence = str(data.user_failure_data.description)
    assert sentence.startswith(
        "inputs assignments and features of step final do not belong together: they were "
        "built from different runs of clustering_step (run "
    ) or sentence.startswith(
        "inputs features and assignments of step final do not belong together: they were "
        "built from different runs of clustering_step (run "
    )
    assert sentence.endswith("run clustering_job again, then this job.")


# --- killed runs ------------------------------------------------------------------------------


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "project"
    write_sample_data(root / "data" / "raw", preset="small", stores=60, categories=2, seed=3)
    shutil.rmtree(root / "data" / "raw" / "truth")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERING_", "DAGSTER_"))}
    env.update(CLUSTERING_WORKERS="1", DAGSTER_HOME=str(root / "home"))
    (root / "home").mkdir()
    (root / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return root, env


def _run(root: Path, env: dict[str, str], kill_after: str | None = None, delay: float = 0.3) -> int:
    """``python -m clustering run full_pipeline_job``; with ``kill_after``, SIGKILL the run
    ``delay`` seconds after that line appears (the step has started and is working)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "clustering", "run", "full_pipeline_job"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if kill_after is not None and line.strip().startswith(kill_after):
            time.sleep(delay)
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=600)
    return process.returncode


def _kill(root: Path, env: dict[str, str], point: str, delays: tuple[float, ...]) -> None:
    """A run SIGKILLed ``delay`` seconds after the line ``point``, for the first of ``delays``
    whose kill lands before the run ends (a run that ends first must have succeeded)."""
    for delay in delays:
        code = _run(root, env, kill_after=point, delay=delay)
        if code == -signal.SIGKILL:
            return
        assert code == 0, (point, delay, code)
    pytest.fail(f"every kill after {point!r} came when the run had already finished")


def _steps_started(root: Path) -> set[str]:
    """The steps the latest run started, from its event log (the printed lines can lag the
    run by up to the progress printer's poll, so a kill timed on them may land later)."""
    with dg.DagsterInstance.from_config(str(root / "home")) as instance:
        run = instance.get_runs(limit=1)[0]
        events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        return {str(event.step_key) for event in events}


FINAL_EXPORTS = ("final_store_clusters.parquet", "final_store_clusters.csv", "merging_summary.csv")


@pytest.mark.slow
def test_a_run_killed_at_any_point_leaves_the_last_good_result(tmp_path: Path) -> None:
    root, env = _project(tmp_path)
    assert _run(root, env) == 0
    exports = root / "outputs" / "dev"
    good = {name: (exports / name).read_bytes() for name in FINAL_EXPORTS}
    rows = len(pd.read_parquet(exports / "final_store_clusters.parquet"))

    # New inputs, so every step that finishes changes its tables.
    sales = root / "data" / "raw" / "internal_sales.parquet"
    frame = pd.read_parquet(sales)
    frame.assign(TOTAL_SALES=frame["TOTAL_SALES"] * 1.5).to_parquet(sales, index=False)
    for point, delays in [
        ("▸ internal_need_state_sales", (0.3,)),  # preprocessing
        ("▸ internal_clustering", (0.3,)),  # clustering
        ("▸ merge_clusters", (0.3,)),  # merging
        # Writing the final table and its exports: on this tiny data the run may end within a
        # second of the (up to a second late) line, so sooner until a kill lands in the run.
        ("▸ merge_clusters", (1.0, 0.7, 0.4)),
    ]:
        _kill(root, env, point, delays)
        current = {name: (exports / name).read_bytes() for name in FINAL_EXPORTS}
        started = _steps_started(root)
        assert point.removeprefix("▸ ") in started, point
        if "merge_clusters" not in started:
            # Killed before merging: the last good final table, byte for byte.
            assert current == good, point
        # Whatever the moment: complete files only, never a half-written one.
        assert len(pd.read_parquet(exports / "final_store_clusters.parquet")) == rows, point
        assert len(pd.read_csv(exports / "final_store_clusters.csv")) == rows, point
        for other in exports.glob("*.csv"):
            pd.read_csv(other)
        # A kill during an export may leave only its hidden temporary file, never a partial
        # file under a real name.
        hidden = [p.name for p in exports.iterdir() if p.name.startswith(".")]
        assert all(name.endswith(".tmp") for name in hidden), (point, hidden)

    assert _run(root, env) == 0
    assert len(pd.read_parquet(exports / "final_store_clusters.parquet")) == rows
    # The next run removes what killed writers left behind.
    assert not [p.name for p in exports.iterdir() if p.name.startswith(".")]

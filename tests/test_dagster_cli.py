"""Dagster's own command line against our definitions, from a project folder, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from shared_runs import RecordedRun, project_env

from clustering.infra.ui_server import stop_group
from clustering.io.duckdb_store import DuckDBStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _project(small_data: Path, root: Path) -> dict[str, str]:
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for name in ["internal_sales.parquet", "need_state.csv", "external_sales.parquet"]:
        shutil.copy(small_data / name, raw / name)
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # dev runs in process by default; this file runs the multiprocess executor of staging/prod.
    (root / "site.yml").write_text("dagster:\n  executor: multiprocess\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env.update(DAGSTER_HOME=str(home), CLUSTERING_WORKERS="1", CLUSTERING_CONFIG="site.yml")
    return env


def _dagster(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DAGSTER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def _at_project_root(small_data: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for Dagster's tools started from the repository root ([tool.dagster],
    [tool.dg]) with inputs, outputs and logs in ``tmp_path`` (a site file says where)."""
    env = _project(small_data, tmp_path)
    (tmp_path / "site.yml").write_text(
        "paths:\n"
        f"  raw_dir: {tmp_path / 'data' / 'raw'}\n"
        f"  outputs_dir: {tmp_path / 'outputs'}\n"
        f"  logs_dir: {tmp_path / 'logs'}\n"
    )
    env["CLUSTERING_CONFIG"] = str(tmp_path / "site.yml")
    return env


def test_dagster_job_execute_and_asset_materialize(small_data: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    fresh_env = _project(small_data, fresh)
    failed = _dagster(
        "job",
        "execute",
        "-m",
        "clustering.dagster.definitions",
        "-j",
        "merging_job",
        cwd=fresh,
        env=fresh_env,
    )
    assert failed.returncode != 0
    # Neither clustering job has run: the first missing input loaded is named, with its job.
    output = failed.stdout + failed.stderr
    assert "has never been materialized" in output
    assert "_clustering_job first." in output

    project = tmp_path / "project"
    project.mkdir()
    env = _project(small_data, project)
    # The multiprocess executor runs the internal and external tracks side by side: their
    # steps write to the same DuckDB file at the same time. `-m clustering.dagster -a defs` is
    # the working form of the reference system's `-f … clustering.dagster:defs`.
    done = _dagster(
        "job",
        "execute",
        "-m",
        "clustering.dagster",
        "-a",
        "defs",
        "-j",
        "full_pipeline_job",
        cwd=project,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    store = DuckDBStore(project / "outputs" / "clustering_dev.duckdb")
    assert store.has_table("merging", "final_store_clusters")
    assert "Conflicting lock" not in done.stderr

    done = _dagster(
        "asset",
        "materialize",
        "-m",
        "clustering.dagster.definitions",
        "--select",
        "group:internal_clustering",
        cwd=project,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert store.has_table("internal_clustering", "internal_profiles")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(port: int, query: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_bare_dagster_dev_from_the_project_root_serves_every_group(
    small_data: Path, tmp_path: Path
) -> None:
    env = _at_project_root(small_data, tmp_path)
    port = _free_port()
    process = subprocess.Popen(
        [DAGSTER, "dev", "-p", str(port)],  # [tool.dagster] in pyproject.toml says what to load
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the whole tree can be stopped
    )
    try:
        groups: set[str] = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(groups) < 6:
            try:
                answer = _graphql(port, "{ assetNodes { groupName assetKey { path } } }")
                nodes = answer["data"]["assetNodes"]  # type: ignore[index]
                groups = {node["groupName"] for node in nodes}
            except (OSError, KeyError, TypeError):
                time.sleep(1)
        assert groups == {
            "raw_inputs",
            "preprocessing",
            "internal_clustering",
            "external_clustering",
            "merging",
            "workbench",
        }
    finally:
        stop_group(process)


def test_dg_checks_and_launches_from_the_project_root(small_data: Path, tmp_path: Path) -> None:
    env = _at_project_root(small_data, tmp_path)
    dg_tool = str(Path(sys.executable).with_name("dg"))
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parents[1])  # as an activated venv has it
    checked = subprocess.run(
        [dg_tool, "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully." in checked.stdout + checked.stderr
    launched = subprocess.run(
        [dg_tool, "launch", "--job", "internal_preprocessing_job"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
    store = DuckDBStore(tmp_path / "outputs" / "clustering_dev.duckdb")
    assert store.has_table("preprocessing", "internal_need_state_sales")


def test_clustering_run_command_full_pipeline_and_failure(
    small_data: Path, small_recorded: RecordedRun, tmp_path: Path
) -> None:
    def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clustering", "run", *args],
            cwd=root,
            env=project_env(root),
            capture_output=True,
            text=True,
            timeout=600,
        )

    fresh = tmp_path / "fresh"
    _project(small_data, fresh)
    early = run(fresh, "merging_job")
    assert early.returncode == 1
    assert "has never been materialized" in early.stdout + early.stderr
    assert "Traceback" not in early.stdout + early.stderr

    # `run full_pipeline_job --tag purpose=test` in a project with the small sample (conftest).
    done, root = small_recorded.done, small_recorded.root
    assert done.returncode == 0, done.stderr[-3000:]
    assert "✓ merge_clusters" in done.stdout
    assert "CANDY/SNACKS: k=" in done.stdout
    assert "stores assigned in 4 categories" in done.stdout
    assert str(root / "outputs" / "clustering_dev.duckdb") in done.stdout
    assert str(root / "outputs" / "dev" / "final_store_clusters.csv") in done.stdout

    # The alias, in a copy of that project (its tables and run history): the shared one stays.
    project = tmp_path / "project"
    shutil.copytree(root, project)
    alias = run(project, "internal_ml_job")
    assert alias.returncode == 0, alias.stderr[-3000:]
    assert "internal_clustering" in alias.stdout

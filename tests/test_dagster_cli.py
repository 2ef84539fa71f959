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
    # steps write to the same DuckDB file at the same time.
    done = _dagster(
        "job",
        "execute",
        "-m",
        "clustering.dagster.definitions",
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
        "internal_profiles",
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


def test_dagster_dev_serves_the_four_groups(small_data: Path, tmp_path: Path) -> None:
    env = _project(small_data, tmp_path)
    shutil.copytree(ROOT / "src", tmp_path / "src")  # `-f` takes the file by path, as in the repo
    port = _free_port()
    process = subprocess.Popen(
        [DAGSTER, "dev", "-f", "src/clustering/dagster/definitions.py", "-p", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the whole tree can be stopped
    )
    try:
        groups: set[str] = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(groups) < 4:
            try:
                answer = _graphql(port, "{ assetNodes { groupName assetKey { path } } }")
                nodes = answer["data"]["assetNodes"]  # type: ignore[index]
                groups = {node["groupName"] for node in nodes}
            except (OSError, KeyError, TypeError):
                time.sleep(1)
        assert groups == {"preprocessing", "internal_clustering", "external_clustering", "merging"}
    finally:
        stop_group(process)


def test_clustering_run_command_full_pipeline_and_failure(small_data: Path, tmp_path: Path) -> None:
    env = _project(small_data, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clustering", "run", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    early = run("merging_job")
    assert early.returncode == 1
    assert "has never been materialized" in early.stdout + early.stderr
    assert "Traceback" not in early.stdout + early.stderr

    done = run("full_pipeline_job", "--tag", "purpose=test")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "✓ merge_clusters" in done.stdout
    assert "CANDY/SNACKS: k=" in done.stdout
    assert "stores assigned in 4 categories" in done.stdout
    assert str(tmp_path / "outputs" / "clustering_dev.duckdb") in done.stdout
    assert str(tmp_path / "outputs" / "dev" / "final_store_clusters.csv") in done.stdout

    alias = run("internal_ml_job")
    assert alias.returncode == 0, alias.stderr[-3000:]
    assert "internal_clustering_models" in alias.stdout

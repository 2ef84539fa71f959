"""Shared fixtures: the `small` sample generated once per test session, the `cluster` command run
on it once, a PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PostgresServer, require_bin_dir, running_server
from shared_runs import ClusterRun, RecordedRun, project_env

from clustering.infra import config as config_module
from clustering.sample.files import write_sample_data

# The suite runs on two processes (pytest-xdist, `--dist loadgroup` in pyproject.toml): each
# test module goes to one process as a whole, so module fixtures are built once. The modules
# sharing the session runs of the small sample (small_clustered, small_recorded) go together.
# Modules that take longest start first, so the two processes finish at about the same time.
SHARED_RUNS_GROUP = "small_sample_runs"
SHARED_RUNS_MODULES = {"test_cli", "test_pipeline_e2e", "test_dagster_cli"}
LONGEST_FIRST = [
    "test_daemon_e2e",
    SHARED_RUNS_GROUP,
    "test_instigator_cli",
    "test_consistent_warehouse",
    "test_browser",
    "test_postgres_daemon",
    "test_workbench_e2e",
    "test_compose_services",
    "test_input_properties",
    "test_messy_inputs",
    "test_ui",
    "test_dagster_pipeline",
    "test_dask_executor",
    "test_duckdb_store",
    "test_spark_portability",
    "test_run_script",
    "test_quality",
]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def group(item: pytest.Item) -> str:
        module = item.path.stem
        return SHARED_RUNS_GROUP if module in SHARED_RUNS_MODULES else module

    def rank(item: pytest.Item) -> int:
        name = group(item)
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=rank)  # stable: the order inside a module and among the rest is kept


@pytest.fixture
def clean_clustering_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No CLUSTERING_* variable from the developer's shell; os.environ restored afterwards
    (loading a config may write values from .env files into it)."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("CLUSTERING_"):
            del os.environ[name]
    monkeypatch.setattr(config_module, "_dotenv_written", {})
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the three inputs of the `small` preset (seed 0) and its truth/ folder."""
    folder = tmp_path_factory.mktemp("small")
    write_sample_data(folder, preset="small", seed=0)
    return folder


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server on loopback for the whole session (see postgres_server.py)."""
    with running_server(require_bin_dir()) as server:
        yield server


@pytest.fixture(scope="session")
def small_clustered(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> ClusterRun:
    """``python -m clustering cluster --raw-dir SMALL --out OUT --workers 2`` through a
    subprocess, as a user types it, from an empty folder: never the developer's own .env or
    data/overrides.csv. Shared by the command-line test (what it prints and writes) and the
    end-to-end tests (what the tables hold), which only read the results."""
    folder = tmp_path_factory.mktemp("cluster")
    out = folder / "out"
    cwd = folder / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    args = ["--raw-dir", str(small_data), "--out", str(out), "--workers", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "clustering", "cluster", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return ClusterRun(out, done)


@pytest.fixture(scope="session")
def small_recorded(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> RecordedRun:
    """``python -m clustering run full_pipeline_job --tag purpose=test`` through a subprocess in
    a project folder with the small sample in data/raw and its own instance home. Shared by the
    command-line test (what it prints) and the end-to-end test comparing it with ``cluster``;
    a test that runs more jobs there works on a copy."""
    root = tmp_path_factory.mktemp("recorded")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for name in ["internal_sales.parquet", "need_state.csv", "external_sales.parquet"]:
        shutil.copy(small_data / name, raw / name)
    done = subprocess.run(
        [sys.executable, "-m", "clustering", "run", "full_pipeline_job", "--tag", "purpose=test"],
        cwd=root,
        env=project_env(root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return RecordedRun(root, done)

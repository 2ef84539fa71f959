"""Dagster definitions: assets, checks, jobs and resources for one environment.

``defs`` is built for ``$CLUSTERING_ENV`` (default ``dev``); ``create_definitions(env)`` builds
any environment. Importing this module reads the environment's YAML and nothing else: no data is
touched until a job runs.

    dagster job execute -m clustering.dagster.definitions -j full_pipeline_job
    dagster dev -f src/clustering/dagster/definitions.py
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from clustering.dagster.assets import ALL_ASSETS
from clustering.dagster.executors import build_executor
from clustering.dagster.jobs import PRODUCING_JOBS, build_jobs
from clustering.dagster.resources.alerts import AlertsResource
from clustering.dagster.resources.config import ClusteringConfigResource
from clustering.dagster.resources.data_io import InputReaderResource
from clustering.dagster.resources.io_manager import ClusteringIOManager
from clustering.dagster.resources.logging import LoggerResource
from clustering.dagster.schedules import build_schedules
from clustering.dagster.sensors import build_sensors
from clustering.infra.config import load_config


def create_definitions(env: str | None = None, project_root: Path | None = None) -> dg.Definitions:
    """Everything Dagster needs for ``env``; relative paths resolve against ``project_root``
    (default: the current working directory)."""
    env = env or os.environ.get("CLUSTERING_ENV", "dev")
    root = (project_root or Path.cwd()).resolve()
    config = load_config(env, project_root=root)
    settings = ClusteringConfigResource(env=env, project_root=str(root))
    resources = {
        "settings": settings,
        "inputs": InputReaderResource(),
        "logger": LoggerResource(config=settings),
        "alerts": AlertsResource(config=settings),
        "io_manager": ClusteringIOManager(
            duckdb_path=str(config.paths.duckdb_path),
            storage_dir=str(config.paths.storage_dir),
            exports_dir=str(config.paths.exports_dir),
            producing_jobs=PRODUCING_JOBS,
        ),
    }
    # in_process, multiprocess (the internal and external tracks side by side) or dask.
    executor = build_executor(config.dagster)
    # AssetChecksDefinition subclasses AssetsDefinition: test for the checks first.
    check_defs = [c for c in ALL_ASSETS if isinstance(c, dg.AssetChecksDefinition)]
    asset_defs = [a for a in ALL_ASSETS if not isinstance(a, dg.AssetChecksDefinition)]
    # Schedules and sensors target the same job objects the Definitions list.
    jobs = build_jobs()
    return dg.Definitions(
        assets=asset_defs,
        asset_checks=check_defs,
        jobs=jobs,
        schedules=build_schedules(config, jobs),
        sensors=build_sensors(config, jobs),
        resources=resources,
        executor=executor,
    )


defs = create_definitions()

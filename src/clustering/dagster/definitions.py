"""Dagster definitions: assets, checks, jobs, schedules, sensors and resources of one environment.

``defs`` is built for ``$CLUSTERING_ENV`` (default ``dev``); ``create_definitions(env)`` builds
any environment. Importing this module reads and validates the environment's YAML (and the
project's ``.env`` files, without changing ``os.environ``); no data is touched until a job runs.

    dagster dev                                   # from the project root ([tool.dagster])
    dagster job execute -m clustering.dagster -a defs -j full_pipeline_job
    dg check defs
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from clustering.dagster.assets import ALL_ASSETS, RAW_INPUTS
from clustering.dagster.executors import build_executor
from clustering.dagster.jobs import PRODUCING_JOBS, build_jobs
from clustering.dagster.resources.alerts import AlertsResource
from clustering.dagster.resources.data_io import InputReaderResource
from clustering.dagster.resources.io_manager import ClusteringIOManager
from clustering.dagster.resources.logging import LoggerResource
from clustering.dagster.resources.settings import ClusteringSettings
from clustering.dagster.schedules import build_schedules
from clustering.dagster.sensors import build_sensors


def create_definitions(
    env: str | None = None,
    project_root: Path | None = None,
    overrides: Mapping[str, object] | None = None,
) -> dg.Definitions:
    """Everything Dagster needs for ``env``; relative paths resolve against ``project_root``
    (default: the current working directory); ``overrides`` (a nested mapping of configuration
    keys) is layered over the environment's files."""
    env = env or os.environ.get("CLUSTERING_ENV", "dev")
    root = (project_root or Path.cwd()).resolve()
    settings = ClusteringSettings(
        env=env, project_root=str(root), overrides=json.dumps(overrides or {}, sort_keys=True)
    )
    config = settings.config  # validated here, once per process, so a mistake stops the load
    resources = {
        "settings": settings,
        "inputs": InputReaderResource(settings=settings),
        "logger": LoggerResource(settings=settings),
        "alerts": AlertsResource(settings=settings),
        "io_manager": ClusteringIOManager(
            duckdb_path=str(config.paths.duckdb_path),
            exports_dir=str(config.paths.exports_dir),
            producing_jobs=PRODUCING_JOBS,
        ),
    }
    # AssetChecksDefinition subclasses AssetsDefinition: test for the checks first.
    checks = [c for c in ALL_ASSETS if isinstance(c, dg.AssetChecksDefinition)]
    steps = [a for a in ALL_ASSETS if not isinstance(a, dg.AssetChecksDefinition)]
    # Schedules and sensors target the same job objects the Definitions list.
    jobs = build_jobs()
    with warnings.catch_warnings():
        # Code references (links from the catalogue to the source) are marked beta in 1.13.
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(steps)
    return dg.Definitions(
        assets=[*RAW_INPUTS, *assets],
        asset_checks=checks,
        jobs=jobs,
        schedules=build_schedules(config, jobs),
        sensors=build_sensors(config, jobs),
        resources=resources,
        # in_process, multiprocess (the internal and external tracks side by side) or dask.
        executor=build_executor(config.dagster),
    )


defs = create_definitions()

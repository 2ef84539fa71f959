"""Sensor and schedule state in the project's Dagster instance, without a running webserver.

Loads the definitions as a code location (the way ``dagster sensor …`` does), reads and changes
the stored running/stopped state, and evaluates a sensor tick without launching anything. The
daemon started by ``python -m clustering ui`` (or ``daemon``) acts on the stored state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from dagster._cli.workspace.cli_target import (
    get_code_location_from_workspace,
    get_remote_repository_from_code_location,
    get_workspace_from_cli_opts,
)
from dagster._core.definitions.run_request import InstigatorType
from dagster_shared.cli import WorkspaceOpts

from clustering.core.errors import ConfigError
from clustering.infra.instance import ensure_dagster_home
from clustering.infra.instance_storage import open_instance

DEFINITIONS_MODULE = "clustering.dagster.definitions"
Kind = Literal["sensor", "schedule"]
SUFFIX = {"sensor": "_sensor", "schedule": "_schedule"}


@dataclass(frozen=True)
class InstigatorInfo:
    """One sensor or schedule: name, RUNNING/STOPPED, what it runs, and when (schedules)."""

    name: str
    status: str
    target: str
    detail: str = ""


@dataclass
class _Location:
    instance: dg.DagsterInstance
    location: Any
    repository: Any


@contextmanager
def _open(env: str, project_root: Path | None) -> Iterator[_Location]:
    root = (project_root or Path.cwd()).resolve()
    home = ensure_dagster_home(root, env=env)
    # The code location is a subprocess that builds `defs` for $CLUSTERING_ENV.
    os.environ["CLUSTERING_ENV"] = env
    options = WorkspaceOpts(module_name=[DEFINITIONS_MODULE], working_directory=str(root))
    with (
        open_instance(home) as instance,
        get_workspace_from_cli_opts(
            instance, dg.__version__, options, log_level="warning"
        ) as workspace,
    ):
        location = get_code_location_from_workspace(workspace, None)
        repository = get_remote_repository_from_code_location(location, None)
        yield _Location(instance, location, repository)


def _items(opened: _Location, kind: Kind) -> list[Any]:
    repo = opened.repository
    return list(repo.get_sensors() if kind == "sensor" else repo.get_schedules())


def _stored(opened: _Location, kind: Kind) -> dict[str, Any]:
    repo = opened.repository
    instigator = InstigatorType.SENSOR if kind == "sensor" else InstigatorType.SCHEDULE
    states = opened.instance.all_instigator_state(
        repo.get_remote_origin_id(), repo.selector_id, instigator_type=instigator
    )
    return {state.instigator_origin_id: state for state in states}


def resolve_names(kind: Kind, requested: Sequence[str], known: Sequence[str]) -> list[str]:
    """Full names for ``requested`` (``internal_data`` means ``internal_data_sensor``); all
    of ``known`` when nothing is requested; a :class:`ConfigError` for an unknown name."""
    if not requested:
        return sorted(known)
    names = []
    for name in requested:
        full = name if name in known else f"{name}{SUFFIX[kind]}"
        if full not in known:
            raise ConfigError(
                f"unknown {kind} '{name}'; expected one of: {', '.join(sorted(known))}."
            )
        names.append(full)
    return names


def _target(item: Any) -> str:
    job = getattr(item, "job_name", None)
    if job:
        return str(job)
    targets = getattr(item, "sensor_targets", None) or getattr(item, "target_dict", None)
    if targets:
        return ", ".join(sorted(str(t) for t in targets))
    return "(reacts to runs)"


def list_instigators(
    kind: Kind, env: str, project_root: Path | None = None
) -> list[InstigatorInfo]:
    """Every sensor or schedule with its stored status and target."""
    with _open(env, project_root) as opened:
        stored = _stored(opened, kind)
        rows = []
        for item in _items(opened, kind):
            state = item.get_current_instigator_state(stored.get(item.get_remote_origin_id()))
            detail = f"{item.cron_schedule} {item.execution_timezone}" if kind == "schedule" else ""
            status = "RUNNING" if state.is_running else "STOPPED"
            rows.append(InstigatorInfo(item.name, status, _target(item), detail))
        return sorted(rows, key=lambda row: row.name)


def set_running(
    kind: Kind, names: Sequence[str], running: bool, env: str, project_root: Path | None = None
) -> list[str]:
    """Start (``running``) or stop the named sensors or schedules (all when none); their names."""
    with _open(env, project_root) as opened:
        items = {item.name: item for item in _items(opened, kind)}
        chosen = resolve_names(kind, names, list(items))
        instance = opened.instance
        for name in chosen:
            item = items[name]
            if kind == "sensor":
                if running:
                    instance.start_sensor(item)
                else:
                    instance.stop_sensor(item.get_remote_origin_id(), item.selector_id, item)
            elif running:
                instance.start_schedule(item)
            else:
                instance.stop_schedule(item.get_remote_origin_id(), item.selector_id, item)
        return chosen


def preview_sensor(name: str, env: str, project_root: Path | None = None) -> list[str]:
    """What one tick of the sensor would do now, from its stored cursor, without launching."""
    with _open(env, project_root) as opened:
        items = {item.name: item for item in _items(opened, "sensor")}
        full = resolve_names("sensor", [name], list(items))[0]
        sensor = items[full]
        state = _stored(opened, "sensor").get(sensor.get_remote_origin_id())
        data = getattr(state, "instigator_data", None)
        cursor = getattr(data, "cursor", None)
        try:
            result = opened.location.get_sensor_execution_data(
                opened.instance,
                opened.repository.handle,
                full,
                None,
                None,
                cursor,
                log_key=None,
                last_sensor_start_time=None,
            )
        except Exception as exc:  # the sensor's own error, raised through the code server
            message = str(exc).strip().splitlines()
            return [f"{full} failed: {message[-1] if message else type(exc).__name__}"]
        if not result.run_requests:
            reason = result.skip_message or "nothing to do"
            return [f"{full} would skip: {reason}"]
        lines = [f"{full} would request {len(result.run_requests)} run(s):"]
        for request in result.run_requests:
            job = request.job_name or _target(sensor)
            assets = request.asset_selection or []
            what = f" ({len(assets)} assets)" if assets else ""
            lines.append(f"  {job}{what}, run key {request.run_key}")
        return lines

"""Sensor and schedule state in the project's Dagster instance, without a running webserver.

Only Dagster's public interfaces: the definitions and the instance's stored instigator state
(``DagsterInstance.all_instigator_state``) for ``list`` and ``preview``; Dagster's own command
line (``dagster sensor start|stop``, ``dagster schedule start|stop``) to change the state, with
the same code location the daemon started by ``python -m clustering ui`` (or ``daemon``) uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dagster as dg

from clustering.core.errors import ClusteringError, ConfigError
from clustering.infra.instance import ensure_dagster_home

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


def _definitions(env: str, root: Path) -> dg.Definitions:
    from clustering.dagster.definitions import create_definitions

    return create_definitions(env, project_root=root)


def _instigators(
    defs: dg.Definitions, kind: Kind
) -> dict[str, dg.SensorDefinition | dg.ScheduleDefinition]:
    items: list[dg.SensorDefinition | dg.ScheduleDefinition] = []
    if kind == "sensor":
        items += list(defs.sensors or [])
    else:
        items += [s for s in defs.schedules or [] if isinstance(s, dg.ScheduleDefinition)]
    return {item.name: item for item in items}


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


def _stored_states(instance: dg.DagsterInstance, kind: Kind) -> dict[str, object]:
    """The instance's stored state per sensor (or schedule) name; RUNNING wins when several
    code locations stored one under the same name."""
    states: dict[str, object] = {}
    for state in instance.all_instigator_state():
        if str(getattr(state.instigator_type, "value", "")).lower() != kind:
            continue
        name = state.instigator_name
        if name not in states or _status_of(state) == "RUNNING":
            states[name] = state
    return states


def _status_of(state: object) -> str:
    return str(getattr(getattr(state, "status", None), "value", ""))


def _target(item: dg.SensorDefinition | dg.ScheduleDefinition) -> str:
    if isinstance(item, dg.ScheduleDefinition):
        return item.job_name
    if not item.has_jobs:
        return "(reacts to runs)"
    return ", ".join(sorted(job.name for job in item.jobs))


def list_instigators(
    kind: Kind, env: str, project_root: Path | None = None
) -> list[InstigatorInfo]:
    """Every sensor or schedule with its stored status (or its default) and target."""
    root = (project_root or Path.cwd()).resolve()
    defs = _definitions(env, root)
    ensure_dagster_home(root, env=env)
    with dg.DagsterInstance.get() as instance:
        stored = _stored_states(instance, kind)
    rows = []
    for name, item in sorted(_instigators(defs, kind).items()):
        status = _status_of(stored.get(name))
        if status not in ("RUNNING", "STOPPED"):  # never changed: the definition's default
            status = "RUNNING" if item.default_status.value == "RUNNING" else "STOPPED"
        detail = ""
        if isinstance(item, dg.ScheduleDefinition):
            detail = f"{item.cron_schedule} {item.execution_timezone or 'UTC'}"
        rows.append(InstigatorInfo(name, status, _target(item), detail))
    return rows


def set_running(
    kind: Kind, names: Sequence[str], running: bool, env: str, project_root: Path | None = None
) -> list[str]:
    """Start (``running``) or stop the named sensors or schedules (all when none); their names.

    Runs ``dagster sensor|schedule start|stop`` on the same code location as the daemon.
    """
    root = (project_root or Path.cwd()).resolve()
    chosen = resolve_names(kind, names, list(_instigators(_definitions(env, root), kind)))
    ensure_dagster_home(root, env=env)
    for name in chosen:
        _dagster_cli(kind, "start" if running else "stop", name, env, root)
    return chosen


def _dagster_cli(kind: Kind, action: str, name: str, env: str, root: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), kind, action, name, "-m", DEFINITIONS_MODULE, "-d", str(root)]
    result = subprocess.run(
        command,
        cwd=root,
        env={**os.environ, "CLUSTERING_ENV": env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
        raise ClusteringError(f"dagster {kind} {action} {name} failed: {reason}")


def preview_sensor(name: str, env: str, project_root: Path | None = None) -> list[str]:
    """What one tick of the sensor would do now, from its stored cursor, without launching."""
    root = (project_root or Path.cwd()).resolve()
    defs = _definitions(env, root)
    sensors = _instigators(defs, "sensor")
    full = resolve_names("sensor", [name], list(sensors))[0]
    sensor = sensors[full]
    if not isinstance(sensor, dg.SensorDefinition) or isinstance(
        sensor, dg.RunStatusSensorDefinition
    ):
        return [f"{full} reacts to finished runs; there is nothing to preview."]
    ensure_dagster_home(root, env=env)
    with dg.DagsterInstance.get() as instance:
        state = _stored_states(instance, "sensor").get(full)
        cursor = getattr(getattr(state, "instigator_data", None), "cursor", None)
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        try:
            outcome = sensor(context)
        except Exception as exc:  # the sensor's own error, shown as it would be in the UI
            message = str(exc).strip().splitlines()
            return [f"{full} failed: {message[-1] if message else type(exc).__name__}"]
    requests = _run_requests(outcome)
    if not requests:
        reason = getattr(outcome, "skip_message", None) or "nothing to do"
        return [f"{full} would skip: {reason}"]
    lines = [f"{full} would request {len(requests)} run(s):"]
    for request in requests:
        job = request.job_name or _target(sensor)
        assets = request.asset_selection or []
        what = f" ({len(assets)} assets)" if assets else ""
        lines.append(f"  {job}{what}, run key {request.run_key}")
    return lines


def _run_requests(outcome: object) -> list[dg.RunRequest]:
    if isinstance(outcome, dg.SensorResult):
        return list(outcome.run_requests or [])
    if isinstance(outcome, dg.RunRequest):
        return [outcome]
    return []

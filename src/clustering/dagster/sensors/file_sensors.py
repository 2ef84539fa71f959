"""Sensors that start a run when raw input files are added or their content changes.

Each tick scans the watched locations (:mod:`clustering.io.file_watch`), compares the settled
files' fingerprints with the cursor (JSON ``{path: fingerprint}``) and requests at most one run
for the whole change set, keyed by the fingerprints: the same content never runs twice, even
after a daemon restart that lost the cursor. Files still being written are left out of the
cursor, so they are picked up by a later tick once complete.

On the first tick (no cursor) the files that exist count as new and one run is requested: the
sensor cannot know whether the warehouse was built from them. If a run for exactly this content
was already launched, Dagster drops the request by its run key.

Both sensors target ``full_pipeline_job`` with an asset selection: the preprocessing and
clustering track of the changed input plus the merging assets, so the final table is rebuilt
without redoing the other track. When the Dagster instance has no materialization of the other
track's assignments, the whole pipeline is requested instead (merging could not run otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from clustering.dagster.jobs import JOB_ASSETS
from clustering.infra.config import AppConfig
from clustering.io import file_watch

SETTLE_SECONDS = 5.0
"""A file modified more recently than this is taken to be still being written."""

MINIMUM_INTERVAL_SECONDS = 30
"""How often the daemon evaluates the file sensors."""

TARGET_JOB = "full_pipeline_job"

INTERNAL_TRACK = [*JOB_ASSETS["internal_preprocessing_job"], *JOB_ASSETS["internal_clustering_job"]]
EXTERNAL_TRACK = [*JOB_ASSETS["external_preprocessing_job"], *JOB_ASSETS["external_clustering_job"]]
MERGING = JOB_ASSETS["merging_job"]

#: The other track's assignments the merging assets read, per watched side.
_OTHER_SIDE = {"internal": "external_assignments", "external": "internal_assignments"}
_TRACK = {"internal": INTERNAL_TRACK, "external": EXTERNAL_TRACK}


def asset_selection_for(side: str, instance: dg.DagsterInstance) -> list[dg.AssetKey] | None:
    """Assets to rebuild when ``side``'s ("internal" or "external") inputs changed.

    The side's preprocessing and clustering plus merging when the instance has a materialization
    of the other side's assignments; ``None`` (the whole of ``full_pipeline_job``) otherwise.
    """
    other = instance.get_latest_materialization_event(dg.AssetKey(_OTHER_SIDE[side]))
    if other is None:
        return None
    return [dg.AssetKey(name) for name in [*_TRACK[side], *MERGING]]


def _names(paths: Sequence[str], limit: int = 3) -> str:
    shown = [Path(p).name for p in paths[:limit]]
    more = len(paths) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def evaluate_file_tick(
    *,
    sensor_name: str,
    side: str,
    specs: Sequence[str],
    cursor: str | None,
    instance: dg.DagsterInstance,
    now: float | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> dg.SensorResult | dg.SkipReason:
    """One tick of a file sensor: a :class:`SensorResult` with one run, or a skip reason."""
    previous = file_watch.loads_cursor(cursor)
    result = file_watch.scan(
        specs,
        now=time.time() if now is None else now,
        settle_seconds=settle_seconds,
        previous=previous,
    )
    waiting = sorted(result.in_progress)
    waiting_note = (
        f"; waiting for {len(waiting)} file(s) still being written ({_names(waiting)})"
        if waiting
        else ""
    )
    if not result.stable:
        if waiting:
            return dg.SkipReason(f"no settled input file yet{waiting_note}.")
        return dg.SkipReason(f"no input files match {file_watch.describe(specs)}.")
    changed = file_watch.changes(previous, result.stable)
    if not changed:
        return dg.SkipReason(
            f"no input file changed since the last tick ({len(result.stable)} watched)"
            f"{waiting_note}."
        )
    selection = asset_selection_for(side, instance)
    # Files being rewritten keep their last settled fingerprint until they settle again.
    new_state = dict(result.stable)
    new_state.update({p: previous[p] for p in waiting if p in previous})
    scope = "the whole pipeline" if selection is None else f"{side} track and merging"
    request = dg.RunRequest(
        run_key=file_watch.run_key(sensor_name, new_state),
        job_name=TARGET_JOB,
        asset_selection=selection,
        tags={
            "clustering/trigger": sensor_name,
            "clustering/changed_files": str(len(changed)),
            "clustering/scope": scope,
        },
    )
    return dg.SensorResult(run_requests=[request], cursor=file_watch.dumps_cursor(new_state))


def build_file_sensor(
    *,
    name: str,
    side: str,
    specs: Sequence[str],
    job: dg.UnresolvedAssetJobDefinition,
    default_status: dg.DefaultSensorStatus,
    description: str,
) -> dg.SensorDefinition:
    """A sensor named ``name`` watching ``specs`` and requesting runs of ``job``."""
    watched = list(specs)

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=default_status,
        description=description,
    )
    def _file_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        return evaluate_file_tick(
            sensor_name=name,
            side=side,
            specs=watched,
            cursor=context.cursor,
            instance=context.instance,
        )

    return _file_sensor


def build_file_sensors(
    config: AppConfig,
    full_pipeline_job: dg.UnresolvedAssetJobDefinition,
    default_status: dg.DefaultSensorStatus,
) -> list[dg.SensorDefinition]:
    """``internal_data_sensor`` and ``external_data_sensor`` for ``config``'s input paths."""
    paths = config.paths
    return [
        build_file_sensor(
            name="internal_data_sensor",
            side="internal",
            specs=[paths.internal_sales, paths.need_states],
            job=full_pipeline_job,
            default_status=default_status,
            description="Rebuilds the internal track and the final table when internal sales or "
            "the need-state map change.",
        ),
        build_file_sensor(
            name="external_data_sensor",
            side="external",
            specs=list(paths.external),
            job=full_pipeline_job,
            default_status=default_status,
            description="Rebuilds the external track and the final table when an external "
            "store-feature file changes.",
        ),
    ]

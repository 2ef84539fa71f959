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
without redoing the other track. When the other track's assignments were never materialized,
the whole pipeline is requested instead (merging could not run otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from clustering.dagster.jobs import JOB_ASSETS
from clustering.infra.config import AppConfig
from clustering.io import file_watch
from clustering.io.duckdb_store import DuckDBStore, StoreLockTimeoutError

SETTLE_SECONDS = 5.0
"""A file modified more recently than this is taken to be still being written."""

MINIMUM_INTERVAL_SECONDS = 30
"""How often the daemon evaluates the file sensors."""

STORE_LOCK_TIMEOUT_S = 10.0
"""How long a tick waits for the DuckDB file; sensor ticks must finish well within 60 s."""

TARGET_JOB = "full_pipeline_job"

INTERNAL_TRACK = [*JOB_ASSETS["internal_preprocessing_job"], *JOB_ASSETS["internal_clustering_job"]]
EXTERNAL_TRACK = [*JOB_ASSETS["external_preprocessing_job"], *JOB_ASSETS["external_clustering_job"]]
MERGING = JOB_ASSETS["merging_job"]

#: The other track's table the merging assets read, per watched side.
_OTHER_SIDE_TABLE = {
    "internal": ("external_clustering", "external_assignments"),
    "external": ("internal_clustering", "internal_assignments"),
}
_TRACK = {"internal": INTERNAL_TRACK, "external": EXTERNAL_TRACK}


class StoreBusyError(Exception):
    """The DuckDB file stayed locked for the whole wait; the tick is retried later."""


def asset_selection_for(side: str, duckdb_path: Path) -> list[dg.AssetKey] | None:
    """Assets to rebuild when ``side``'s ("internal" or "external") inputs changed.

    The side's preprocessing and clustering plus merging when the other side's assignments
    exist; ``None`` (the whole of ``full_pipeline_job``) when they do not. Raises
    :class:`StoreBusyError` when the DuckDB file stays locked.
    """
    schema, table = _OTHER_SIDE_TABLE[side]
    try:
        other_done = DuckDBStore(duckdb_path, lock_timeout_s=STORE_LOCK_TIMEOUT_S).has_table(
            schema, table
        )
    except StoreLockTimeoutError as exc:
        raise StoreBusyError(str(exc)) from exc
    if not other_done:
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
    duckdb_path: Path,
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
    try:
        selection = asset_selection_for(side, duckdb_path)
    except StoreBusyError as exc:
        # The cursor is not moved: the same change is seen again on the next tick.
        return dg.SkipReason(f"{len(changed)} changed file(s) wait for the DuckDB file: {exc}")
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
    duckdb_path: Path,
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
            duckdb_path=duckdb_path,
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
            duckdb_path=paths.duckdb_path,
            job=full_pipeline_job,
            default_status=default_status,
            description="Rebuilds the internal track and the final table when internal sales or "
            "the need-state map change.",
        ),
        build_file_sensor(
            name="external_data_sensor",
            side="external",
            specs=list(paths.external),
            duckdb_path=paths.duckdb_path,
            job=full_pipeline_job,
            default_status=default_status,
            description="Rebuilds the external track and the final table when an external "
            "store-feature file changes.",
        ),
    ]

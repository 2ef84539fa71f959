"""Sensors that react to finished runs: merging after internal clustering, failure alerts."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import dagster as dg

from clustering.dagster.resources.alerts import AlertsResource
from clustering.infra.monitoring.alerts import Alert
from clustering.io.duckdb_store import DuckDBStore, StoreLockTimeoutError

logger = logging.getLogger(__name__)

STORE_LOCK_TIMEOUT_S = 10.0
"""How long the complete sensor waits for the DuckDB file before requesting merging anyway."""

EXTERNAL_MISSING = (
    "external clustering has never run: run external_clustering_job first, then merging_job."
)

_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Failure):\s*")


def build_internal_clustering_complete_sensor(
    *,
    duckdb_path: Path,
    internal_clustering_job: dg.UnresolvedAssetJobDefinition,
    merging_job: dg.UnresolvedAssetJobDefinition,
    default_status: dg.DefaultSensorStatus,
) -> dg.SensorDefinition:
    """Requests ``merging_job`` after each successful ``internal_clustering_job`` run.

    Skips, saying why, when the external assignments were never materialized: merging would
    only fail. When the DuckDB file stays locked the run is requested anyway (merging reports
    a missing table itself); the run key is the finished run's id, so one success gives one
    merge at most.
    """

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="internal_clustering_complete_sensor",
        monitored_jobs=[internal_clustering_job],
        request_job=merging_job,
        default_status=default_status,
        description="Runs merging_job when internal_clustering_job succeeds.",
    )
    def internal_clustering_complete_sensor(
        context: dg.RunStatusSensorContext,
    ) -> dg.RunRequest | dg.SkipReason:
        store = DuckDBStore(duckdb_path, lock_timeout_s=STORE_LOCK_TIMEOUT_S)
        try:
            external_done = store.has_table("external_clustering", "external_assignments")
        except StoreLockTimeoutError:
            external_done = True
        if not external_done:
            return dg.SkipReason(EXTERNAL_MISSING)
        run_id = context.dagster_run.run_id
        return dg.RunRequest(
            run_key=f"merging_after_{run_id}",
            job_name=merging_job.name,
            tags={"clustering/trigger": "internal_clustering_complete_sensor"},
        )

    return internal_clustering_complete_sensor


def one_sentence(text: str) -> str:
    """The first line of an error message without a leading ``module.SomeError:`` prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return _CLASS_PREFIX.sub("", first) or first


def _error_message(error: object) -> str | None:
    """The innermost cause's message of a ``SerializableErrorInfo`` (the user's own error)."""
    message = None
    seen = 0
    while error is not None and seen < 10:
        text = getattr(error, "message", None)
        if isinstance(text, str) and text.strip():
            message = text
        error = getattr(error, "cause", None)
        seen += 1
    return one_sentence(message) if message else None


def failure_alert(context: dg.RunFailureSensorContext, run_url: str | None) -> Alert:
    """The alert for a failed run: job, first failed step, its error sentence and a link."""
    run = context.dagster_run
    step: str | None = None
    message: str | None = None
    try:
        step_failures = context.get_step_failure_events()
    except Exception:  # the event log is a nicety here; the alert goes out without it
        logger.warning("could not read the event log of run %s", run.run_id, exc_info=True)
        step_failures = []
    if step_failures:
        first = step_failures[0]
        step = first.step_key
        data = first.event_specific_data
        message = _error_message(getattr(data, "error", None))
    if not message:
        message = one_sentence(context.failure_event.message or "") or "the run failed."
    return Alert(
        severity="error",
        title=f"{run.job_name} failed",
        job=run.job_name,
        step=step,
        message=message,
        run_url=run_url,
    )


def build_run_failure_alert_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    """Sends an error alert through :class:`AlertsResource` for every failed run of this code
    location. Never raises: a failing channel or a broken alert configuration is logged."""

    @dg.run_failure_sensor(
        name="run_failure_alert_sensor",
        default_status=default_status,
        description="Sends an alert (job, step, error, link) when any job here fails.",
    )
    def run_failure_alert_sensor(
        context: dg.RunFailureSensorContext, alerts: AlertsResource
    ) -> None:
        run_id = context.dagster_run.run_id
        try:
            dispatcher = alerts.dispatcher()
            alert = failure_alert(context, dispatcher.run_url(run_id))
            results = dispatcher.send(alert)
        except Exception:  # alerting must never fail the sensor, whatever went wrong
            logger.exception("could not send the failure alert for run %s", run_id)
            return
        failed = [r for r in results if not r.ok]
        context.log.info(
            f"failure alert for run {run_id}: {len(results) - len(failed)} channel(s) sent, "
            f"{len(failed)} failed"
        )

    return run_failure_alert_sensor

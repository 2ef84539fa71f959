"""Sensors that react to finished runs: merging after internal clustering, alerts.

All of them watch every run of the instance (``monitor_all_code_locations``), not only runs the
daemon launched: a job started with ``python -m clustering run`` executes in-process and carries
no code-location origin, and it must still be merged after and alerted on.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

import dagster as dg

from clustering.dagster.resources.alerts import AlertsResource
from clustering.infra.monitoring.alerts import Alert, AlertDispatcher, Severity

logger = logging.getLogger(__name__)

EXTERNAL_MISSING = (
    "external clustering has never run: run external_clustering_job first, then merging_job."
)

RUN_SENSOR_INTERVAL_SECONDS = 10
"""How often the daemon looks for finished runs: alerts and merging follow within seconds."""

MAX_CHECK_LINE = 600
"""A check's line is cut here: an alert names the problem, the run page has the whole table."""


_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(?:[A-Z]\w*)?(?:Error|Exception|Failure):\s*")


def build_internal_clustering_complete_sensor(
    *,
    internal_clustering_job: dg.UnresolvedAssetJobDefinition,
    merging_job: dg.UnresolvedAssetJobDefinition,
    default_status: dg.DefaultSensorStatus,
) -> dg.SensorDefinition:
    """Requests ``merging_job`` after each successful ``internal_clustering_job`` run.

    Skips, saying why, when the instance has no materialization of the external assignments:
    merging would only fail. The run key is the finished run's id, so one success gives one
    merge at most. Runs of other jobs are passed over without a tick result.
    """

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="internal_clustering_complete_sensor",
        monitor_all_code_locations=True,
        minimum_interval_seconds=RUN_SENSOR_INTERVAL_SECONDS,
        request_job=merging_job,
        default_status=default_status,
        description="Runs merging_job when internal_clustering_job succeeds.",
    )
    def internal_clustering_complete_sensor(
        context: dg.RunStatusSensorContext,
    ) -> dg.RunRequest | dg.SkipReason | None:
        if context.dagster_run.job_name != internal_clustering_job.name:
            return None
        external = dg.AssetKey("external_assignments")
        if context.instance.get_latest_materialization_event(external) is None:
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
        # A dagster.Failure carries the sentence itself; other errors their (innermost) message.
        described = getattr(getattr(data, "user_failure_data", None), "description", None)
        message = one_sentence(described) if described else None
        message = message or _error_message(getattr(data, "error", None))
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


def failed_check_alert(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    wants: Callable[[Severity], bool],
    run_url: str | None,
) -> Alert | None:
    """One alert listing the run's failed asset checks at or above the threshold, or None.

    Each check is one line: asset, check, severity, the check's description and its JSON
    metadata (which categories, which sizes). The alert's severity is the highest listed; its
    step is the check's step when only one failed.
    """
    try:
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
    except Exception:  # never let the event log keep a failure alert from going out
        logger.warning("could not read the check results of run %s", run.run_id, exc_info=True)
        return None
    lines: list[str] = []
    steps: list[str] = []
    severities: list[Severity] = []
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        severity: Severity = (
            "warning" if evaluation.severity == dg.AssetCheckSeverity.WARN else "error"
        )
        if not wants(severity):
            continue
        severities.append(severity)
        if event is not None and event.step_key:
            steps.append(event.step_key)
        lines.append(_check_line(evaluation, severity))
    if not lines:
        return None
    worst: Severity = "error" if "error" in severities else "warning"
    count = f"{len(lines)} quality check{'s' if len(lines) > 1 else ''}"
    return Alert(
        severity=worst,
        title=f"{count} failed in {run.job_name}",
        job=run.job_name,
        step=steps[0] if len(lines) == 1 and steps else None,
        message="\n".join(lines),
        run_url=run_url,
    )


def _check_line(evaluation: dg.AssetCheckEvaluation, severity: Severity) -> str:
    asset = evaluation.asset_key.to_user_string()
    line = f"{asset}: {evaluation.check_name} failed ({severity})"
    if evaluation.description:
        line += f": {evaluation.description}"
    details = [
        f"{key} {json.dumps(value.value, sort_keys=True)}"
        for key, value in evaluation.metadata.items()
        if isinstance(value, dg.JsonMetadataValue) and value.value
    ]
    if details:
        line += " — " + "; ".join(details)
    return line[:MAX_CHECK_LINE] + ("…" if len(line) > MAX_CHECK_LINE else "")


def _send(
    context: dg.RunStatusSensorContext,
    alerts: AlertsResource,
    build: Callable[[AlertDispatcher], list[Alert]],
    what: str,
) -> None:
    """Build and send alerts; log what went out. Never raises (alerting must not break)."""
    run_id = context.dagster_run.run_id
    try:
        dispatcher = alerts.dispatcher()
        results = [result for alert in build(dispatcher) for result in dispatcher.send(alert)]
    except Exception:  # alerting must never fail the sensor, whatever went wrong
        logger.exception("could not send the %s alert for run %s", what, run_id)
        return
    if results:
        failed = [r for r in results if not r.ok]
        context.log.info(
            f"{what} alert for run {run_id}: {len(results) - len(failed)} channel(s) sent, "
            f"{len(failed)} failed"
        )


def build_run_failure_alert_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    """Sends an error alert through :class:`AlertsResource` for every failed run, and a second
    one for the quality checks that failed before it stopped. Never raises: a failing channel
    or a broken alert configuration is logged."""

    @dg.run_failure_sensor(
        name="run_failure_alert_sensor",
        monitor_all_code_locations=True,
        minimum_interval_seconds=RUN_SENSOR_INTERVAL_SECONDS,
        default_status=default_status,
        description="Sends an alert (job, step, error, link) when any job fails.",
    )
    def run_failure_alert_sensor(
        context: dg.RunFailureSensorContext, alerts: AlertsResource
    ) -> None:
        def build(dispatcher: AlertDispatcher) -> list[Alert]:
            url = dispatcher.run_url(context.dagster_run.run_id)
            checks = failed_check_alert(
                context.instance, context.dagster_run, dispatcher.wants, url
            )
            return [failure_alert(context, url), *([checks] if checks else [])]

        _send(context, alerts, build, "failure")

    return run_failure_alert_sensor


def build_check_alert_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    """Sends one alert per successful run whose asset checks failed (a quality breach), at the
    environment's threshold: a WARN check such as the silhouette floor is a ``warning``."""

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="asset_check_alert_sensor",
        monitor_all_code_locations=True,
        minimum_interval_seconds=RUN_SENSOR_INTERVAL_SECONDS,
        default_status=default_status,
        description="Sends an alert when a run succeeds but some of its asset checks failed.",
    )
    def asset_check_alert_sensor(
        context: dg.RunStatusSensorContext, alerts: AlertsResource
    ) -> None:
        def build(dispatcher: AlertDispatcher) -> list[Alert]:
            run = context.dagster_run
            alert = failed_check_alert(
                context.instance, run, dispatcher.wants, dispatcher.run_url(run.run_id)
            )
            return [alert] if alert else []

        _send(context, alerts, build, "quality")

    return asset_check_alert_sensor

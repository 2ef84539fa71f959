"""Schedules (UTC): daily internal clustering, weekly external clustering, monthly full run.

``build_schedules(config)`` returns them for one environment; they start running by default
when ``config.dagster.schedules.running_by_default`` is set (prod) and are stopped otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from clustering.dagster.jobs import build_jobs
from clustering.infra.config import AppConfig

TIMEZONE = "UTC"

#: name -> (cron string, job, description)
SCHEDULES: dict[str, tuple[str, str, str]] = {
    "daily_internal_clustering_schedule": (
        "0 0 * * *",
        "internal_clustering_job",
        "Internal clustering every day at 00:00 UTC.",
    ),
    "weekly_external_clustering_schedule": (
        "0 0 * * 1",
        "external_clustering_job",
        "External clustering every Monday at 00:00 UTC.",
    ),
    "monthly_full_pipeline_schedule": (
        "0 0 1 * *",
        "full_pipeline_job",
        "The full pipeline on the 1st of every month at 00:00 UTC.",
    ),
}


def default_schedule_status(config: AppConfig) -> dg.DefaultScheduleStatus:
    """RUNNING when the environment says so (prod), STOPPED otherwise."""
    if config.dagster.schedules.running_by_default:
        return dg.DefaultScheduleStatus.RUNNING
    return dg.DefaultScheduleStatus.STOPPED


def build_schedules(
    config: AppConfig, jobs: Sequence[dg.UnresolvedAssetJobDefinition] | None = None
) -> list[dg.ScheduleDefinition]:
    """The three schedules for ``config``; ``jobs`` defaults to :func:`build_jobs`."""
    by_name = {job.name: job for job in (jobs if jobs is not None else build_jobs())}
    status = default_schedule_status(config)
    return [
        dg.ScheduleDefinition(
            name=name,
            cron_schedule=cron,
            job=by_name[job],
            execution_timezone=TIMEZONE,
            default_status=status,
            description=description,
        )
        for name, (cron, job, description) in SCHEDULES.items()
    ]


__all__ = ["SCHEDULES", "TIMEZONE", "build_schedules", "default_schedule_status"]

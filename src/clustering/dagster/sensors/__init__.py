"""Sensors: raw-input file watchers, merging after internal clustering, alerts.

``build_sensors(config)`` returns them for one environment. The sensors that launch runs start
running by default when ``config.dagster.schedules.running_by_default`` is set (prod) and are
stopped otherwise; the two alert sensors only send messages and run by default everywhere
(whenever a daemon runs), so a failure is never missed because nobody started them.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from clustering.dagster.jobs import build_jobs
from clustering.dagster.sensors.file_sensors import build_file_sensors
from clustering.dagster.sensors.run_sensors import (
    build_check_alert_sensor,
    build_internal_clustering_complete_sensor,
    build_run_failure_alert_sensor,
)
from clustering.infra.config import AppConfig

SENSOR_NAMES = (
    "internal_data_sensor",
    "external_data_sensor",
    "internal_clustering_complete_sensor",
    "run_failure_alert_sensor",
    "asset_check_alert_sensor",
)
ALERT_SENSORS = ("run_failure_alert_sensor", "asset_check_alert_sensor")


def default_sensor_status(config: AppConfig) -> dg.DefaultSensorStatus:
    """RUNNING where schedules run by default (prod), STOPPED elsewhere."""
    if config.dagster.schedules.running_by_default:
        return dg.DefaultSensorStatus.RUNNING
    return dg.DefaultSensorStatus.STOPPED


def build_sensors(
    config: AppConfig, jobs: Sequence[dg.UnresolvedAssetJobDefinition] | None = None
) -> list[dg.SensorDefinition]:
    """The five sensors for ``config``; ``jobs`` defaults to :func:`build_jobs`."""
    by_name = {job.name: job for job in (jobs if jobs is not None else build_jobs())}
    status = default_sensor_status(config)
    return [
        *build_file_sensors(config, by_name["full_pipeline_job"], status),
        build_internal_clustering_complete_sensor(
            internal_clustering_job=by_name["internal_clustering_job"],
            merging_job=by_name["merging_job"],
            default_status=status,
        ),
        build_run_failure_alert_sensor(dg.DefaultSensorStatus.RUNNING),
        build_check_alert_sensor(dg.DefaultSensorStatus.RUNNING),
    ]


__all__ = ["ALERT_SENSORS", "SENSOR_NAMES", "build_sensors", "default_sensor_status"]

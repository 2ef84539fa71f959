"""Schedules: names, cron strings, timezone, target jobs and default status per environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from clustering.dagster.definitions import create_definitions
from clustering.dagster.schedules import build_schedules
from clustering.infra.config import load_config

PROD_VARS = {
    "CLUSTERING_PROD_INPUT_URL": "postgresql://clustering:s3cret@db.internal:5432/retail",
    "CLUSTERING_PROD_OUTPUT_DIR": "/srv/prod/out",
    "CLUSTERING_PROD_SMTP_HOST": "smtp.internal",
    "CLUSTERING_PROD_ALERT_RECIPIENTS": "category-team@example.com, ops@example.com",
}

EXPECTED = {
    "daily_internal_clustering_schedule": ("0 0 * * *", "internal_clustering_job"),
    "weekly_external_clustering_schedule": ("0 0 * * 1", "external_clustering_job"),
    "monthly_full_pipeline_schedule": ("0 0 1 * *", "full_pipeline_job"),
}


@pytest.fixture(autouse=True)
def clean_environment(clean_clustering_env: None) -> None:
    """No CLUSTERING_* variable from the developer's shell (see conftest)."""


def test_schedules_have_their_cron_timezone_and_job(tmp_path: Path) -> None:
    schedules = {s.name: s for s in build_schedules(load_config("dev", project_root=tmp_path))}
    assert set(schedules) == set(EXPECTED)
    for name, (cron, job) in EXPECTED.items():
        schedule = schedules[name]
        assert schedule.cron_schedule == cron
        assert schedule.execution_timezone == "UTC"
        assert schedule.job_name == job


def test_schedules_are_stopped_in_dev(tmp_path: Path) -> None:
    for schedule in build_schedules(load_config("dev", project_root=tmp_path)):
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_schedules_run_by_default_in_prod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PROD_VARS.items():
        monkeypatch.setenv(name, value)
    config = load_config("prod", project_root=tmp_path)
    assert config.dagster.schedules.running_by_default
    for schedule in build_schedules(config):
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_evaluating_a_schedule_requests_its_job(name: str, tmp_path: Path) -> None:
    defs = create_definitions("dev", project_root=tmp_path)
    schedule = defs.get_repository_def().get_schedule_def(name)
    context = dg.build_schedule_context(instance=dg.DagsterInstance.ephemeral())
    result = schedule.evaluate_tick(context)
    assert result.skip_message is None
    assert result.run_requests is not None and len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.job_name in (None, EXPECTED[name][1])
    assert schedule.job_name == EXPECTED[name][1]


def test_definitions_list_the_schedules(tmp_path: Path) -> None:
    repo = create_definitions("dev", project_root=tmp_path).get_repository_def()
    assert {s.name for s in repo.schedule_defs} == set(EXPECTED)
    assert {s.job_name for s in repo.schedule_defs} <= set(repo.job_names)

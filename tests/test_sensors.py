"""Sensors evaluated one tick at a time with build_sensor_context (no daemon)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from clustering.dagster.definitions import create_definitions
from clustering.dagster.resources.alerts import AlertsResource
from clustering.dagster.sensors import ALERT_SENSORS, SENSOR_NAMES, build_sensors
from clustering.dagster.sensors.file_sensors import EXTERNAL_TRACK, INTERNAL_TRACK, MERGING
from clustering.dagster.sensors.run_sensors import EXTERNAL_MISSING, one_sentence
from clustering.infra.config import AlertChannel, AlertsConfig, load_config
from clustering.infra.monitoring.alerts import AlertDispatcher
from clustering.sample.files import write_sample_data

PAST = time.time() - 3600


@pytest.fixture(autouse=True)
def clean_environment(clean_clustering_env: None) -> None:
    """No CLUSTERING_* variable from the developer's shell (see conftest)."""


@pytest.fixture(scope="module")
def sample_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three inputs of a small sample, written once for the module."""
    raw = tmp_path_factory.mktemp("sample") / "raw"
    write_sample_data(raw, preset="small", stores=60, categories=2)
    return raw


def settle(folder: Path, when: float = PAST) -> None:
    """Give every file an old mtime so the sensors take it as completely written."""
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (when, when))


@pytest.fixture
def project(tmp_path: Path, sample_raw: Path) -> Path:
    """A project root with the sample inputs in data/raw, settled."""
    raw = tmp_path / "data" / "raw"
    shutil.copytree(sample_raw, raw)
    settle(raw)
    return tmp_path


def materialized(*assets: str) -> dg.DagsterInstance:
    """An instance that has recorded a materialization of each of ``assets``."""
    instance = dg.DagsterInstance.ephemeral()
    for asset in assets:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset))
    return instance


def tick(
    defs: dg.Definitions,
    name: str,
    cursor: str | None,
    instance: dg.DagsterInstance | None = None,
) -> dg.SensorResult | dg.SkipReason:
    sensor = defs.get_repository_def().get_sensor_def(name)
    context = dg.build_sensor_context(
        cursor=cursor, instance=instance or dg.DagsterInstance.ephemeral(), definitions=defs
    )
    result = sensor(context)
    assert isinstance(result, (dg.SensorResult, dg.SkipReason))
    return result


def only_request(result: dg.SensorResult | dg.SkipReason) -> dg.RunRequest:
    assert isinstance(result, dg.SensorResult), result
    assert result.run_requests is not None and len(result.run_requests) == 1
    return result.run_requests[0]


def keys(names: list[str]) -> set[dg.AssetKey]:
    return {dg.AssetKey(name) for name in names}


# --- definitions ---------------------------------------------------------------------------


def test_dev_sensors_that_launch_runs_are_stopped_and_alert_sensors_run(project: Path) -> None:
    repo = create_definitions("dev", project_root=project).get_repository_def()
    assert {s.name for s in repo.sensor_defs} == set(SENSOR_NAMES)
    for sensor in repo.sensor_defs:
        expected = (
            dg.DefaultSensorStatus.RUNNING
            if sensor.name in ALERT_SENSORS
            else dg.DefaultSensorStatus.STOPPED
        )
        assert sensor.default_status == expected, sensor.name
    assert repo.get_sensor_def("internal_data_sensor").minimum_interval_seconds == 30
    assert repo.get_sensor_def("external_data_sensor").minimum_interval_seconds == 30
    assert repo.get_sensor_def("internal_data_sensor").job_name == "full_pipeline_job"
    for name in ["internal_clustering_complete_sensor", *ALERT_SENSORS]:
        assert repo.get_sensor_def(name).minimum_interval_seconds == 10


def test_sensors_run_by_default_when_the_environment_says_so(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config("dev", project_root=project)
    running = config.model_copy(
        update={
            "dagster": config.dagster.model_copy(
                update={
                    "schedules": config.dagster.schedules.model_copy(
                        update={"running_by_default": True}
                    )
                }
            )
        }
    )
    for sensor in build_sensors(running):
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


# --- file sensors --------------------------------------------------------------------------


def test_internal_sensor_first_tick_then_unchanged_then_changed(project: Path) -> None:
    defs = create_definitions("dev", project_root=project)
    first = tick(defs, "internal_data_sensor", None)
    request = only_request(first)
    assert isinstance(first, dg.SensorResult) and first.cursor
    # External assignments were never built: the whole pipeline is requested.
    assert request.asset_selection is None
    assert request.job_name == "full_pipeline_job"
    assert request.tags["clustering/trigger"] == "internal_data_sensor"

    second = tick(defs, "internal_data_sensor", first.cursor)
    assert isinstance(second, dg.SkipReason)
    assert "no input file changed" in str(second.skip_message)

    sales = project / "data" / "raw" / "internal_sales.parquet"
    frame = pd.read_parquet(sales)
    frame.iloc[:-1].to_parquet(sales)
    settle(sales.parent, PAST + 60)
    third = tick(defs, "internal_data_sensor", first.cursor)
    changed = only_request(third)
    assert changed.run_key != request.run_key
    assert isinstance(third, dg.SensorResult) and third.cursor != first.cursor


def test_touch_without_new_content_requests_nothing(project: Path) -> None:
    defs = create_definitions("dev", project_root=project)
    first = tick(defs, "internal_data_sensor", None)
    assert isinstance(first, dg.SensorResult)
    settle(project / "data" / "raw", PAST + 60)
    assert isinstance(tick(defs, "internal_data_sensor", first.cursor), dg.SkipReason)


def test_run_key_depends_only_on_content(project: Path) -> None:
    defs = create_definitions("dev", project_root=project)
    first = only_request(tick(defs, "internal_data_sensor", None))
    settle(project / "data" / "raw", PAST + 60)
    again = only_request(tick(defs, "internal_data_sensor", None))  # cursor lost
    assert again.run_key == first.run_key


def test_half_written_temporary_file_is_ignored(project: Path) -> None:
    defs = create_definitions("dev", project_root=project)
    first = tick(defs, "internal_data_sensor", None)
    assert isinstance(first, dg.SensorResult)
    tmp = project / "data" / "raw" / ".internal_sales.parquet.tmp"
    tmp.write_bytes(b"PAR1 half")
    result = tick(defs, "internal_data_sensor", first.cursor)
    assert isinstance(result, dg.SkipReason)
    assert first.cursor is not None and str(tmp) not in first.cursor


def test_recently_modified_file_waits_for_a_later_tick(project: Path) -> None:
    defs = create_definitions("dev", project_root=project)
    first = tick(defs, "internal_data_sensor", None)
    assert isinstance(first, dg.SensorResult)
    sales = project / "data" / "raw" / "internal_sales.parquet"
    pd.read_parquet(sales).iloc[:-2].to_parquet(sales)  # mtime: now
    waiting = tick(defs, "internal_data_sensor", first.cursor)
    assert isinstance(waiting, dg.SkipReason)
    assert "still being written" in str(waiting.skip_message)
    settle(sales.parent, PAST + 120)
    assert only_request(tick(defs, "internal_data_sensor", first.cursor))


def test_missing_inputs_skip_with_a_sentence(tmp_path: Path) -> None:
    defs = create_definitions("dev", project_root=tmp_path)
    result = tick(defs, "internal_data_sensor", None)
    assert isinstance(result, dg.SkipReason)
    message = str(result.skip_message)
    assert message.startswith("no input files match ")
    assert "internal_sales" in message and message.endswith(".")


def test_only_the_changed_track_and_merging_run_once_the_other_side_exists(
    project: Path,
) -> None:
    instance = materialized("external_assignments", "internal_assignments")
    defs = create_definitions("dev", project_root=project)
    internal = only_request(tick(defs, "internal_data_sensor", None, instance))
    assert set(internal.asset_selection or []) == keys(INTERNAL_TRACK + MERGING)
    external = only_request(tick(defs, "external_data_sensor", None, instance))
    assert set(external.asset_selection or []) == keys(EXTERNAL_TRACK + MERGING)
    assert external.run_key != internal.run_key


def test_sensor_tick_through_dagster_validates_the_run_request(project: Path) -> None:
    defs = create_definitions("dev", project_root=project)
    sensor = defs.get_repository_def().get_sensor_def("external_data_sensor")
    context = dg.build_sensor_context(
        instance=materialized("internal_assignments"), definitions=defs
    )
    data = sensor.evaluate_tick(context)
    assert len(data.run_requests or []) == 1
    assert data.cursor


# --- internal_clustering_complete_sensor ----------------------------------------------------


def _run_and_event(
    instance: dg.DagsterInstance, job_name: str, status: dg.DagsterRunStatus
) -> tuple[dg.DagsterRun, dg.DagsterEvent]:
    run = instance.create_run_for_job(
        job_def=dg.GraphDefinition(name="noop", node_defs=[]).to_job(name=job_name),
        status=status,
    )
    event_type = (
        dg.DagsterEventType.RUN_SUCCESS
        if status == dg.DagsterRunStatus.SUCCESS
        else dg.DagsterEventType.RUN_FAILURE
    )
    event = dg.DagsterEvent(event_type_value=event_type.value, job_name=job_name)
    return run, event


def _complete(
    defs: dg.Definitions,
    job_name: str = "internal_clustering_job",
    instance: dg.DagsterInstance | None = None,
) -> dg.RunRequest | dg.SkipReason | None:
    sensor = defs.get_repository_def().get_sensor_def("internal_clustering_complete_sensor")
    instance = instance or dg.DagsterInstance.ephemeral()
    run, event = _run_and_event(instance, job_name, dg.DagsterRunStatus.SUCCESS)
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=instance, dagster_run=run, dagster_event=event
    )
    result = sensor(context)
    assert result is None or isinstance(result, (dg.RunRequest, dg.SkipReason))
    return result


def test_complete_sensor_passes_over_other_jobs(tmp_path: Path) -> None:
    instance = materialized("external_assignments")
    defs = create_definitions("dev", project_root=tmp_path)
    assert _complete(defs, "merging_job", instance) is None
    assert _complete(defs, "external_clustering_job", instance) is None


def test_complete_sensor_skips_when_external_clustering_never_ran(tmp_path: Path) -> None:
    result = _complete(create_definitions("dev", project_root=tmp_path))
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == EXTERNAL_MISSING


def test_complete_sensor_requests_merging_when_external_assignments_exist(
    tmp_path: Path,
) -> None:
    defs = create_definitions("dev", project_root=tmp_path)
    result = _complete(defs, instance=materialized("external_assignments"))
    assert isinstance(result, dg.RunRequest)
    assert result.job_name == "merging_job"
    assert result.run_key and result.run_key.startswith("merging_after_")


# --- run_failure_alert_sensor ---------------------------------------------------------------


@dg.op
def load_need_states() -> None:
    raise ValueError("the need-state map has no rows for category 'snacks'.\nmore detail")


@dg.job
def failing_job() -> None:
    load_need_states()


def tick_on_run(
    tmp_path: Path,
    sensor_name: str,
    instance: dg.DagsterInstance,
    result: dg.ExecuteInProcessResult,
    caplog: pytest.LogCaptureFixture,
    before_tick: Callable[[], None] | None = None,
) -> str:
    """Tick one of the dev definitions' run-status sensors on ``result``'s finished run, as the
    daemon would after it ended, with INFO logs captured by ``caplog``; return the run id."""
    defs = create_definitions("dev", project_root=tmp_path)
    sensor = defs.get_repository_def().get_sensor_def(sensor_name)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    event = result.get_run_success_event() if result.success else result.get_run_failure_event()
    with dg.build_run_status_sensor_context(
        sensor_name=sensor_name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=event,
        resources={"alerts": (defs.resources or {})["alerts"]},
    ) as context:
        if before_tick is not None:
            before_tick()
        with caplog.at_level(logging.INFO):
            sensor(context)
    return result.run_id


def failed_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """A real failed run of ``failing_job`` (event log included)."""
    result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    return result


def use_alerts(monkeypatch: pytest.MonkeyPatch, config: AlertsConfig) -> None:
    """Send the sensors' alerts through ``config`` instead of the environment's channels."""
    monkeypatch.setattr(
        AlertsResource, "dispatcher", lambda self: AlertDispatcher(config, environ={})
    )


def test_failure_sensor_logs_job_step_error_and_link(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    run_id = tick_on_run(
        tmp_path, "run_failure_alert_sensor", instance, failed_run(instance), caplog
    )
    text = caplog.text
    assert "failing_job" in text
    assert "load_need_states" in text
    assert "the need-state map has no rows for category 'snacks'." in text
    assert "more detail" not in text
    assert f"http://127.0.0.1:3000/runs/{run_id}" in text


def test_failure_sensor_never_raises_when_a_channel_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use_alerts(
        monkeypatch,
        AlertsConfig(
            enabled=True,
            min_severity="error",
            ui_base_url="",
            channels=[
                AlertChannel(type="webhook", url_env="CLUSTERING_TEST_UNSET_WEBHOOK"),
                AlertChannel(type="log"),
            ],
        ),
    )
    instance = dg.DagsterInstance.ephemeral()
    tick_on_run(tmp_path, "run_failure_alert_sensor", instance, failed_run(instance), caplog)
    assert "alert channel webhook" in caplog.text
    assert "the need-state map has no rows" in caplog.text


def test_failure_sensor_survives_a_broken_alert_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: AlertsResource) -> AlertDispatcher:
        raise RuntimeError("config for env 'dev' is broken")

    monkeypatch.setattr(AlertsResource, "dispatcher", broken)
    instance = dg.DagsterInstance.ephemeral()
    tick_on_run(tmp_path, "run_failure_alert_sensor", instance, failed_run(instance), caplog)
    assert "could not send the failure alert" in caplog.text


def test_one_sentence_drops_the_exception_class_and_later_lines() -> None:
    assert one_sentence("ValueError: bad input.\nTraceback...") == "bad input."
    assert one_sentence("clustering.core.errors.ConfigError: no key x.") == "no key x."
    assert one_sentence("plain text") == "plain text"
    # A dagster.Failure's own class name is dropped too, so alerts start with the sentence.
    assert (
        one_sentence("dagster._core.definitions.events.Failure: internal sales 'x': empty.")
        == "internal sales 'x': empty."
    )


# --- asset_check_alert_sensor ---------------------------------------------------------------


@dg.asset
def store_clusters() -> int:
    return 1


@dg.asset_check(asset=store_clusters, description="silhouette floor")
def silhouette_floor(store_clusters: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description="1 categories below the silhouette floor",
        metadata={"weak_categories": dg.MetadataValue.json({"SNACKS": 0.04})},
    )


@dg.asset_check(asset=store_clusters, description="coverage")
def every_store(store_clusters: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        description="stores missing or duplicated in 1 categories",
        metadata={"categories_with_problems": dg.MetadataValue.json({"SNACKS": "3 missing"})},
    )


@dg.asset_check(asset=store_clusters, description="passes")
def sizes_fine(store_clusters: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, description="all clusters large enough")


def _check_alert_log(
    tmp_path: Path,
    checks: list[dg.AssetChecksDefinition],
    caplog: pytest.LogCaptureFixture,
    min_severity: str = "warning",
) -> str:
    """Run the asset with ``checks`` for real, tick asset_check_alert_sensor, return the log."""
    config = AlertsConfig(
        enabled=True,
        min_severity=min_severity,
        ui_base_url="http://ui.test",
        channels=[AlertChannel(type="log")],
    )
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([store_clusters, *checks], instance=instance)
    assert result.success  # failed non-blocking checks do not fail the run
    with pytest.MonkeyPatch.context() as patch:
        use_alerts(patch, config)
        run_id = tick_on_run(tmp_path, "asset_check_alert_sensor", instance, result, caplog)
    return caplog.text + f"\nrun_id={run_id}"


def test_check_alert_lists_each_failed_check_with_its_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = _check_alert_log(tmp_path, [silhouette_floor, every_store, sizes_fine], caplog)
    assert "[ERROR] 2 quality checks failed in __ephemeral_asset_job__" in text
    assert (
        "store_clusters: silhouette_floor failed (warning): 1 categories below the silhouette "
        'floor — weak_categories {"SNACKS": 0.04}'
    ) in text
    assert "store_clusters: every_store failed (error)" in text
    assert '"SNACKS": "3 missing"' in text
    assert "sizes_fine" not in text
    run_id = text.rsplit("run_id=", 1)[1]
    assert f"http://ui.test/runs/{run_id}" in text


def test_check_alert_names_the_step_of_a_single_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = _check_alert_log(tmp_path, [silhouette_floor, sizes_fine], caplog)
    assert "[WARNING] 1 quality check failed in __ephemeral_asset_job__" in text
    assert "step store_clusters_silhouette_floor" in text


def test_check_alert_respects_the_threshold(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    only_warning = _check_alert_log(tmp_path, [silhouette_floor], caplog, min_severity="error")
    assert "ALERT" not in only_warning
    caplog.clear()
    both = _check_alert_log(tmp_path, [silhouette_floor, every_store], caplog, "error")
    assert "[ERROR] 1 quality check failed" in both
    assert "every_store failed (error)" in both
    assert "silhouette_floor" not in both


def test_check_alert_is_quiet_when_every_check_passed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert "ALERT" not in _check_alert_log(tmp_path, [sizes_fine], caplog)


@dg.asset(deps=[store_clusters])
def final_table() -> None:
    raise ValueError("the merge found no external clusters.")


def test_failed_run_alerts_the_failure_and_the_checks_that_failed_before_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [store_clusters, final_table, every_store], instance=instance, raise_on_error=False
    )
    assert not result.success
    tick_on_run(tmp_path, "run_failure_alert_sensor", instance, result, caplog)
    assert "step final_table: the merge found no external clusters." in caplog.text
    assert "[ERROR] 1 quality check failed in __ephemeral_asset_job__" in caplog.text
    assert "store_clusters: every_store failed (error)" in caplog.text


def test_failure_alert_goes_out_when_the_check_results_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unreadable(*args: object, **kwargs: object) -> None:
        raise OSError("event log storage unavailable")

    instance = dg.DagsterInstance.ephemeral()
    result = failed_run(instance)
    tick_on_run(
        tmp_path,
        "run_failure_alert_sensor",
        instance,
        result,
        caplog,
        before_tick=lambda: monkeypatch.setattr(type(instance), "get_records_for_run", unreadable),
    )
    assert "could not read the check results" in caplog.text
    assert "[ERROR] failing_job failed" in caplog.text

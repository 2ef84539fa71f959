"""The Dagster resources, used by an asset in a real (in-process) materialization."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from clustering.core.errors import ConfigError
from clustering.core.internal_preprocessing import share_table
from clustering.dagster.resources.alerts import AlertsResource
from clustering.dagster.resources.data_io import InputReaderResource
from clustering.dagster.resources.logging import LoggerResource
from clustering.dagster.resources.settings import ClusteringSettings
from clustering.infra.logging import LOGGER_NAME
from clustering.infra.monitoring.alerts import Alert
from clustering.sample.files import write_sample_data

# Both come from Dagster 1.13's own code: it calls its deprecated InitResourceContext.dagster_run
# when initialising nested resources, and reads pydantic's deprecated __fields__ for a resource
# without fields (InputReaderResource). Nothing on our side can avoid them.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:InitResourceContext.dagster_run is deprecated:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:The `__fields__` attribute is deprecated"),
]


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_sample_data(folder, preset="small", stores=60, categories=2)
    return folder


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    """The logger resource opens a log file on the shared logger; close it afterwards."""
    logger = logging.getLogger(LOGGER_NAME)
    before_handlers, before_level = list(logger.handlers), logger.level
    yield
    for handler in [h for h in logger.handlers if h not in before_handlers]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(before_level)


@dg.asset
def resource_probe(
    # Not "config": Dagster reserves that parameter name for the op's own config.
    clustering_config: ClusteringSettings,
    inputs: InputReaderResource,
    log: LoggerResource,
    alerts: AlertsResource,
) -> dict[str, Any]:
    """Touches every resource the way the pipeline's assets do."""
    app_config = clustering_config.config
    opened = inputs.open()
    shares = share_table(opened.sales, opened.need_states).execute()
    log.get_logger().info("probe read %d share rows", len(shares))
    results = alerts.dispatcher().send(
        Alert(severity="warning", title="probe", job="resource_probe", message="hello")
    )
    return {
        "env": app_config.env,
        "backend": opened.backend,
        "stores": int(shares["STORE_NBR"].nunique()),
        "external_sources": len(opened.external_sources),
        "alerts": [(r.channel, r.ok) for r in results],
    }


def test_resources_in_a_materialization(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTERING_RAW_DIR", str(raw_dir))
    config = ClusteringSettings(env="dev", project_root=str(tmp_path))
    result = dg.materialize(
        [resource_probe],
        resources={
            "clustering_config": config,
            "inputs": InputReaderResource(settings=config),
            "log": LoggerResource(settings=config),
            "alerts": AlertsResource(settings=config),
        },
    )

    assert result.success
    assert result.output_for_node("resource_probe") == {
        "env": "dev",
        "backend": "duckdb (files)",
        "stores": 60,
        "external_sources": 1,
        "alerts": [("log", True)],  # dev: warnings and up go to the log channel
    }
    log_text = (tmp_path / "logs" / "dev.log").read_text(encoding="utf-8")
    assert "probe read" in log_text
    assert "ALERT [WARNING] probe" in log_text


def test_environment_can_be_chosen_in_run_config(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTERING_STAGING_RAW_DIR", str(raw_dir))
    monkeypatch.setenv("CLUSTERING_STAGING_OUTPUT_DIR", str(tmp_path / "staging"))
    monkeypatch.delenv("CLUSTERING_STAGING_INPUT_URL", raising=False)

    @dg.asset
    def which_env(clustering_config: ClusteringSettings) -> str:
        app_config = clustering_config.config
        assert InputReaderResource(settings=clustering_config).open().backend == "duckdb (files)"
        return app_config.env

    config = ClusteringSettings(project_root=str(tmp_path))
    result = dg.materialize(
        [which_env],
        resources={"clustering_config": config},
        run_config=dg.RunConfig(resources={"clustering_config": {"config": {"env": "staging"}}}),
    )
    assert result.success
    assert result.output_for_node("which_env") == "staging"


def test_logger_resource_sets_up_the_log_file_when_the_step_starts(tmp_path: Path) -> None:
    @dg.asset
    def quiet_step(log: LoggerResource) -> None:
        # The asset never calls the resource: the file is set up before the step runs.
        logging.getLogger("clustering.core.features").warning("dropped 2 constant features")

    config = ClusteringSettings(project_root=str(tmp_path))
    assert dg.materialize([quiet_step], resources={"log": LoggerResource(settings=config)}).success
    log_text = (tmp_path / "logs" / "dev.log").read_text(encoding="utf-8")
    assert "WARNING clustering.core.features: dropped 2 constant features" in log_text


def test_configuration_is_validated_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ClusteringSettings(project_root=str(tmp_path))
    first = settings.config
    assert ClusteringSettings(project_root=str(tmp_path)).config is first
    overrides = '{"params": {"merging": {"min_cluster_size": 7}}}'
    merging = ClusteringSettings(project_root=str(tmp_path), overrides=overrides).config
    assert merging is not first
    assert merging.params.merging.min_cluster_size == 7
    # A changed variable the configuration reads gives a fresh load.
    monkeypatch.setenv("CLUSTERING_RAW_DIR", str(tmp_path / "elsewhere"))
    assert settings.config.paths.raw_dir == tmp_path / "elsewhere"


def test_config_errors_stay_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        _ = ClusteringSettings(env="qa", project_root=str(tmp_path)).config

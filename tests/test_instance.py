"""The project's Dagster instance home: where it is, what its dagster.yaml says, whose wins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from clustering.infra.instance import (
    DEFAULT_HOME_DIRNAME,
    INSTANCE_CONFIG_NAME,
    ensure_dagster_home,
    instance_template_text,
)


@pytest.fixture
def no_dagster_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """DAGSTER_HOME unset for the test and restored afterwards.

    ``setenv`` first so monkeypatch records the original value: ``ensure_dagster_home`` sets the
    variable itself, and a bare ``delenv`` of an unset variable would not undo that.
    """
    monkeypatch.setenv("DAGSTER_HOME", "placeholder")
    monkeypatch.delenv("DAGSTER_HOME")
    yield


@pytest.mark.usefixtures("no_dagster_home")
def test_default_home_is_created_with_the_template(tmp_path: Path) -> None:
    home = ensure_dagster_home(tmp_path)
    assert home == tmp_path / DEFAULT_HOME_DIRNAME
    assert home.is_absolute() and home.is_dir()
    assert os.environ["DAGSTER_HOME"] == str(home)
    config = home / INSTANCE_CONFIG_NAME
    assert config.read_text(encoding="utf-8") == instance_template_text()
    assert [p.name for p in home.iterdir()] == [INSTANCE_CONFIG_NAME]  # no temporary file left


@pytest.mark.usefixtures("no_dagster_home")
def test_template_configures_the_instance(tmp_path: Path) -> None:
    ensure_dagster_home(tmp_path)
    with dg.DagsterInstance.get() as instance:
        assert not instance.telemetry_enabled
        assert "Sqlite" in type(instance.run_storage).__name__
        assert "Sqlite" in type(instance.event_log_storage).__name__
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        run_queue = instance.get_concurrency_config().run_queue_config
        assert run_queue is not None and run_queue.max_concurrent_runs == 4


@pytest.mark.usefixtures("no_dagster_home")
def test_project_root_defaults_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert ensure_dagster_home() == tmp_path / DEFAULT_HOME_DIRNAME


@pytest.mark.usefixtures("no_dagster_home")
def test_an_edited_default_config_is_kept(tmp_path: Path) -> None:
    home = tmp_path / DEFAULT_HOME_DIRNAME
    home.mkdir()
    (home / INSTANCE_CONFIG_NAME).write_text("telemetry:\n  enabled: true\n", encoding="utf-8")
    ensure_dagster_home(tmp_path)
    assert (home / INSTANCE_CONFIG_NAME).read_text(encoding="utf-8") == (
        "telemetry:\n  enabled: true\n"
    )


def test_users_dagster_home_wins_and_is_not_modified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "my_home"
    mine.mkdir()
    own_config = "telemetry:\n  enabled: true\n"
    (mine / INSTANCE_CONFIG_NAME).write_text(own_config, encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(mine))
    project = tmp_path / "project"
    project.mkdir()

    assert ensure_dagster_home(project) == mine
    assert (mine / INSTANCE_CONFIG_NAME).read_text(encoding="utf-8") == own_config
    assert [p.name for p in mine.iterdir()] == [INSTANCE_CONFIG_NAME]
    assert not (project / DEFAULT_HOME_DIRNAME).exists()
    assert os.environ["DAGSTER_HOME"] == str(mine)


def test_missing_users_dagster_home_is_created_with_the_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "new" / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(mine))
    assert ensure_dagster_home(tmp_path) == mine
    assert (mine / INSTANCE_CONFIG_NAME).read_text(encoding="utf-8") == instance_template_text()
    assert not (tmp_path / DEFAULT_HOME_DIRNAME).exists()


def test_users_existing_home_without_config_gets_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "home"
    mine.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(mine))
    assert ensure_dagster_home(tmp_path) == mine
    assert not any(mine.iterdir())


def test_relative_dagster_home_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", "relative/home")
    home = ensure_dagster_home()
    assert home == tmp_path / "relative" / "home"
    assert home.is_dir()
    assert os.environ["DAGSTER_HOME"] == str(home)
    assert Path(os.environ["DAGSTER_HOME"]).is_absolute()

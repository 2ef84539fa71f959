"""The Dagster instance in a real PostgreSQL server: chosen by environment (prod; staging when
asked) or by DAGSTER_HOME, credentials from the environment, a missing one named in a sentence."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import postgres_server
import pytest
from postgres_server import PostgresServer

from clustering.cli.main import main
from clustering.infra.instance import DEFAULT_HOME_DIRNAME, ensure_dagster_home
from clustering.infra.instance_storage import postgres_template_text

pytestmark = pytest.mark.usefixtures("clean_clustering_env")


@pytest.fixture
def no_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", "placeholder")  # so monkeypatch restores the original
    monkeypatch.delenv("DAGSTER_HOME")


def _prod_env_file(root: Path, server: PostgresServer, database: str, *, password: bool) -> None:
    """A project's .env.prod: prod's required settings and the instance's credentials."""
    values = {
        "CLUSTERING_PROD_INPUT_URL": server.url(database),
        "CLUSTERING_PROD_OUTPUT_DIR": str(root / "out"),
        "CLUSTERING_PROD_SMTP_HOST": "127.0.0.1",
        "CLUSTERING_PROD_ALERT_RECIPIENTS": "ops@example.com",
        **server.instance_env(database),
    }
    if not password:
        del values["DAGSTER_PG_PASSWORD"]
    text = "".join(f"{key}={value}\n" for key, value in values.items())
    (root / ".env.prod").write_text(text, encoding="utf-8")


def _table_names(server: PostgresServer, database: str) -> set[str]:
    with server.connect(database) as con:
        rows = con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {str(name) for (name,) in rows.fetchall()}


@pytest.mark.usefixtures("no_dagster_home")
def test_prod_instance_is_postgres_without_dagster_home(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    database = postgres.create_database("postgres_prod_instance")
    _prod_env_file(tmp_path, postgres, database, password=True)

    home = ensure_dagster_home(tmp_path, env="prod")

    assert home == tmp_path / DEFAULT_HOME_DIRNAME / "prod"
    assert (home / "dagster.yaml").read_text(encoding="utf-8") == postgres_template_text()
    assert os.environ["DAGSTER_PG_PASSWORD"] == postgres.password  # read from .env.prod
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    # Dagster created its tables in the server on first use.
    assert {"runs", "event_logs", "jobs", "job_ticks"} <= _table_names(postgres, database)


@pytest.mark.usefixtures("no_dagster_home")
def test_staging_uses_postgres_only_when_asked(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTERING_STAGING_RAW_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("CLUSTERING_STAGING_OUTPUT_DIR", str(tmp_path / "out"))
    assert ensure_dagster_home(tmp_path, env="staging") == tmp_path / DEFAULT_HOME_DIRNAME

    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("CLUSTERING_STAGING_INSTANCE", "postgres")
    for key, value in postgres.instance_env(postgres.create_database("postgres_staging")).items():
        monkeypatch.setenv(key, value)
    home = ensure_dagster_home(tmp_path, env="staging")
    assert home == tmp_path / DEFAULT_HOME_DIRNAME / "staging"
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"


@pytest.mark.usefixtures("no_dagster_home")
def test_postgres_instance_without_password_is_one_sentence(
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = postgres.create_database("postgres_no_password")
    _prod_env_file(tmp_path, postgres, database, password=False)
    monkeypatch.chdir(tmp_path)

    assert main(["run", "full_pipeline_job", "--env", "prod"]) == 2

    home = tmp_path / DEFAULT_HOME_DIRNAME / "prod"
    assert capsys.readouterr().err.strip() == (
        f"error: the Dagster instance in {home} reads DAGSTER_PG_PASSWORD from the environment, "
        "but it is not set; set it (e.g. in .env) or point DAGSTER_HOME at another instance."
    )


def test_postgres_tests_fail_instead_of_skipping_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_server, "find_bin_dir", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the PostgreSQL tests"):
        postgres_server.require_bin_dir()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="make postgres"):
        postgres_server.require_bin_dir()

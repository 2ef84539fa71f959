"""Environment configuration: layers, interpolation, .env files, and one sentence per mistake."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from clustering.core.errors import ConfigError
from clustering.core.params import PipelineParams
from clustering.infra.config import (
    DEFAULT_CONFIG_DIR,
    AppConfig,
    apply_env_files,
    load_config,
    redact_url,
)

STAGING_VARS = {
    "CLUSTERING_STAGING_RAW_DIR": "/srv/staging/raw",
    "CLUSTERING_STAGING_OUTPUT_DIR": "/srv/staging/out",
}
PROD_VARS = {
    "CLUSTERING_PROD_INPUT_URL": "postgresql://clustering:s3cret@db.internal:5432/retail",
    "CLUSTERING_PROD_OUTPUT_DIR": "/srv/prod/out",
    "CLUSTERING_PROD_SMTP_HOST": "smtp.internal",
    "CLUSTERING_PROD_ALERT_RECIPIENTS": "category-team@example.com, ops@example.com",
}


@pytest.fixture(autouse=True)
def clean_environment(clean_clustering_env: None) -> None:
    """No CLUSTERING_* variable from the developer's shell (see conftest)."""


def set_vars(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def config_dir_with(tmp_path: Path, files: dict[str, str]) -> Path:
    """The shipped config folder copied to tmp_path, with ``files`` written over it."""
    folder = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, folder)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def error_of(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# --- the three environments ----------------------------------------------------------------


def test_dev_loads_with_no_variables_and_resolves_paths_against_project_root(
    tmp_path: Path,
) -> None:
    config = load_config("dev", project_root=tmp_path)
    assert config.env == "dev"
    assert config.paths.raw_dir == tmp_path / "data/raw"
    # Names without a suffix: .parquet, .csv or a folder of that name, whichever is there.
    assert config.paths.internal_sales == str(tmp_path / "data/raw/internal_sales")
    assert config.paths.need_states == str(tmp_path / "data/raw/need_state")
    assert config.paths.external == [str(tmp_path / "data/raw/external_sales")]
    assert config.paths.duckdb_path == tmp_path / "outputs/clustering_dev.duckdb"
    assert config.paths.exports_dir == tmp_path / "outputs/dev"
    assert config.logging.file == tmp_path / "logs/dev.log"
    assert config.inputs.backend_url is None
    assert [channel.type for channel in config.alerts.channels] == ["log"]
    assert config.dagster.schedules.running_by_default is False


def test_dev_raw_dir_comes_from_clustering_raw_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTERING_RAW_DIR", "shared/raw")
    config = load_config("dev", project_root=tmp_path)
    assert config.paths.raw_dir == tmp_path / "shared/raw"
    assert config.paths.internal_sales == str(tmp_path / "shared/raw/internal_sales")


def test_staging_reads_and_writes_where_the_variables_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_vars(monkeypatch, STAGING_VARS)
    config = load_config("staging", project_root=tmp_path)
    assert config.paths.raw_dir == Path("/srv/staging/raw")
    assert config.paths.need_states == "/srv/staging/raw/need_state"
    assert config.paths.duckdb_path == Path("/srv/staging/out/clustering_staging.duckdb")
    assert config.paths.exports_dir == Path("/srv/staging/out/staging")
    assert config.inputs.backend_url is None  # optional: files unless an input URL is given
    assert config.alerts.ui_base_url == ""  # '' default stays a string, not None
    assert config.dagster.schedules.running_by_default is False

    monkeypatch.setenv("CLUSTERING_STAGING_INPUT_URL", "postgresql://reader@db/retail")
    config = load_config("staging", project_root=tmp_path)
    assert config.inputs.backend_url == "postgresql://reader@db/retail"
    assert "internal sales: table internal_sales via postgresql://reader@db/retail" in (
        config.describe_sources()
    )


def test_prod_reads_a_database_and_alerts_by_email_and_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_vars(monkeypatch, PROD_VARS)
    config = load_config("prod", project_root=tmp_path)
    assert config.inputs.backend_url == PROD_VARS["CLUSTERING_PROD_INPUT_URL"]
    assert config.paths.duckdb_path == Path("/srv/prod/out/clustering_prod.duckdb")
    assert config.paths.raw_dir == Path("/srv/prod/out/raw")
    assert config.dagster.schedules.running_by_default is True
    log, email, webhook = config.alerts.channels
    assert (log.type, email.type, webhook.type) == ("log", "email", "webhook")
    assert email.smtp_host == "smtp.internal"
    assert email.smtp_port == 587
    assert email.recipients == ["category-team@example.com", "ops@example.com"]
    assert email.password_env == "CLUSTERING_SMTP_PASSWORD"  # a name, never the secret
    assert webhook.url_env == "CLUSTERING_ALERT_WEBHOOK_URL"
    # The password in the input URL shows neither in logs nor in repr().
    sources = config.describe_sources()
    assert "s3cret" not in sources
    assert "s3cret" not in repr(config)
    assert "table internal_sales via postgresql://clustering:***@db.internal:5432/retail" in (
        sources
    )


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_params_are_the_documented_defaults(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_vars(monkeypatch, STAGING_VARS | PROD_VARS)
    assert load_config(env, project_root=tmp_path).params == PipelineParams()


# --- missing variables ---------------------------------------------------------------------


def test_missing_variable_names_the_variable_and_the_key(tmp_path: Path) -> None:
    assert error_of(env="staging", project_root=tmp_path) == (
        "config for env 'staging': environment variable CLUSTERING_STAGING_RAW_DIR is not set "
        "(needed by paths.raw_dir)."
    )


@pytest.mark.parametrize(
    ("unset", "key"),
    [
        # raw_dir's default refers to outputs_dir: the key to blame is the one reading the variable.
        ("CLUSTERING_PROD_OUTPUT_DIR", "paths.outputs_dir"),
        ("CLUSTERING_PROD_INPUT_URL", "inputs.backend_url"),
        ("CLUSTERING_PROD_SMTP_HOST", "alerts.channels.1.smtp_host"),
    ],
)
def test_missing_prod_variable_names_the_key_that_reads_it(
    unset: str, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_vars(monkeypatch, {k: v for k, v in PROD_VARS.items() if k != unset})
    assert error_of(env="prod", project_root=tmp_path) == (
        f"config for env 'prod': environment variable {unset} is not set (needed by {key})."
    )


def test_variable_set_to_empty_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_vars(monkeypatch, STAGING_VARS | {"CLUSTERING_STAGING_RAW_DIR": ""})
    assert error_of(env="staging", project_root=tmp_path) == (
        "config for env 'staging' (base.yml < staging.yml): paths.raw_dir: must not be empty."
    )


# --- .env files ----------------------------------------------------------------------------


def test_dotenv_files_fill_in_and_the_real_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "CLUSTERING_STAGING_RAW_DIR=from-dotenv/raw\nCLUSTERING_STAGING_OUTPUT_DIR=dotenv-out\n"
    )
    # .env.<env> is more specific than .env.
    (tmp_path / ".env.staging").write_text("CLUSTERING_STAGING_OUTPUT_DIR=staging-out\n")
    config = load_config("staging", project_root=tmp_path)
    assert config.paths.raw_dir == tmp_path / "from-dotenv/raw"
    assert config.paths.outputs_dir == tmp_path / "staging-out"

    monkeypatch.setenv("CLUSTERING_STAGING_OUTPUT_DIR", "/real/out")
    config = load_config("staging", project_root=tmp_path)
    assert config.paths.outputs_dir == Path("/real/out")


def test_loading_never_writes_the_process_environment(tmp_path: Path) -> None:
    (tmp_path / ".env.dev").write_text("CLUSTERING_RAW_DIR=dev-raw\n")
    (tmp_path / ".env.staging").write_text(
        "CLUSTERING_STAGING_RAW_DIR=/s/raw\nCLUSTERING_STAGING_OUTPUT_DIR=/s/out\n"
        "CLUSTERING_RAW_DIR=staging-raw\n"
    )
    before = dict(os.environ)
    staging = load_config("staging", project_root=tmp_path)
    assert staging.paths.outputs_dir == Path("/s/out")
    config = load_config("dev", project_root=tmp_path)
    assert config.paths.raw_dir == tmp_path / "dev-raw"
    assert dict(os.environ) == before


def test_commands_apply_env_files_and_never_mix_environments(tmp_path: Path) -> None:
    (tmp_path / ".env.staging").write_text("CLUSTERING_STAGING_OUTPUT_DIR=/s/out\n")
    apply_env_files(tmp_path, "staging")
    # Written to the process environment so secrets named in the config can be read later.
    assert os.environ["CLUSTERING_STAGING_OUTPUT_DIR"] == "/s/out"
    apply_env_files(tmp_path, "dev")
    assert "CLUSTERING_STAGING_OUTPUT_DIR" not in os.environ


# --- layers --------------------------------------------------------------------------------


def test_overrides_win_over_the_environment_file(tmp_path: Path) -> None:
    config = load_config(
        "dev", {"params": {"internal_clustering": {"max_k": 8}}}, project_root=tmp_path
    )
    assert config.params.internal_clustering.max_k == 8
    assert config.params.external_clustering == PipelineParams().external_clustering


def test_site_file_adds_alert_channels_and_wins_over_the_environment_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "site.yml").write_text(
        "alerts:\n"
        "  min_severity: error\n"
        "  channels:\n"
        "    - type: webhook\n"
        "      url_env: CLUSTERING_ALERT_WEBHOOK_URL\n"
        "params:\n  internal_clustering:\n    max_k: 7\n"
    )
    folder = config_dir_with(
        tmp_path, {"dev.yml": "params:\n  internal_clustering:\n    max_k: 12\n"}
    )
    monkeypatch.setenv("CLUSTERING_CONFIG", "site.yml")  # relative to the project root
    config = load_config("dev", project_root=tmp_path, config_dir=folder)
    assert [channel.type for channel in config.alerts.channels] == ["webhook"]
    assert config.alerts.min_severity == "error"
    assert config.params.internal_clustering.max_k == 7
    overridden = load_config(
        "dev",
        overrides={"params": {"internal_clustering": {"max_k": 9}}},
        project_root=tmp_path,
    )
    assert overridden.params.internal_clustering.max_k == 9


def test_site_file_may_be_named_in_dotenv(tmp_path: Path) -> None:
    (tmp_path / "site.yml").write_text("logging:\n  level: DEBUG\n")
    (tmp_path / ".env").write_text("CLUSTERING_CONFIG=site.yml\n")
    assert load_config("dev", project_root=tmp_path).logging.level == "DEBUG"


def test_missing_or_wrong_site_file_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTERING_CONFIG", str(tmp_path / "nowhere.yml"))
    with pytest.raises(
        ConfigError, match=r"CLUSTERING_CONFIG names '.*nowhere.yml', which is not a file"
    ):
        load_config("dev", project_root=tmp_path)
    (tmp_path / "site.yml").write_text("alerts:\n  min_severity: loud\n")
    monkeypatch.setenv("CLUSTERING_CONFIG", str(tmp_path / "site.yml"))
    with pytest.raises(ConfigError) as info:
        load_config("dev", project_root=tmp_path)
    assert "CLUSTERING_CONFIG=site.yml" in str(info.value)
    assert "alerts.min_severity" in str(info.value)


def test_overrides_may_refer_to_other_keys(tmp_path: Path) -> None:
    config = load_config(
        "dev",
        overrides={"paths": {"need_states": "${paths.raw_dir}/ns/*.csv"}},
        project_root=tmp_path,
    )
    assert config.paths.need_states == str(tmp_path / "data/raw/ns/*.csv")


def test_env_file_overrides_base(tmp_path: Path) -> None:
    folder = config_dir_with(tmp_path, {"dev.yml": "dagster:\n  max_concurrent_steps: 3\n"})
    config = load_config("dev", project_root=tmp_path, config_dir=folder)
    assert config.dagster.max_concurrent_steps == 3


# --- one sentence per mistake --------------------------------------------------------------


def test_unknown_key_names_its_full_path_and_the_merged_files(tmp_path: Path) -> None:
    folder = config_dir_with(
        tmp_path, {"dev.yml": "params:\n  internal_clustering:\n    max_kk: 6\n"}
    )
    assert error_of(env="dev", project_root=tmp_path, config_dir=folder) == (
        "config for env 'dev' (base.yml < dev.yml): params.internal_clustering.max_kk: unknown key."
    )


def test_mistyped_value_names_its_path(tmp_path: Path) -> None:
    folder = config_dir_with(
        tmp_path, {"dev.yml": "params:\n  internal_clustering:\n    max_k: ten\n"}
    )
    assert error_of(env="dev", project_root=tmp_path, config_dir=folder) == (
        "config for env 'dev' (base.yml < dev.yml): params.internal_clustering.max_k: "
        "Input should be a valid integer, unable to parse string as an integer."
    )


def test_bad_override_names_overrides_in_the_file_set(tmp_path: Path) -> None:
    message = error_of(
        env="dev",
        overrides={"params": {"merging": {"min_cluster_size": 0}}},
        project_root=tmp_path,
    )
    assert message == (
        "config for env 'dev' (base.yml < dev.yml < overrides): "
        "params.merging.min_cluster_size: Input should be greater than or equal to 1."
    )


def test_unknown_environment() -> None:
    assert error_of(env="qa") == "unknown environment 'qa'; expected one of: dev, staging, prod."


def test_secret_value_instead_of_a_variable_name_is_rejected(tmp_path: Path) -> None:
    folder = config_dir_with(
        tmp_path,
        {
            "dev.yml": (
                "alerts:\n  channels:\n    - type: log\n    - type: webhook\n"
                "      url_env: https://hooks.example.com/T000/abc\n"
            )
        },
    )
    assert error_of(env="dev", project_root=tmp_path, config_dir=folder) == (
        "config for env 'dev' (base.yml < dev.yml): alerts.channels.1.url_env: must be the name "
        "of an environment variable holding the secret, not the secret."
    )


def test_channel_missing_its_settings(tmp_path: Path) -> None:
    folder = config_dir_with(
        tmp_path, {"dev.yml": "alerts:\n  channels:\n    - type: email\n      smtp_host: mail\n"}
    )
    assert error_of(env="dev", project_root=tmp_path, config_dir=folder) == (
        "config for env 'dev' (base.yml < dev.yml): alerts.channels.0: "
        "email channel needs recipients and sender."
    )


def test_unparsable_or_duplicate_yaml_names_the_file(tmp_path: Path) -> None:
    folder = config_dir_with(tmp_path, {"dev.yml": "paths:\n  raw_dir: a\n  raw_dir: b\n"})
    message = error_of(env="dev", project_root=tmp_path, config_dir=folder)
    assert message.startswith("config file 'dev.yml' cannot be parsed:")
    assert "key 'raw_dir' is given twice" in message


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config("dev", project_root=tmp_path)
    assert isinstance(config, AppConfig)
    with pytest.raises(ValueError, match="frozen"):
        config.paths.raw_dir = tmp_path  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u:pw@h:5432/db?sslmode=require",
            "postgresql://u:***@h:5432/db?sslmode=require",
        ),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("duckdb:///data/warehouse.db", "duckdb:///data/warehouse.db"),
        (
            "snowflake://u@acct/db?token=abc&warehouse=w",
            "snowflake://u@acct/db?token=***&warehouse=w",
        ),
    ],
)
def test_urls_in_logs_hide_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_readme_site_file_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    marker = "For example, alerts by e-mail and webhook:\n\n```yaml\n"
    assert marker in readme
    example = readme.split(marker, 1)[1].split("```", 1)[0]
    (tmp_path / "site.yml").write_text(example)
    monkeypatch.setenv("CLUSTERING_CONFIG", "site.yml")
    config = load_config("dev", project_root=tmp_path)
    assert [channel.type for channel in config.alerts.channels] == ["email", "webhook", "slack"]
    assert config.alerts.channels[0].recipients == [
        "category-team@example.com",
        "ops@example.com",
    ]
    assert config.alerts.ui_base_url == "http://dagster.example.internal:3000"


def test_run_config_scenario_and_parameters_files_share_one_sentence_per_problem(
    tmp_path: Path,
) -> None:
    from clustering.cli.run import read_run_config
    from clustering.core.errors import ConfigError

    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError, match=r"^run config file '.*nope.yml' does not exist\.$"):
        read_run_config(missing)
    broken = tmp_path / "broken.yml"
    broken.write_text("ops: [unclosed\n")
    with pytest.raises(ConfigError, match=r"^run config file '.*broken.yml' cannot be parsed: "):
        read_run_config(broken)
    listed = tmp_path / "list.yml"
    listed.write_text("- ops\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping such as ops"):
        read_run_config(listed)
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert read_run_config(empty) == {}

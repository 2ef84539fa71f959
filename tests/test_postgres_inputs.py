"""Inputs in a real PostgreSQL server: the raw-sales aggregation runs inside PostgreSQL and gives
the same share matrices, and the same match summary, as DuckDB on the files."""

from __future__ import annotations

from pathlib import Path

import ibis
import pandas as pd
import pytest
from postgres_server import PostgresServer, load_sample_inputs

from clustering.core.errors import ConfigError
from clustering.core.internal_preprocessing import (
    match_summary,
    share_matrices,
    share_table,
    stream_shares,
)
from clustering.infra.config import AppConfig, load_config
from clustering.io.inputs import FILES_BACKEND, open_inputs

pytestmark = pytest.mark.usefixtures("clean_clustering_env")


@pytest.fixture(scope="module")
def inputs_db(postgres: PostgresServer, small_data: Path) -> str:
    """A database holding the small sample as the tables prod.yml names."""
    database = postgres.create_database("postgres_inputs")
    load_sample_inputs(postgres, database, small_data)
    return database


def _config(
    root: Path, raw: Path, monkeypatch: pytest.MonkeyPatch, url: str | None = None
) -> AppConfig:
    monkeypatch.setenv("CLUSTERING_RAW_DIR", str(raw))
    overrides: dict[str, object] = {}
    if url is not None:
        overrides["inputs"] = {
            "backend_url": url,
            "internal_sales_table": "internal_sales",
            "need_states_table": "need_states",
            "external_tables": ["external_store_features"],
        }
    return load_config("dev", overrides=overrides, project_root=root)


def test_postgres_aggregation_equals_duckdb(
    postgres: PostgresServer,
    inputs_db: str,
    small_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = postgres.url(inputs_db)
    on_postgres = open_inputs(_config(tmp_path, small_data, monkeypatch, url))
    on_files = open_inputs(_config(tmp_path, small_data, monkeypatch))

    # The aggregation is one SQL statement executed by PostgreSQL over the sales table; only
    # the per store × need-state result leaves the server.
    pg_shares = share_table(on_postgres.sales, on_postgres.need_states)
    assert ibis.get_backend(pg_shares).name == "postgres"
    sql = str(ibis.to_sql(pg_shares, dialect="postgres"))
    assert "internal_sales" in sql and "GROUP BY" in sql
    assert on_postgres.backend == postgres.url(inputs_db).replace(postgres.password, "***")
    assert on_files.backend == FILES_BACKEND

    from_postgres = share_matrices(pg_shares.execute())
    from_duckdb = share_matrices(share_table(on_files.sales, on_files.need_states).execute())
    assert sorted(from_postgres) == sorted(from_duckdb)
    assert len(from_duckdb) == 4
    for category, expected in from_duckdb.items():
        pd.testing.assert_frame_equal(from_postgres[category], expected, rtol=1e-9)
    # The stream the pipeline writes (codes aggregated by PostgreSQL, named here): the same
    # shares, sorted by category and store.
    streamed = stream_shares(on_postgres.sales, on_postgres.need_states).read_all().to_pandas()
    keys = ["CATEGORY", "STORE_NBR"]
    assert streamed[keys].values.tolist() == streamed.sort_values(keys)[keys].values.tolist()
    from_stream = share_matrices(streamed)
    assert sorted(from_stream) == sorted(from_duckdb)
    for category, expected in from_duckdb.items():
        pd.testing.assert_frame_equal(from_stream[category], expected, rtol=1e-9)

    pg_summary = match_summary(on_postgres.sales, on_postgres.need_states).model_dump()
    duck_summary = match_summary(on_files.sales, on_files.need_states).model_dump()
    assert duck_summary["unmatched_skus"] > 0  # the sample plants unmapped SKUs
    for name in ("total_sales", "unmatched_sales", "unmatched_sales_pct"):
        assert pg_summary.pop(name) == pytest.approx(duck_summary.pop(name))
    assert pg_summary == duck_summary

    [(name, features)] = on_postgres.external_sources
    [(_, file_features)] = on_files.external_sources
    assert name == "external_store_features"
    assert sorted(features.STORE_NBR) == sorted(file_features.STORE_NBR)


def test_postgres_wrong_password_is_one_sentence_without_the_password(
    postgres: PostgresServer,
    inputs_db: str,
    small_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = "not-the-" + postgres.password
    url = postgres.url(inputs_db).replace(postgres.password, wrong)
    with pytest.raises(ConfigError) as raised:
        open_inputs(_config(tmp_path, small_data, monkeypatch, url))
    message = str(raised.value)
    assert message.startswith(
        f"inputs.backend_url: cannot connect to postgres://{postgres.user}:***@127.0.0.1:"
    )
    assert "password authentication failed" in message
    assert wrong not in message and "\n" not in message

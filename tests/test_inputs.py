"""Opening the inputs from files, folders, globs and a SQL engine given by URL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb
import ibis.backends.duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from clustering.core.errors import ConfigError, InputContractError
from clustering.core.internal_preprocessing import share_table
from clustering.infra.config import AppConfig, load_config
from clustering.io.inputs import FILES_BACKEND, PipelineInputs, open_inputs
from clustering.sample.files import write_sample_data

SHARE_KEYS = ["CATEGORY", "STORE_NBR", "NEED_STATE"]


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_sample_data(folder, preset="small", stores=60, categories=2)
    return folder


@pytest.fixture(scope="module")
def engine_db(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file holding the three inputs as tables, standing in for a warehouse."""
    path = tmp_path_factory.mktemp("engine") / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE internal_sales AS SELECT * FROM read_parquet(?)",
            [str(raw_dir / "internal_sales.parquet")],
        )
        con.execute(
            "CREATE TABLE need_states AS SELECT * FROM read_csv(?)",
            [str(raw_dir / "need_state.csv")],
        )
        con.execute(
            "CREATE TABLE external_store_features AS SELECT * FROM read_parquet(?)",
            [str(raw_dir / "external_sales.parquet")],
        )
        # A sales table breaking its contract: no TOTAL_SALES column.
        con.execute(
            "CREATE TABLE sales_without_totals AS "
            "SELECT SKU_NBR, STORE_NBR, CAT_DSC FROM internal_sales"
        )
    return path


def dev_config(
    root: Path,
    raw: Path,
    monkeypatch: pytest.MonkeyPatch,
    overrides: Mapping[str, object] | None = None,
) -> AppConfig:
    monkeypatch.setenv("CLUSTERING_RAW_DIR", str(raw))
    return load_config("dev", overrides=overrides, project_root=root)


def engine_overrides(db: Path, **tables: object) -> dict[str, object]:
    inputs: dict[str, object] = {
        "backend_url": f"duckdb:///{db}",
        "internal_sales_table": "internal_sales",
        "need_states_table": "need_states",
        "external_tables": ["external_store_features"],
    }
    return {"inputs": inputs | tables}


def shares_of(inputs: PipelineInputs) -> pd.DataFrame:
    frame: pd.DataFrame = share_table(inputs.sales, inputs.need_states).execute()
    return frame.sort_values(SHARE_KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def file_shares(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    with pytest.MonkeyPatch.context() as monkeypatch:
        config = dev_config(tmp_path_factory.mktemp("root"), raw_dir, monkeypatch)
        return shares_of(open_inputs(config))


def test_files_from_the_dev_config(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_shares: pd.DataFrame
) -> None:
    inputs = open_inputs(dev_config(tmp_path, raw_dir, monkeypatch))

    assert inputs.backend == FILES_BACKEND == "duckdb (files)"
    assert inputs.sales.columns == ("SKU_NBR", "STORE_NBR", "CAT_DSC", "TOTAL_SALES")
    assert not inputs.need_states_copied
    [(name, external)] = inputs.external_sources
    assert name == str(raw_dir / "external_sales.parquet")
    expected = pd.read_parquet(raw_dir / "external_sales.parquet")
    assert set(external["STORE_NBR"]) == set(expected["STORE_NBR"])
    assert file_shares["STORE_NBR"].nunique() == 60
    assert file_shares["CATEGORY"].nunique() == 2
    sums = file_shares.groupby(["CATEGORY", "STORE_NBR"])["SHARE"].sum()
    assert sums.round(6).eq(100).all()
    assert inputs.describe() == (
        f"internal sales from {raw_dir / 'internal_sales.parquet'}; need states from "
        f"{raw_dir / 'need_state.csv'}; 1 external source; aggregation runs on duckdb (files)"
    )


@pytest.fixture(scope="module")
def sales_parts(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sales split into three parquet files of the same shape."""
    folder = tmp_path_factory.mktemp("parts")
    table = pq.read_table(raw_dir / "internal_sales.parquet")
    step = -(-table.num_rows // 3)
    for i in range(3):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")
    return folder


@pytest.mark.parametrize("spec", ["folder", "glob"])
def test_sales_from_several_parquet_parts(
    spec: str,
    sales_parts: Path,
    raw_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file_shares: pd.DataFrame,
) -> None:
    where = str(sales_parts) if spec == "folder" else str(sales_parts / "part-*.parquet")
    overrides = {"paths": {"internal_sales": where}}
    inputs = open_inputs(dev_config(tmp_path, raw_dir, monkeypatch, overrides))

    assert inputs.sales_source == where
    pd.testing.assert_frame_equal(shares_of(inputs), file_shares)


def test_all_inputs_from_a_sql_engine(
    engine_db: Path,
    raw_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file_shares: pd.DataFrame,
) -> None:
    # The raw folder is empty: everything must come from the engine's tables.
    empty = tmp_path / "empty"
    empty.mkdir()
    config = dev_config(tmp_path, empty, monkeypatch, engine_overrides(engine_db))
    inputs = open_inputs(config)

    url = f"duckdb:///{engine_db}"
    assert inputs.backend == url
    assert not inputs.need_states_copied
    shares = share_table(inputs.sales, inputs.need_states)
    # The aggregation is one query on the engine's connection (the warehouse file).
    engine = shares.get_backend()
    assert engine is inputs.sales.get_backend() is inputs.need_states.get_backend()
    databases = engine.raw_sql("PRAGMA database_list").fetchall()
    assert str(engine_db) in {row[2] for row in databases}
    pd.testing.assert_frame_equal(
        shares.execute().sort_values(SHARE_KEYS).reset_index(drop=True), file_shares
    )
    [(name, external)] = inputs.external_sources
    assert name == "external_store_features"
    expected = pd.read_parquet(raw_dir / "external_sales.parquet")
    assert set(external["STORE_NBR"]) == set(expected["STORE_NBR"])
    assert f"table internal_sales at {url}" in inputs.describe()


def test_need_states_from_files_are_copied_to_the_sales_engine(
    engine_db: Path,
    raw_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file_shares: pd.DataFrame,
) -> None:
    overrides = engine_overrides(engine_db, need_states_table=None, external_tables=[])
    inputs = open_inputs(dev_config(tmp_path, raw_dir, monkeypatch, overrides))

    assert inputs.backend == f"duckdb:///{engine_db}"
    assert inputs.need_states_copied
    assert inputs.need_states.get_backend() is inputs.sales.get_backend()
    assert "(copied into the sales engine)" in inputs.describe()
    pd.testing.assert_frame_equal(shares_of(inputs), file_shares)
    # Files for the rest: the external source is the parquet file.
    assert [name for name, _ in inputs.external_sources] == [
        str(raw_dir / "external_sales.parquet")
    ]


def test_need_states_from_the_engine_with_sales_from_files(
    engine_db: Path,
    raw_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file_shares: pd.DataFrame,
) -> None:
    overrides = engine_overrides(engine_db, internal_sales_table=None)
    inputs = open_inputs(dev_config(tmp_path, raw_dir, monkeypatch, overrides))

    # The sales decide where the aggregation runs: DuckDB over the files.
    assert inputs.backend == FILES_BACKEND
    assert inputs.need_states_copied
    pd.testing.assert_frame_equal(shares_of(inputs), file_shares)


def test_missing_table_is_one_sentence_naming_table_and_url(
    engine_db: Path, raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = engine_overrides(engine_db, internal_sales_table="sales_2024")
    config = dev_config(tmp_path, raw_dir, monkeypatch, overrides)
    inputs = open_inputs(config)
    with pytest.raises(InputContractError) as caught:
        _ = inputs.sales
    assert str(caught.value) == (f"internal sales: no table 'sales_2024' at duckdb:///{engine_db}.")


def test_missing_external_table(
    engine_db: Path, raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = engine_overrides(engine_db, external_tables=["census", "external_store_features"])
    inputs = open_inputs(dev_config(tmp_path, raw_dir, monkeypatch, overrides))
    with pytest.raises(InputContractError, match=r"^external features: no table 'census' at "):
        _ = inputs.external_sources


def test_engine_table_breaking_its_contract_names_table_and_column(
    engine_db: Path, raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = engine_overrides(engine_db, internal_sales_table="sales_without_totals")
    inputs = open_inputs(dev_config(tmp_path, raw_dir, monkeypatch, overrides))
    with pytest.raises(InputContractError) as caught:
        _ = inputs.sales
    message = str(caught.value)
    assert message.startswith(
        f"internal sales 'table sales_without_totals at duckdb:///{engine_db}': missing column "
        "TOTAL_SALES"
    )


def test_unreachable_engine_is_a_config_error_without_the_password(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No PostgreSQL driver here, so connecting fails whatever the address: the sentence must
    # still name the (masked) URL and never the password.
    url = "postgres://clustering:hunter2-secret@127.0.0.1:1/warehouse"
    overrides = {"inputs": {"backend_url": url, "internal_sales_table": "internal_sales"}}
    with pytest.raises(ConfigError) as caught:
        open_inputs(dev_config(tmp_path, raw_dir, monkeypatch, overrides))
    message = str(caught.value)
    assert message.startswith(
        "inputs.backend_url: cannot connect to postgres://clustering:***@127.0.0.1:1/warehouse: "
    )
    assert "hunter2" not in message
    assert "\n" not in message


def test_backend_url_without_any_table_reads_files_only(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing is read from the engine, so it is not even connected to (this URL cannot be).
    overrides = {"inputs": {"backend_url": "postgres://nobody@127.0.0.1:1/none"}}
    inputs = open_inputs(dev_config(tmp_path, raw_dir, monkeypatch, overrides))
    assert inputs.backend == FILES_BACKEND


def test_inputs_are_opened_only_when_used(
    engine_db: Path, raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An asset that needs only the external features must not scan (or trip over) the sales.
    overrides = engine_overrides(engine_db, internal_sales_table="sales_2024")
    inputs = open_inputs(dev_config(tmp_path, raw_dir, monkeypatch, overrides))

    assert "table sales_2024" in inputs.describe()  # describing opens nothing
    [(name, _)] = inputs.external_sources
    assert name == "external_store_features"
    assert inputs.external_sources is inputs.external_sources  # loaded once, then kept
    with pytest.raises(InputContractError, match="no table 'sales_2024'"):
        _ = inputs.sales


def test_engine_without_temporary_tables_asks_for_both_inputs_in_one_place(
    engine_db: Path, raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for an engine where temporary tables are not available.
    def refuse(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("temporary tables are not supported")

    overrides = engine_overrides(engine_db, need_states_table=None)
    inputs = open_inputs(dev_config(tmp_path, raw_dir, monkeypatch, overrides))
    monkeypatch.setattr(ibis.backends.duckdb.Backend, "create_table", refuse)
    with pytest.raises(ConfigError) as caught:
        _ = inputs.need_states
    assert str(caught.value) == (
        "inputs: internal sales and the need-state map must come from the same place "
        f"(the engine holding table internal_sales at duckdb:///{engine_db} cannot take a "
        "temporary copy of the map: temporary tables are not supported); set both "
        "inputs.internal_sales_table and inputs.need_states_table, or neither."
    )

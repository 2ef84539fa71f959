"""Property: whatever is wrong with an input file, the preprocessing either succeeds or stops with
one sentence (never a traceback), and what an earlier run wrote is left as it was.

Hypothesis mutates valid sample inputs: wrong types, nulls, NaN and infinity, empty files,
duplicate keys, renamed or missing columns, other encodings and delimiters.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustering.dagster.definitions import create_definitions
from clustering.io.duckdb_store import DuckDBStore
from clustering.sample.files import write_sample_data

pytestmark = pytest.mark.slow

INPUTS = {
    "internal_sales": ["SKU_NBR", "STORE_NBR", "CAT_DSC", "TOTAL_SALES"],
    "need_state": ["PRODUCT_ID", "CATEGORY", "NEED_STATE", "CDT"],
    "external_sales": ["STORE_NBR", "POP_DENSITY", "MEDIAN_INCOME", "REGION"],
}
BAD_VALUES = [None, np.nan, np.inf, -1.0, "abc", "", "1.5", " 7 "]


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("originals")
    write_sample_data(folder, preset="small", stores=40, categories=2, seed=5)
    return {
        "internal_sales": pd.read_parquet(folder / "internal_sales.parquet"),
        "need_state": pd.read_csv(folder / "need_state.csv"),
        "external_sales": pd.read_parquet(folder / "external_sales.parquet"),
    }


@st.composite
def mutation(draw: st.DrawFn) -> dict[str, object]:
    return {
        "input": draw(st.sampled_from(sorted(INPUTS))),
        "kind": draw(
            st.sampled_from(
                ["value", "drop_column", "empty", "duplicate", "rename", "encoding", "type"]
            )
        ),
        "column": draw(st.integers(0, 3)),
        "row": draw(st.integers(0, 30)),
        "value": draw(st.sampled_from(range(len(BAD_VALUES)))),
        "format": draw(st.sampled_from(["parquet", "csv", "csv;", "csv-latin1", "csv-bom"])),
    }


def _mutate(frame: pd.DataFrame, columns: list[str], change: dict[str, object]) -> pd.DataFrame:
    column = columns[int(change["column"])]  # type: ignore[call-overload]
    row = int(change["row"]) % len(frame)  # type: ignore[call-overload]
    kind = change["kind"]
    frame = frame.copy()
    if kind == "value":
        frame[column] = frame[column].astype(object)
        frame.iloc[row, frame.columns.get_loc(column)] = BAD_VALUES[int(change["value"])]  # type: ignore[call-overload]
    elif kind == "drop_column":
        frame = frame.drop(columns=[column])
    elif kind == "empty":
        frame = frame.iloc[0:0]
    elif kind == "duplicate":
        frame = pd.concat([frame, frame.iloc[[row]].assign(**{column: frame[column].iloc[0]})])
    elif kind == "rename":
        frame = frame.rename(columns={column: f"  {column.lower()} "})
    elif kind == "type":
        frame[column] = frame[column].astype(str) + ".0"
    return frame


def _write(frame: pd.DataFrame, target: Path, file_format: str) -> Path:
    if file_format == "parquet":
        path = target.with_suffix(".parquet")
        try:
            frame.to_parquet(path, index=False)
            return path
        except (ValueError, TypeError):  # a mixed column Parquet cannot hold: a CSV can
            path.unlink(missing_ok=True)
    path = target.with_suffix(".csv")
    separator = ";" if file_format == "csv;" else ","
    encoding = {"csv-latin1": "latin-1", "csv-bom": "utf-8-sig"}.get(file_format, "utf-8")
    frame.to_csv(path, index=False, sep=separator, encoding=encoding, errors="replace")
    return path


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(change=mutation())
def test_bad_inputs_succeed_or_stop_with_one_sentence(
    change: dict[str, object],
    originals: dict[str, pd.DataFrame],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("project")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for name, frame in originals.items():
        if name == change["input"]:
            frame = _mutate(frame, INPUTS[name], change)
            _write(frame, raw / name, str(change["format"]))
        else:
            _write(frame, raw / name, "parquet" if name != "need_state" else "csv")
    # An earlier run's result that nothing here may touch.
    store = DuckDBStore(root / "outputs" / "clustering_dev.duckdb")
    earlier = pd.DataFrame({"STORE_NBR": [1], "CATEGORY": ["X"]})
    store.write_table("merging", "final_store_clusters", earlier)

    defs = create_definitions("dev", project_root=root)
    for job in ["internal_preprocessing_job", "external_preprocessing_job"]:
        result = defs.resolve_job_def(job).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
        )
        for event in result.all_events:
            if event.event_type_value != "STEP_FAILURE":
                continue
            data = event.step_failure_data
            described = data.user_failure_data.description if data.user_failure_data else None
            error = data.error.message if data.error else ""
            # A user's mistake is a dagster.Failure carrying one sentence, nothing else.
            assert described, f"{change}: not one sentence but {error[:500]}"
            assert "\n" not in described.strip() and "Traceback" not in described, change
            assert described.startswith(
                ("internal sales", "need-state map", "external features", "data quality")
            ), f"{change}: {described}"
    pd.testing.assert_frame_equal(store.read_table("merging", "final_store_clusters"), earlier)
    shutil.rmtree(root, ignore_errors=True)

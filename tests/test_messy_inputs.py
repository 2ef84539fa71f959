"""Real-world inputs as a retailer hands them over, and the sentences a user gets for bad ones.

One retailer folder in the shape that needed five attempts before: sales as CSV, the map, and a
folder of three vendor CSVs (a UTF-8 byte-order mark, names with spaces and digits, leading
spaces, ``ZIP_CD``, coordinates in two files with equal values, a text column that differs
between two rows of one store). It runs as it is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from clustering.dagster.definitions import create_definitions

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clustering", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _vendor_folder(small_data: Path, folder: Path) -> Path:
    """The small sample rewritten the way three vendors and a warehouse export deliver it."""
    folder.mkdir()
    pd.read_parquet(small_data / "internal_sales.parquet").to_csv(
        folder / "internal_sales.csv", index=False
    )
    (folder / "need_state.csv").write_bytes((small_data / "need_state.csv").read_bytes())
    external = pd.read_parquet(small_data / "external_sales.parquet")
    vendors = folder / "external_sales"
    vendors.mkdir()
    rng = np.random.default_rng(0)
    stores = external["STORE_NBR"]
    coordinates = pd.DataFrame(
        {
            "LATITUDE": rng.uniform(30, 45, len(stores)),
            "LONGITUDE": rng.uniform(-120, -75, len(stores)),
        }
    ).round(4)
    demographics = external[["STORE_NBR", "POP_DENSITY", "MEDIAN_INCOME", "PCT_SENIOR"]].rename(
        columns={"PCT_SENIOR": "2024 Pct Senior", "STORE_NBR": " store_nbr"}
    )
    demographics.insert(1, "CVS ID", np.arange(len(stores)) + 5000)
    demographics = pd.concat([demographics, coordinates], axis=1)
    # A byte-order mark before the first column name, as spreadsheet exports write it.
    (vendors / "demographics.csv").write_bytes(
        "\ufeff".encode() + demographics.to_csv(index=False).encode()
    )
    # SELLING_SQ_FT is also in the traffic file, with the same values.
    competition = external[
        ["STORE_NBR", "COMPETITOR_COUNT_1MI", "COMPETITOR_COUNT_5MI", "SELLING_SQ_FT"]
    ].copy()
    competition["ZIP_CD"] = 10_000 + np.arange(len(stores))
    competition = pd.concat([competition, coordinates], axis=1)  # equal to the demographics'
    competition["MANAGER"] = "A. Smith"
    # One store listed twice, differing only in the manager's name (left out anyway).
    twice = competition.iloc[[0]].assign(MANAGER="Alex Smith")
    pd.concat([competition, twice]).to_csv(vendors / "competition.csv", index=False)
    traffic = external.drop(
        columns=["POP_DENSITY", "MEDIAN_INCOME", "PCT_SENIOR", "COMPETITOR_COUNT_1MI"]
    ).drop(columns=["COMPETITOR_COUNT_5MI"])
    traffic.columns = [f"  {c}" if c != "STORE_NBR" else c for c in traffic.columns]
    traffic.to_csv(vendors / "traffic.csv", index=False)
    return folder


@pytest.mark.slow
def test_a_retailers_vendor_folder_runs_as_it_is(small_data: Path, tmp_path: Path) -> None:
    raw = _vendor_folder(small_data, tmp_path / "retailer")
    out = tmp_path / "out"
    done = _cli("cluster", "--raw-dir", str(raw), "--out", str(out), "--workers", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    text = done.stdout
    assert "External features: 12 from 3 source(s)" in text
    for left_out in [
        "CVS ID (identifier)",
        "ZIP_CD (identifier)",
        "LATITUDE (coordinates)",
        "LONGITUDE (coordinates)",
        "MANAGER (text)",
        "STORE_NAME (text)",
    ]:
        assert left_out in text, left_out
    assert "SELLING_SQ_FT is in several sources with the same values; merged." in text
    assert "1 store has several rows (equal in every feature, different only in columns" in text
    assert "check data_quality on external_store_features did not pass" in text
    final = pd.read_parquet(out / "final_store_clusters.parquet")
    expected = pd.read_parquet(small_data / "internal_sales.parquet")
    assert len(final) == expected.groupby("CAT_DSC")["STORE_NBR"].nunique().sum()
    features = pd.read_csv(out / "external_models.csv")
    assert features["chosen"].sum() == 1


def test_generate_data_if_missing_uses_csv_inputs_and_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "internal_sales.csv").write_text("SKU_NBR,STORE_NBR,CAT_DSC,TOTAL_SALES\n")
    done = _cli("generate-data", "--out", str(tmp_path), "--if-missing")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {tmp_path} holds internal_sales.csv but no need_state or external_sales; add "
        "the missing inputs, or empty the folder to get the sample data."
    )
    (tmp_path / "need_state.parquet").write_bytes(b"")
    (tmp_path / "external_sales").mkdir()
    done = _cli("generate-data", "--out", str(tmp_path), "--if-missing")
    assert done.returncode == 0
    assert done.stdout.startswith(f"Using the inputs in {tmp_path}: ")
    assert (
        tmp_path / "internal_sales.csv"
    ).read_text() == "SKU_NBR,STORE_NBR,CAT_DSC,TOTAL_SALES\n"


# --- data quality through the preprocessing job ----------------------------------------------


def _preprocess(small_data: Path, root: Path, map_frame: pd.DataFrame) -> dg.ExecuteInProcessResult:
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "internal_sales.parquet").write_bytes(
        (small_data / "internal_sales.parquet").read_bytes()
    )
    map_frame.to_csv(raw / "need_state.csv", index=False)
    defs = create_definitions("dev", project_root=root)
    return defs.resolve_job_def("internal_preprocessing_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def _failure(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failures[0].step_failure_data
    assert data.user_failure_data is not None
    return str(data.user_failure_data.description)


@pytest.fixture
def need_states(small_data: Path) -> pd.DataFrame:
    return pd.read_csv(small_data / "need_state.csv")


def test_a_map_for_other_products_is_one_sentence(
    small_data: Path, tmp_path: Path, need_states: pd.DataFrame, clean_clustering_env: None
) -> None:
    result = _preprocess(
        small_data, tmp_path, need_states.assign(PRODUCT_ID=need_states["PRODUCT_ID"] % 1000)
    )
    assert not result.success
    sentence = _failure(result)
    assert sentence.startswith(f"need-state map '{tmp_path / 'data/raw/need_state.csv'}': none of ")
    assert "PRODUCT_IDs matches a SKU_NBR of the sales (the map's ids look like " in sentence
    assert sentence.endswith("check that the map belongs to these sales.")


def test_most_sales_unmapped_stops_and_some_unmapped_warns(
    small_data: Path, tmp_path: Path, need_states: pd.DataFrame, clean_clustering_env: None
) -> None:
    products = sorted(need_states["PRODUCT_ID"].unique())
    mostly_gone = need_states[need_states["PRODUCT_ID"].isin(products[: len(products) // 6])]
    result = _preprocess(small_data, tmp_path / "a", mostly_gone)
    assert not result.success
    sentence = _failure(result)
    assert sentence.startswith("data quality: ")
    assert "of the sales" in sentence and "stop above 50%" in sentence

    some_gone = need_states[~need_states["PRODUCT_ID"].isin(products[:12])]
    result = _preprocess(small_data, tmp_path / "b", some_gone)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "belong to SKUs missing from the need-state map (warning above 5%)" in (
        check.description or ""
    )


def test_a_map_putting_skus_in_other_categories_warns(
    small_data: Path, tmp_path: Path, need_states: pd.DataFrame, clean_clustering_env: None
) -> None:
    wrong = need_states.copy()
    first = wrong["CATEGORY"].iloc[0]
    wrong.loc[wrong["CATEGORY"] == first, "CATEGORY"] = "SOMETHING ELSE"
    result = _preprocess(small_data, tmp_path, wrong)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert "are sold in another category than the need-state map gives them" in (
        check.description or ""
    )
    assert f"sales '{first}', map 'SOMETHING ELSE'" in (check.description or "")

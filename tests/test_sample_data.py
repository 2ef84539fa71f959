"""The sample data generator: contracts, determinism, quirks and recoverable planted structure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from clustering.core.errors import ConfigError
from clustering.sample.files import SampleDataReport, write_sample_data
from clustering.sample.generator import (
    PRESETS,
    SamplePreset,
    category_names,
    category_sales,
    category_shares,
    generate_sample_data,
    plan_sample_data,
    resolve_preset,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_ROOT / "scripts" / "generate_sample_data.py"
_ID_COLUMNS = ("STORE_NAME", "REGION", "DISTRICT_ID")
UNKNOWN_PRESET = "unknown preset 'huge'; expected one of: small, medium, large, xlarge."


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SampleDataReport:
    """The small preset written once for the whole module."""
    return write_sample_data(tmp_path_factory.mktemp("small"), preset="small", seed=0)


def _read(report: SampleDataReport) -> dict[str, pd.DataFrame]:
    out, truth = report.out_dir, report.truth_dir
    return {
        "sales": pd.read_parquet(out / "internal_sales.parquet"),
        "map": pd.read_csv(out / "need_state.csv"),
        "external": pd.read_parquet(out / "external_sales.parquet"),
        "internal_truth": pd.read_parquet(truth / "internal_truth.parquet"),
        "external_truth": pd.read_parquet(truth / "external_truth.parquet"),
    }


def _truth_json(report: SampleDataReport) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((report.truth_dir / "truth.json").read_text())
    return loaded


def _need_state_shares(sales: pd.DataFrame, need_states: pd.DataFrame) -> pd.DataFrame:
    """% of each store's mapped category sales per need state (dual SKUs split evenly)."""
    mapping = need_states[["PRODUCT_ID", "CATEGORY", "NEED_STATE"]].copy()
    mapping["WEIGHT"] = 1.0 / mapping.groupby("PRODUCT_ID")["PRODUCT_ID"].transform("size")
    joined = sales.merge(
        mapping, left_on=["SKU_NBR", "CAT_DSC"], right_on=["PRODUCT_ID", "CATEGORY"]
    )
    joined["SALES"] = joined["TOTAL_SALES"] * joined["WEIGHT"]
    by_state = joined.groupby(["CATEGORY", "STORE_NBR", "NEED_STATE"])["SALES"].sum()
    store_total = by_state.groupby(level=["CATEGORY", "STORE_NBR"]).transform("sum")
    return (100.0 * by_state / store_total).rename("SHARE").reset_index()


def test_files_follow_the_data_contracts(small: SampleDataReport) -> None:
    out = small.out_dir
    assert {p.name for p in small.files} == {
        "internal_sales.parquet",
        "need_state.csv",
        "external_sales.parquet",
        "internal_truth.parquet",
        "external_truth.parquet",
        "truth.json",
    }
    sales_schema = pq.read_schema(out / "internal_sales.parquet")
    assert [(f.name, str(f.type)) for f in sales_schema] == [
        ("SKU_NBR", "int64"),
        ("STORE_NBR", "int64"),
        ("CAT_DSC", "string"),
        ("TOTAL_SALES", "double"),
    ]
    data = _read(small)
    assert (data["sales"]["TOTAL_SALES"] >= 0).all()
    assert len(data["sales"]) == small.sales_rows

    need_states = data["map"]
    assert list(need_states.columns[:4]) == ["PRODUCT_ID", "CATEGORY", "NEED_STATE", "CDT"]
    assert {f"ATTRIBUTE_{i}" for i in range(1, 7)} <= set(need_states.columns)
    assert {"PLANOGRAM_DSC", "PLANOGRAM_NBR", "NEW_ITEM", "TO_BE_DROPPED"} <= set(
        need_states.columns
    )
    assert need_states["PRODUCT_ID"].dtype == np.int64
    assert need_states["NEED_STATE"].str.upper().equals(need_states["NEED_STATE"])

    external = data["external"]
    assert external["STORE_NBR"].dtype == np.int64
    assert external["DISTRICT_ID"].dtype == np.int64
    assert pd.api.types.is_string_dtype(external["STORE_NAME"])
    assert pd.api.types.is_string_dtype(external["REGION"])
    features = [c for c in external.columns if c not in {"STORE_NBR", *_ID_COLUMNS}]
    assert len(features) >= 10
    assert all(external[c].dtype == np.float64 for c in features)
    assert {"POP_DENSITY", "MEDIAN_INCOME", "SELLING_SQ_FT", "COMPETITOR_COUNT_1MI"} <= set(
        features
    )

    assert list(data["internal_truth"].columns) == ["STORE_NBR", "CATEGORY", "STORE_TYPE"]
    assert list(data["external_truth"].columns) == ["STORE_NBR", "STORE_TYPE"]
    truth = _truth_json(small)
    assert truth["external_k"] == 4
    assert set(truth["internal_k"]) == set(data["sales"]["CAT_DSC"])


def test_small_preset_sizes_and_planted_type_shares(small: SampleDataReport) -> None:
    data = _read(small)
    assert (small.stores, small.categories) == (200, 4)
    assert data["sales"]["STORE_NBR"].nunique() == 200
    assert data["sales"]["CAT_DSC"].nunique() == 4
    truth = _truth_json(small)
    internal_k = truth["internal_k"]
    for category, group in data["internal_truth"].groupby("CATEGORY"):
        shares = group["STORE_TYPE"].value_counts(normalize=True)
        assert len(shares) == internal_k[category] and 3 <= len(shares) <= 5
        assert shares.min() >= 0.15, category
    external_shares = data["external_truth"]["STORE_TYPE"].value_counts(normalize=True)
    assert len(external_shares) == 4 and external_shares.min() >= 0.15


def test_every_store_has_mapped_sales_in_every_category(small: SampleDataReport) -> None:
    data = _read(small)
    mapped = data["sales"].merge(
        data["map"][["PRODUCT_ID", "CATEGORY"]].drop_duplicates(),
        left_on=["SKU_NBR", "CAT_DSC"],
        right_on=["PRODUCT_ID", "CATEGORY"],
    )
    totals = mapped.groupby(["CAT_DSC", "STORE_NBR"])["TOTAL_SALES"].sum()
    assert len(totals) == small.stores * small.categories
    assert (totals > 0).all()


def test_realistic_quirks_are_present(small: SampleDataReport) -> None:
    data = _read(small)
    sales, need_states, external = data["sales"], data["map"], data["external"]
    truth = _truth_json(small)
    quirks = truth["quirks"]

    stores = np.sort(sales["STORE_NBR"].unique())
    assert stores.min() >= 1000 and (np.diff(stores) > 1).any()  # sparse store numbers
    assert any(set(name) & set("&/-") for name in sales["CAT_DSC"].unique())
    assert any(" " in name for name in sales["CAT_DSC"].unique())

    # SKUs mapped to two need states: exactly the ones listed in truth.json, in every category.
    rows_per_sku = need_states.groupby("PRODUCT_ID")["NEED_STATE"].nunique()
    dual = set(rows_per_sku[rows_per_sku == 2].index)
    listed_dual = {sku for skus in quirks["dual_need_state_skus"].values() for sku in skus}
    assert dual == listed_dual and all(quirks["dual_need_state_skus"].values())
    assert dual <= set(sales["SKU_NBR"])

    unmapped = set(sales["SKU_NBR"]) - set(need_states["PRODUCT_ID"])
    assert unmapped == {sku for skus in quirks["unmapped_skus"].values() for sku in skus}
    unmapped_share = sales.loc[sales["SKU_NBR"].isin(unmapped), "TOTAL_SALES"].sum()
    assert 0 < unmapped_share / sales["TOTAL_SALES"].sum() < 0.01

    assert sales.duplicated(["STORE_NBR", "SKU_NBR"]).any()

    missing = set(stores) - set(external["STORE_NBR"])
    assert missing == set(quirks["stores_missing_external"])
    assert 0.01 <= len(missing) / len(stores) <= 0.05
    assert external["STORE_NBR"].is_unique
    features = external.drop(columns=["STORE_NBR", *_ID_COLUMNS])
    assert 0.01 <= features.isna().to_numpy().mean() <= 0.03
    assert external["STORE_NAME"].notna().all() and external["REGION"].notna().all()


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    reports = [
        write_sample_data(tmp_path / name, seed=seed, stores=40, categories=2)
        for name, seed in [("a", 7), ("b", 7), ("c", 8)]
    ]
    first, again, other = ([p.read_bytes() for p in r.files] for r in reports)
    assert first == again
    assert all(x != y for x, y in zip(first, other, strict=True))


def test_same_seed_gives_identical_frames_in_memory() -> None:
    first, again = (generate_sample_data("small", seed=3, categories=2) for _ in range(2))
    pd.testing.assert_frame_equal(first.internal_sales, again.internal_sales)
    pd.testing.assert_frame_equal(first.need_state_map, again.need_state_map)
    pd.testing.assert_frame_equal(first.external_features, again.external_features)
    other = generate_sample_data("small", seed=4, categories=2)
    assert not first.internal_sales.equals(other.internal_sales)


def test_unknown_preset_is_a_config_error_with_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_preset("huge")
    assert str(raised.value) == UNKNOWN_PRESET
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        write_sample_data(tmp_path / "out", preset="huge")
    assert not (tmp_path / "out").exists()


def test_store_and_category_overrides(tmp_path: Path) -> None:
    assert resolve_preset("medium") == PRESETS["medium"] == SamplePreset("medium", 2_000, 20)
    assert resolve_preset("large", stores=300, categories=7) == SamplePreset("large", 300, 7)
    with pytest.raises(ConfigError, match="stores must be at least"):
        resolve_preset("small", stores=3)
    report = write_sample_data(tmp_path, stores=60, categories=6, seed=1)
    sales = pd.read_parquet(tmp_path / "internal_sales.parquet")
    assert (report.stores, report.categories) == (60, 6)
    assert sales["STORE_NBR"].nunique() == 60
    assert sales["CAT_DSC"].nunique() == 6


def test_category_names_are_unique_for_any_count() -> None:
    names = category_names(500)
    assert len(set(names)) == 500
    assert category_names(100) == names[:100]
    assert {"CANDY/SNACKS", "HEALTH & WELLNESS", "ANTI-AGING SKIN CARE"} <= set(names[:4])


def test_interrupted_run_leaves_no_partial_file(tmp_path: Path) -> None:
    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_sample_data(tmp_path, stores=40, categories=3, progress=interrupt)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_planted_internal_types_are_recovered_by_kmeans(small: SampleDataReport) -> None:
    data = _read(small)
    shares = _need_state_shares(data["sales"], data["map"])
    truth = _truth_json(small)
    internal_k = truth["internal_k"]
    for category, k in internal_k.items():
        matrix = (
            shares[shares["CATEGORY"] == category]
            .pivot(index="STORE_NBR", columns="NEED_STATE", values="SHARE")
            .fillna(0.0)
        )
        assert len(matrix) == small.stores
        expected = (
            data["internal_truth"]
            .query("CATEGORY == @category")
            .set_index("STORE_NBR")
            .loc[matrix.index, "STORE_TYPE"]
        )
        scaled = StandardScaler().fit_transform(matrix)
        labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(scaled)
        assert adjusted_rand_score(expected, labels) >= 0.9, category


def test_planted_external_types_are_recovered_by_kmeans(small: SampleDataReport) -> None:
    data = _read(small)
    external = data["external"]
    features = external.drop(columns=["STORE_NBR", *_ID_COLUMNS])
    scaled = StandardScaler().fit_transform(features.fillna(features.median()))
    labels = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(scaled)
    expected = data["external_truth"].set_index("STORE_NBR").loc[external["STORE_NBR"]]
    assert adjusted_rand_score(expected["STORE_TYPE"], labels) >= 0.95


def test_script_writes_the_three_inputs(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "small", "--out", str(out), "--categories", "2"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in ("internal_sales.parquet", "need_state.csv", "external_sales.parquet"):
        assert (out / name).is_file(), name
    assert (out / "truth" / "truth.json").is_file()
    assert "categories 2/2 written" in done.stdout


def test_script_rejects_an_unknown_preset_in_one_sentence(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "huge", "--out", str(tmp_path / "raw")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert UNKNOWN_PRESET in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "raw").exists()


def test_difficulty_ladder_plants_unequal_types_leaning_and_noise_stores(tmp_path: Path) -> None:
    report = write_sample_data(tmp_path, stores=600, categories=4, seed=2, difficulty="moderate")
    truth = json.loads((report.truth_dir / "truth.json").read_text())
    assert truth["difficulty"] == "moderate"
    assert all(2 <= k <= 8 for k in truth["internal_k"].values())
    assert all(n > 0 for n in truth["quirks"]["noise_stores"].values())
    types = pd.read_parquet(report.truth_dir / "internal_truth.parquet")
    noise = types[types["STORE_TYPE"] == -1]
    assert len(noise) == sum(truth["quirks"]["noise_stores"].values())
    sizes = types[types["STORE_TYPE"] >= 0].groupby(["CATEGORY", "STORE_TYPE"]).size()
    assert sizes.min() >= 30
    assert (sizes.groupby("CATEGORY").max() > 1.5 * sizes.groupby("CATEGORY").min()).any()


def test_ladder_shares_are_what_the_sales_aggregate_to() -> None:
    plan = plan_sample_data(resolve_preset("small", stores=60, categories=1), 1, "clear")
    category = plan.categories[0]
    sales = category_sales(plan, category).to_pandas()
    sku_state = dict(zip(category.sku_nbrs, category.sku_need_state, strict=True))
    sales = sales[sales["SKU_NBR"].isin(sku_state)]
    sales["NEED_STATE"] = sales["SKU_NBR"].map(sku_state)
    totals = sales.pivot_table(
        index="STORE_NBR", columns="NEED_STATE", values="TOTAL_SALES", aggfunc="sum"
    )
    shares = 100 * totals.div(totals.sum(axis=1), axis=0)
    expected = category_shares(plan, category)
    # Dual-need-state SKUs sell little; the shares agree to a fraction of a point.
    assert np.abs(shares.to_numpy() - expected.to_numpy()).max() < 1.0


def test_unknown_difficulty_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown difficulty 'hard'; expected one of: classic"):
        write_sample_data(tmp_path, difficulty="hard")

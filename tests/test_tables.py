"""Stage tables round-trip by key: what is stored in the warehouse comes back the same."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from clustering.core.engine import cluster_feature_table
from clustering.core.params import ClusteringParams, FeatureParams
from clustering.core.tables import (
    FEATURE_SCHEMA,
    assignment_table,
    centroid_table,
    chosen_models,
    feature_rows,
    frames_from_table,
    labels_from_table,
    missing_or_extra_stores,
    model_table,
    profile_table,
    smallest_groups,
    wide_matrix,
)


def _frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    first = pd.DataFrame(
        rng.normal(size=(60, 3)),
        index=pd.Index(rng.choice(10_000, 60, replace=False), name="STORE_NBR"),
        columns=["ZETA", "ALPHA", "MID"],
    )
    second = pd.DataFrame(rng.normal(size=(8, 2)), index=pd.Index(range(8)), columns=["A", "B"])
    return {"CANDY/SNACKS": first, "HEALTH & WELLNESS": second}


def _clustered() -> dict[str, object]:
    frames = _frames()
    frames["CANDY/SNACKS"].iloc[0, 0] = 50.0  # an outlier
    params = ClusteringParams(max_k=4, min_cluster_size=5)
    return {
        name: cluster_feature_table(name, frame, FeatureParams(), params)
        for name, frame in frames.items()
    }


def test_feature_rows_come_back_as_the_matrices_with_outliers_flagged() -> None:
    clustered = _clustered()
    pieces = [feature_rows(name, item) for name, item in sorted(clustered.items())]  # type: ignore[arg-type]
    assert all(piece.schema == FEATURE_SCHEMA for piece in pieces)
    table = pa.concat_tables(pieces).to_pandas()
    flagged = table[table["OUTLIER"]]
    assert set(flagged["CATEGORY"]) == {"CANDY/SNACKS"}
    back = frames_from_table(table)
    for name, item in clustered.items():
        expected = item.features.matrix.sort_index()  # type: ignore[attr-defined]
        assert list(back[name].columns) == list(expected.columns)
        np.testing.assert_allclose(back[name].to_numpy(), expected.to_numpy())
        outliers = item.features.outliers  # type: ignore[attr-defined]
        stores = set(flagged.loc[flagged["CATEGORY"] == name, "STORE_NBR"])
        assert stores == set(outliers.index[outliers.to_numpy(dtype=bool)])


def test_models_assignments_centroids_and_profiles_are_keyed_tables() -> None:
    clustered = _clustered()
    models = model_table(clustered)  # type: ignore[arg-type]
    chosen = chosen_models(models)
    assert set(chosen.index) == {"CANDY/SNACKS", "HEALTH & WELLNESS"}
    # 8 stores cannot form two clusters of 5: the fallback k = 1 is on the curve, chosen.
    assert int(chosen.loc["HEALTH & WELLNESS", "k"]) == 1
    assert chosen.loc["HEALTH & WELLNESS", "FALLBACK"].startswith("8 stores cannot form")

    assignments = assignment_table(clustered)  # type: ignore[arg-type]
    labels = labels_from_table(assignments)
    for name, item in clustered.items():
        pd.testing.assert_series_equal(
            labels[name],
            item.labels.sort_index(),  # type: ignore[attr-defined]
            check_names=False,
        )
    stores = {name: set(found.index) for name, found in labels.items()}
    assert missing_or_extra_stores(stores, assignments) == {}

    centroids = centroid_table(clustered)  # type: ignore[arg-type]
    k = int(chosen.loc["CANDY/SNACKS", "k"])
    candy = centroids[centroids["CATEGORY"] == "CANDY/SNACKS"]
    assert candy["CLUSTER"].nunique() == k

    profiles = profile_table(clustered)  # type: ignore[arg-type]
    sizes = profiles.drop_duplicates(["CATEGORY", "CLUSTER"]).set_index(["CATEGORY", "CLUSTER"])
    counted = assignments.groupby(["CATEGORY", "CLUSTER"]).size()
    assert (sizes["STORES"].sort_index() == counted.sort_index()).all()


def test_missing_duplicated_and_unexpected_stores_are_named() -> None:
    assignments = pd.DataFrame(
        {"CATEGORY": ["A", "A", "A", "B"], "STORE_NBR": [1, 1, 9, 5], "CLUSTER": [1, 1, 2, 1]}
    )
    problems = missing_or_extra_stores({"A": {1, 2}, "B": {5}}, assignments)
    assert problems == {"A": {"missing": [2], "unexpected": [9], "duplicated": [1]}}


def _reference_problems(
    expected: dict[str, set[int]], assignments: pd.DataFrame
) -> dict[str, dict[str, list[int]]]:
    """The coverage problems as a pandas group-by and set differences find them."""
    known = assignments.dropna(subset=["CATEGORY"])
    problems = {}
    for name in sorted(set(expected) | {str(c) for c in known["CATEGORY"]}):
        stores = known.loc[known["CATEGORY"] == name, "STORE_NBR"]
        counts = stores.value_counts()
        wanted = expected.get(name, set())
        issue = {
            "missing": sorted(wanted - set(stores))[:10],
            "unexpected": sorted(set(stores) - wanted)[:10],
            "duplicated": sorted(int(s) for s in counts[counts > 1].index)[:10],
        }
        if any(issue.values()):
            problems[name] = issue
    return problems


@pytest.mark.parametrize("stores_apart", [1, 2**53])  # store numbers near and far apart
@pytest.mark.parametrize("text", ["object", "string[pyarrow]"])
def test_coverage_problems_match_a_plain_group_by(stores_apart: int, text: str) -> None:
    rng = np.random.default_rng(11)
    categories = np.array(["B", "A", "C", "D"], dtype=object)
    rows = pd.DataFrame(
        {
            "CATEGORY": rng.choice(categories, size=3_000),
            "STORE_NBR": rng.integers(0, 400, size=3_000) * stores_apart - 7,
        }
    )
    rows.loc[rng.choice(3_000, 20, replace=False), "CATEGORY"] = None  # left out
    rows["CATEGORY"] = rows["CATEGORY"].astype(text)
    expected = {
        str(c): {int(s) * stores_apart - 7 for s in rng.choice(400, 350, replace=False)}
        for c in ["A", "B", "C", "E"]  # E has no row; D is not expected
    }
    found = missing_or_extra_stores(expected, rows)
    assert found == _reference_problems(expected, rows)
    assert set(found) == {"A", "B", "C", "D", "E"} and found["A"]["duplicated"]
    exact = rows.dropna().drop_duplicates(["CATEGORY", "STORE_NBR"])
    stores = {str(c): set(group) for c, group in exact.groupby("CATEGORY")["STORE_NBR"]}
    assert missing_or_extra_stores(stores, exact.sample(frac=1, random_state=0)) == {}


def test_smallest_groups_are_the_smallest_cluster_of_each_category() -> None:
    rng = np.random.default_rng(12)
    final = pd.DataFrame(
        {
            "CATEGORY": rng.choice(["SNACKS", "BEER", "WINE"], size=2_000),
            "REBALANCED_CLUSTER": rng.choice(["I1", "I2-E1", "I2-E3", "I3"], size=2_000),
        }
    ).astype("string[pyarrow]")
    final.loc[final.index[:40], "REBALANCED_CLUSTER"] = None  # left out, as group-by does
    expected = final.groupby(["CATEGORY", "REBALANCED_CLUSTER"]).size().groupby("CATEGORY").min()
    assert smallest_groups(final, "REBALANCED_CLUSTER") == {
        str(name): int(size) for name, size in expected.items()
    }
    one = pd.DataFrame({"CATEGORY": ["A", "A", "A", "B"], "CLUSTER": [1, 1, 2, 1]})
    assert smallest_groups(one, "CLUSTER") == {"A": 1, "B": 1}


@pytest.mark.parametrize("order", ["shuffled", "by store"])
def test_wide_matrix_of_one_category_equals_the_pivot_of_the_long_table(order: str) -> None:
    rng = np.random.default_rng(3)
    long = pd.DataFrame(
        {
            "CATEGORY": "SNACKS",
            "STORE_NBR": np.repeat(np.arange(160, 100, -1), 3),
            "FEATURE": np.tile(np.array(["SHARE_B", "SHARE_A", "SHARE_C"], dtype=object), 60),
            "VALUE": rng.normal(size=180),
        }
    ).iloc[:-1]  # one store lacks a feature: NaN, as the pivot gives
    if order == "shuffled":
        long = long.iloc[rng.permutation(len(long))].reset_index(drop=True)
    else:  # as the pipeline writes it: stores in order (numbered where they change)
        long = long.sort_values("STORE_NBR", kind="stable").reset_index(drop=True)
    expected = frames_from_table(long)["SNACKS"]
    rows = pa.Table.from_pandas(long[["STORE_NBR", "FEATURE", "VALUE"]], preserve_index=False)
    # Arrow batches as the warehouse hands them: the feature codes must span the chunks.
    found = wide_matrix(pa.Table.from_batches(rows.to_batches(max_chunksize=50)))
    pd.testing.assert_frame_equal(found, expected)

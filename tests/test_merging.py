"""Final clusters from internal and external clusters, on hand-built examples with known answers."""

import numpy as np
import pandas as pd
import pytest

from clustering.core.merging import (
    FINAL_COLUMNS,
    OUTCOME_INTERNAL_FALLBACK,
    OUTCOME_SPLIT,
    OUTCOME_TOO_SMALL,
    OUTCOME_UNSPLIT,
    balanced_space,
    demand_labels,
    merge_category,
)
from clustering.core.params import MergingParams


def _index(stores: list[int] | range) -> pd.Index:
    return pd.Index(list(stores), name="STORE_NBR")


def _category(
    internal: list[int], external: list[int | None], ext_points: list[float]
) -> tuple[pd.Series, pd.Series, pd.DataFrame, pd.DataFrame]:
    """A category whose stores 1..n have the given clusters; one external feature per store."""
    stores = _index(range(1, len(internal) + 1))
    internal_labels = pd.Series(internal, index=stores)
    has_ext = [i for i, e in enumerate(external) if e is not None]
    ext_index = stores[has_ext]
    external_labels = pd.Series([external[i] for i in has_ext], index=ext_index)
    external_matrix = pd.DataFrame({"x": [ext_points[i] for i in has_ext]}, index=ext_index)
    internal_matrix = pd.DataFrame({"share": [float(c) for c in internal]}, index=stores)
    return internal_labels, external_labels, internal_matrix, external_matrix


def test_internal_first_splits_only_where_every_part_is_large_enough() -> None:
    # Internal 1: 30 stores in E1 and 25 in E2 -> split. Internal 2: 40 in E1, 5 in E2 -> the 5
    # rejoin; with one part left the cluster stays whole.
    internal = [1] * 55 + [2] * 45
    external = [1] * 30 + [2] * 25 + [1] * 40 + [2] * 5
    points = [0.0] * 30 + [10.0] * 25 + [0.0] * 40 + [10.0] * 5
    frame, summary = merge_category(
        "SNACKS", *_category(internal, external, points), MergingParams(min_cluster_size=20)
    )
    final = frame.set_index("STORE_NBR")["REBALANCED_CLUSTER"]
    assert final.value_counts().to_dict() == {"I2": 45, "I1-E1": 30, "I1-E2": 25}
    assert summary.outcome == OUTCOME_SPLIT
    assert summary.final_clusters == 3
    assert summary.smallest_final_cluster == 25
    assert summary.homogeneity_internal == pytest.approx(1.0)
    assert summary.reassigned_stores == 0  # the 5 stayed in their (unsplit) internal cluster
    assert list(frame.columns) == FINAL_COLUMNS


def test_small_part_joins_the_nearest_part_of_the_same_internal_cluster() -> None:
    # Internal 1 has parts E1 (x=0), E2 (x=10) and a small E3 near E2 (x=8): E3 joins E2, never
    # internal 2's stores even though those sit at x=8 too.
    internal = [1] * 20 + [1] * 20 + [1] * 4 + [2] * 30
    external = [1] * 20 + [2] * 20 + [3] * 4 + [3] * 30
    points = [0.0] * 20 + [10.0] * 20 + [8.0] * 4 + [8.0] * 30
    frame, summary = merge_category(
        "SNACKS", *_category(internal, external, points), MergingParams(min_cluster_size=20)
    )
    final = frame.set_index("STORE_NBR")["REBALANCED_CLUSTER"]
    assert set(final.loc[41:44]) == {"I1-E2"}
    assert frame.set_index("STORE_NBR").loc[41:44, "REASSIGNED"].all()
    assert set(final.loc[45:]) == {"I2"}
    assert summary.reassigned_stores == 4
    assert summary.homogeneity_internal == pytest.approx(1.0)


def test_max_final_clusters_joins_the_closest_parts_of_one_internal_cluster() -> None:
    internal = [1] * 60
    external = [1] * 20 + [2] * 20 + [3] * 20
    points = [0.0] * 20 + [1.0] * 20 + [10.0] * 20
    frame, summary = merge_category(
        "SNACKS",
        *_category(internal, external, points),
        MergingParams(min_cluster_size=20, max_final_clusters=2),
    )
    assert frame["REBALANCED_CLUSTER"].value_counts().to_dict() == {"I1-E1+E2": 40, "I1-E3": 20}
    assert summary.final_clusters == 2


def test_category_smaller_than_the_minimum_forms_one_cluster_and_says_so() -> None:
    frame, summary = merge_category(
        "TINY", *_category([1, 1, 1], [1, 2, None], [0.0, 1.0, 0.0]), MergingParams()
    )
    assert set(frame["REBALANCED_CLUSTER"]) == {"I1"}
    assert summary.outcome == OUTCOME_TOO_SMALL
    assert "3 stores, fewer than min_cluster_size = 20" in summary.note
    assert summary.stores_without_external == 1


def test_stores_without_external_features_stay_in_their_internal_cluster() -> None:
    internal = [1] * 50 + [1] * 3
    external: list[int | None] = [1] * 25 + [2] * 25 + [None] * 3
    points = [0.0] * 25 + [10.0] * 25 + [0.0] * 3
    frame, summary = merge_category(
        "SNACKS", *_category(internal, external, points), MergingParams(min_cluster_size=20)
    )
    rows = frame.set_index("STORE_NBR")
    assert rows.loc[51:53, "EXTERNAL_CLUSTER"].isna().all()
    assert set(rows.loc[51:53, "REBALANCED_CLUSTER"]) <= {"I1-E1", "I1-E2"}
    assert rows.loc[51:53, "DEMAND_CLUSTER"].tolist() == ["I1-NOEXT"] * 3
    assert summary.stores_without_external == 3


def test_nearest_centroid_folds_small_demand_clusters_and_keeps_its_labels() -> None:
    internal = [1] * 30 + [2] * 30 + [2] * 5
    external = [1] * 30 + [2] * 30 + [1] * 5
    points = [0.0] * 30 + [10.0] * 30 + [9.0] * 5
    frame, summary = merge_category(
        "SNACKS",
        *_category(internal, external, points),
        MergingParams(strategy="nearest_centroid", min_cluster_size=20),
    )
    rows = frame.set_index("STORE_NBR")
    assert rows.loc[61:65, "DEMAND_CLUSTER"].tolist() == ["I2-E1"] * 5
    assert set(rows.loc[61:65, "REBALANCED_CLUSTER"]) == {"I2-E2"}
    assert summary.outcome == OUTCOME_SPLIT
    assert summary.reassigned_stores == 5


def test_nearest_centroid_without_a_large_demand_cluster_falls_back_to_internal() -> None:
    internal = [1] * 20 + [2] * 20
    external = [1, 2, 3, 4] * 10
    frame, summary = merge_category(
        "SNACKS",
        *_category(internal, external, [float(e) for e in external]),
        MergingParams(strategy="nearest_centroid", min_cluster_size=20),
    )
    assert frame["REBALANCED_CLUSTER"].value_counts().to_dict() == {"I1": 20, "I2": 20}
    assert summary.outcome == OUTCOME_INTERNAL_FALLBACK
    assert summary.reassigned_stores == 0


def test_balanced_space_gives_both_blocks_the_same_weight() -> None:
    stores = _index(range(6))
    internal = pd.DataFrame({"a": [0.0, 1, 2, 3, 4, 5]}, index=stores)
    external = pd.DataFrame(
        np.random.default_rng(0).normal(size=(6, 12)) * 100, index=stores
    ).add_prefix("f")
    space = balanced_space(internal, external)
    internal_block = space.filter(like="INT:").var(ddof=0).sum()
    external_block = space.filter(like="EXT:").var(ddof=0).sum()
    assert internal_block == pytest.approx(1.0)
    assert external_block == pytest.approx(1.0)


def test_unsplit_category_and_shuffled_rows_give_the_same_result() -> None:
    internal = [1] * 25 + [2] * 25
    external = [1, 2] * 25
    parts = _category(internal, external, [float(e) for e in external])
    frame, summary = merge_category("SNACKS", *parts, MergingParams(min_cluster_size=20))
    assert summary.outcome == OUTCOME_UNSPLIT
    shuffled = tuple(p.sample(frac=1.0, random_state=1) for p in parts)
    again, _ = merge_category("SNACKS", *shuffled, MergingParams(min_cluster_size=20))  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(frame, again)


def test_demand_label_is_internal_times_external() -> None:
    internal = pd.Series([1, 2, 1], index=_index([5, 6, 7]))
    external = pd.Series([3, 3], index=_index([6, 5]))  # different order, store 7 missing
    labels = demand_labels(internal, external)
    assert labels.to_dict() == {5: "I1-E3", 6: "I2-E3", 7: "I1-NOEXT"}


def test_categories_merged_in_parallel_processes_give_the_same_final_table_and_models() -> None:
    from clustering.core.merging import MergedCategory, merge_categories

    rng = np.random.default_rng(3)
    labels, matrices = {}, {}
    for c, name in enumerate(["CANDY", "SNACKS", "SOUP"]):
        stores = _index(range(1, 121))
        labels[name] = pd.Series(rng.integers(1, 3 + c, len(stores)), index=stores)
        matrices[name] = pd.DataFrame({"a": rng.random(120), "b": rng.random(120)}, index=stores)
    external_labels = pd.Series(rng.integers(1, 4, 120), index=_index(range(1, 121)))
    external_matrix = pd.DataFrame({"x": rng.random(120)}, index=_index(range(1, 121)))
    params = MergingParams(min_cluster_size=10)
    runs = {}
    for workers in (1, 2):
        seen: list[str] = []
        models: dict[str, pd.DataFrame] = {}

        def each(name: str, merged: MergedCategory, seen=seen, models=models) -> None:
            seen.append(name)
            assert merged.model is not None
            models[name] = merged.model

        final, summaries = merge_categories(
            labels,
            matrices,
            external_labels,
            external_matrix,
            params,
            with_models=True,
            each=each,
            workers=workers,
        )
        assert sorted(seen) == ["CANDY", "SNACKS", "SOUP"]
        runs[workers] = (final, summaries, models)
    sequential, parallel = runs[1], runs[2]
    pd.testing.assert_frame_equal(sequential[0], parallel[0])
    assert sequential[1] == parallel[1]
    assert sorted(parallel[0]["CATEGORY"].unique()) == ["CANDY", "SNACKS", "SOUP"]
    for name in labels:
        pd.testing.assert_frame_equal(sequential[2][name], parallel[2][name])
        assert list(parallel[2][name]["CATEGORY"]) == [name]

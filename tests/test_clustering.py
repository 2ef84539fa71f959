"""Choosing k and clustering: planted structure found, minimum size honoured, fallbacks stated."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from clustering.core.clustering import (
    adjusted_rand,
    choose_k,
    neighbour_reach,
    selection_scores,
    silhouettes_precomputed,
    sparse_store_mask,
    squared_distances,
)
from clustering.core.features import engineer_features
from clustering.core.merging import merge_category
from clustering.core.params import ClusteringParams, PipelineParams


def _blobs(
    n: int, centers: int, seed: int = 0, std: float = 1.0
) -> tuple[pd.DataFrame, np.ndarray]:
    values, truth = make_blobs(
        n_samples=n, centers=centers, n_features=5, cluster_std=std, random_state=seed
    )
    stores = pd.Index(
        np.random.default_rng(seed).choice(90_000, n, replace=False), name="STORE_NBR"
    )
    return pd.DataFrame(values, index=stores), truth


@pytest.mark.parametrize("algorithm", ["kmeans", "gmm", "ward"])
def test_planted_clusters_recovered(algorithm: str) -> None:
    frame, truth = _blobs(400, 5)
    result = choose_k(frame, ClusteringParams(algorithm=algorithm, max_k=8))
    assert result.k == 5
    assert adjusted_rand_score(truth, result.labels.to_numpy()) > 0.95
    assert set(result.labels.unique()) == {1, 2, 3, 4, 5}
    assert list(result.labels.index) == list(frame.index)


def test_k_curve_is_kept_as_evidence() -> None:
    frame, _ = _blobs(300, 3)
    result = choose_k(frame, ClusteringParams(min_k=2, max_k=6))
    curve = result.k_curve
    assert list(curve["k"]) == [2, 3, 4, 5, 6]
    assert curve["chosen"].sum() == 1
    assert int(curve.loc[curve["chosen"], "k"].iloc[0]) == result.k
    assert curve[["silhouette", "calinski_harabasz", "davies_bouldin"]].notna().all().all()


def test_labels_numbered_by_size_largest_first() -> None:
    rng = np.random.default_rng(0)
    big = rng.normal(0, 0.3, size=(150, 2))
    small = rng.normal(10, 0.3, size=(50, 2))
    frame = pd.DataFrame(np.vstack([small, big]), index=pd.Index(range(200), name="STORE_NBR"))
    result = choose_k(frame, ClusteringParams(max_k=4))
    assert result.k == 2
    assert (result.labels.iloc[50:] == 1).all()
    assert (result.labels.iloc[:50] == 2).all()


def test_min_cluster_size_is_never_broken() -> None:
    rng = np.random.default_rng(1)
    main = rng.normal(0, 1, size=(190, 2))
    tiny = rng.normal(30, 0.1, size=(10, 2))  # a tight, obvious cluster of 10 stores
    frame = pd.DataFrame(np.vstack([main, tiny]))
    result = choose_k(frame, ClusteringParams(min_cluster_size=20, max_k=6))
    assert result.labels.value_counts().min() >= 20
    inadmissible = result.k_curve[~result.k_curve["admissible"].astype(bool)]
    assert (inadmissible["smallest_cluster"] < 20).all()


def test_too_few_stores_gives_one_cluster_with_a_reason() -> None:
    frame, _ = _blobs(15, 2)
    result = choose_k(frame, ClusteringParams(min_cluster_size=10))
    assert result.k == 1
    assert (result.labels == 1).all()
    assert (
        result.fallback
        == "15 stores cannot form two clusters of at least 10; all stores form one cluster"
    )


def test_fewer_stores_than_min_k() -> None:
    frame, _ = _blobs(3, 1)
    result = choose_k(frame, ClusteringParams(min_k=5, max_k=8, min_cluster_size=1))
    assert result.k == 2
    assert result.fallback == "3 stores are too few for min_k = 5; lowered k to 2"
    assert len(result.labels) == 3 and set(result.labels) == {1, 2}


def test_no_admissible_k_in_range_lowers_k() -> None:
    frame, _ = _blobs(120, 3, std=0.5)
    params = ClusteringParams(min_k=6, max_k=8, min_cluster_size=30)
    result = choose_k(frame, params)
    assert result.k < 6
    assert result.labels.value_counts().min() >= 30
    assert result.fallback is not None and "lowered k to" in result.fallback


def test_same_seed_same_labels() -> None:
    frame, _ = _blobs(300, 4, std=2.5)
    first = choose_k(frame, ClusteringParams(seed=7))
    second = choose_k(frame, ClusteringParams(seed=7))
    pd.testing.assert_series_equal(first.labels, second.labels)


def test_selection_rules() -> None:
    curve = pd.DataFrame(
        {
            "k": [2, 3, 4],
            "silhouette": [0.3, 0.6, 0.5],
            "calinski_harabasz": [100.0, 200.0, 300.0],
            "davies_bouldin": [0.9, 0.5, 0.7],
        }
    )
    assert int(np.argmax(selection_scores(curve, "silhouette"))) == 1
    assert int(np.argmax(selection_scores(curve, "calinski_harabasz"))) == 2
    assert int(np.argmax(selection_scores(curve, "davies_bouldin"))) == 1
    combined = selection_scores(curve, "combined")
    assert combined.between(0, 1).all()
    # k=3: best silhouette and Davies-Bouldin, middling Calinski-Harabasz
    assert combined.round(3).tolist() == [0.0, 0.833, 0.722]


def test_large_n_uses_sampled_silhouette() -> None:
    frame, truth = _blobs(1500, 3)
    result = choose_k(frame, ClusteringParams(max_k=4, silhouette_sample_size=300))
    assert result.k == 3
    assert adjusted_rand_score(truth, result.labels.to_numpy()) > 0.95


@pytest.mark.parametrize("stores", [1, 2, 3, 5, 10, 39, 40])
def test_any_category_size_gets_a_result_and_a_stated_outcome(stores: int) -> None:
    """From 1 store upward: every store clustered, no cluster below the minimum size unless the
    whole category is one cluster, and the reason recorded (min_cluster_size 20)."""
    rng = np.random.default_rng(stores)
    shares = pd.DataFrame(
        rng.dirichlet(np.ones(6), size=stores) * 100,
        index=pd.Index(rng.choice(9_000, stores, replace=False), name="STORE_NBR"),
        columns=[f"NEED STATE {i}" for i in range(6)],
    )
    params = PipelineParams()
    features = engineer_features(shares, params.internal_features)
    result = choose_k(features.matrix, params.internal_clustering)
    assert list(result.labels.index) == list(shares.index)
    sizes = result.labels.value_counts()
    if result.k == 1:
        assert result.fallback is not None
    else:
        assert sizes.min() >= 20
    assert stores >= 40 or result.k == 1
    frame, summary = merge_category(
        "X",
        result.labels,
        pd.Series(dtype="Int64"),
        features.matrix,
        pd.DataFrame(),
        params.merging,
    )
    assert sorted(frame["STORE_NBR"]) == sorted(shares.index)
    if stores < 20:
        assert summary.outcome == "too_small"
        assert summary.note.startswith(f"{stores} stores, fewer than min_cluster_size = 20")


@pytest.mark.parametrize("stores", [2, 3, 5])
def test_tiny_categories_with_min_size_one_clip_the_k_range(stores: int) -> None:
    frame, _ = _blobs(stores, 1)
    result = choose_k(frame, ClusteringParams(min_cluster_size=1, max_k=10))
    assert 1 <= result.k <= max(stores - 1, 1)
    assert result.k_curve["k"].max() <= max(stores - 1, 2)


def test_stability_is_recorded_for_the_chosen_k() -> None:
    frame, _ = _blobs(400, 4)
    result = choose_k(frame, ClusteringParams())
    chosen = result.k_curve[result.k_curve["chosen"]]
    assert chosen["stability"].iloc[0] == pytest.approx(result.metrics["stability"])
    assert result.metrics["stability"] > 0.95
    assert result.k_curve.loc[~result.k_curve["chosen"], "stability"].isna().all()


@pytest.mark.parametrize(
    "rule", ["silhouette", "bic", "gap", "stability", "prediction_strength", "bic_silhouette"]
)
def test_every_selectable_rule_finds_well_separated_clusters(rule: str) -> None:
    frame, truth = _blobs(300, 4)
    result = choose_k(frame, ClusteringParams(selection=rule))  # type: ignore[arg-type]
    assert result.k == 4
    assert adjusted_rand_score(truth, result.labels.to_numpy()) > 0.95


def test_sparse_stores_do_not_get_a_cluster_of_their_own() -> None:
    """30 scattered stores that follow no type stay out of the choice and join a type."""
    rng = np.random.default_rng(3)
    frame, truth = _blobs(400, 3, std=0.6)
    scattered = pd.DataFrame(
        rng.uniform(-15, 15, size=(30, 5)), index=pd.Index(range(900_000, 900_030))
    )
    both = pd.concat([frame, scattered])
    result = choose_k(both, ClusteringParams(trim_share=0.1))
    assert result.k == 3
    typed = result.labels.iloc[:400].to_numpy()
    assert adjusted_rand_score(truth, typed) > 0.95
    assert set(result.trimmed) & set(scattered.index)


def test_adjusted_rand_is_scikit_learns_score() -> None:
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(11)
    for trial in range(300):
        n = int(rng.integers(2, 400))
        first = rng.integers(0, int(rng.integers(1, 7)), n)
        second = first.copy() if trial % 4 == 0 else rng.integers(0, int(rng.integers(1, 7)), n)
        if trial % 4 == 1:  # the same clusters under other names
            second = (first + 3) % 7
        assert adjusted_rand(first, second) == pytest.approx(
            adjusted_rand_score(first, second), abs=1e-12
        )


def test_silhouettes_of_several_labellings_are_scikit_learns_scores() -> None:
    """The k sweep scores all its labellings with one product: each score is still scikit-learn's
    silhouette (stores alone in their cluster score 0; a single cluster has none)."""
    from sklearn.metrics import silhouette_score

    values, _ = _blobs(300, 4, seed=11)
    distances = np.sqrt(squared_distances(values.to_numpy()))
    rng = np.random.default_rng(2)
    labelings = [rng.integers(0, k, 300) for k in (2, 3, 5, 9)]
    labelings.append(np.r_[np.zeros(299, dtype=int), 1])  # one store alone
    labelings.append(np.zeros(300, dtype=int))  # one cluster
    found = silhouettes_precomputed(distances, labelings)
    for labels, score in zip(labelings[:-1], found[:-1], strict=True):
        expected = silhouette_score(distances, labels, metric="precomputed")
        assert score == pytest.approx(expected, abs=1e-12)
        assert silhouettes_precomputed(distances, [labels]) == pytest.approx([score], abs=1e-12)
    assert np.isnan(found[-1])


def test_neighbour_reach_is_the_distance_to_the_kth_nearest_other_store() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(400, 6))
    values[10] = values[11] = values[12]  # three identical stores
    brute = np.sqrt(np.sort(squared_distances(values), axis=1))
    for neighbours in (1, 2, 10):
        # The matrix product leaves ~1e-15 where distances are 0 (its square root ~3e-8).
        np.testing.assert_allclose(
            neighbour_reach(values, neighbours), brute[:, neighbours], atol=1e-6
        )
    assert neighbour_reach(values, 2)[10] == 0.0


def test_sparse_store_mask_marks_the_isolated_stores() -> None:
    rng = np.random.default_rng(4)
    dense = rng.normal(scale=0.1, size=(300, 3))
    far = np.array([[5.0, 5.0, 5.0], [-5.0, 4.0, 0.0], [0.0, -6.0, 3.0]])
    mask = sparse_store_mask(np.vstack([dense, far]), share=0.009)
    assert mask[-3:].all()
    assert mask.sum() == 3
    assert not sparse_store_mask(dense, share=0.0).any()

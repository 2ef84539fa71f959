"""Parameters: documented defaults, and one clear sentence for a bad value."""

import pytest

from clustering.core.errors import ConfigError
from clustering.core.params import PipelineParams, parse_params


def test_defaults() -> None:
    params = PipelineParams()
    assert params.internal_clustering.algorithm == "kmeans"
    assert params.internal_clustering.n_init >= 10
    assert params.internal_clustering.selection == "bic_silhouette"
    assert params.internal_clustering.silhouette_sample_size == 2000
    assert params.internal_features.transform == "sqrt"
    assert params.external_features.scaler == "standard"
    assert params.merging.strategy == "internal_first"
    assert params.merging.max_final_clusters == 10


def test_nested_override() -> None:
    params = parse_params({"internal_clustering": {"max_k": 6, "algorithm": "gmm"}})
    assert params.internal_clustering.max_k == 6
    assert params.internal_clustering.algorithm == "gmm"
    assert params.external_clustering.max_k == 10


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"internal_clustering": {"max_kk": 6}}, "x.yml: internal_clustering.max_kk: unknown key."),
        (
            {"internal_clustering": {"algorithm": "dbscan"}},
            "x.yml: internal_clustering.algorithm: Input should be 'kmeans', 'gmm' or 'ward'.",
        ),
        (
            {"merging": {"min_cluster_size": 0}},
            "x.yml: merging.min_cluster_size: Input should be greater than or equal to 1.",
        ),
        (
            {"external_clustering": {"min_k": 5, "max_k": 3}},
            "x.yml: external_clustering: Value error, max_k (3) must be at least min_k (5).",
        ),
    ],
)
def test_bad_values_give_one_sentence(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params(raw, source="x.yml")
    assert str(caught.value) == message

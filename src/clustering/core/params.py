"""Typed parameters for every stage, with the defaults documented in the README.

Config is validated once, at the edge, into these models; ``core`` functions receive them and
never raw dictionaries. Unknown keys are rejected so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clustering.core.errors import ConfigError


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureParams(_Params):
    """Feature engineering: imputation, scaling, pruning, optional PCA, outlier handling."""

    imputation: Literal["median"] = "median"
    scaler: Literal["standard", "robust"] = "standard"
    near_constant_share: float = Field(
        0.98,
        gt=0.5,
        le=1.0,
        description="Drop a feature when one value covers at least this share of stores.",
    )
    correlation_threshold: float = Field(
        0.95, gt=0.0, le=1.0, description="Drop one of each pair with |r| above this."
    )
    pca_min_features: int = Field(
        30, ge=2, description="Apply PCA only when more features than this remain."
    )
    pca_variance: float = Field(
        0.9, gt=0.0, le=1.0, description="Variance the kept components must explain."
    )
    pca_max_components: int = Field(20, ge=1, description="Cap on the number of components.")
    outlier_z: float = Field(
        4.0, gt=0.0, description="A store is an outlier when any scaled feature exceeds this."
    )
    outlier_action: Literal["flag", "clip"] = Field(
        "clip",
        description="Outliers are always flagged and kept; 'clip' also clips them to ±outlier_z.",
    )


class ClusteringParams(_Params):
    """Choosing k and fitting the clusters of one feature matrix."""

    algorithm: Literal["kmeans", "gmm", "ward"] = "kmeans"
    min_k: int = Field(2, ge=2)
    max_k: int = Field(10, ge=2)
    min_cluster_size: int = Field(
        20, ge=1, description="Every cluster keeps at least this many stores."
    )
    selection: Literal["silhouette", "calinski_harabasz", "davies_bouldin", "combined"] = (
        "silhouette"
    )
    n_init: int = Field(10, ge=10, description="k-means restarts; fewer were measured unstable.")
    seed: int = 42
    # 2,000 stores picked the same k as the full 10k silhouette here, at 1/25 of the cost.
    silhouette_sample_size: int = Field(2000, ge=100, le=5000)
    silhouette_seeds: int = Field(3, ge=1, description="Sampled silhouette is averaged over these.")
    silhouette_floor: float = Field(
        0.1, ge=-1.0, le=1.0, description="A chosen k scoring below this raises a quality warning."
    )

    @model_validator(mode="after")
    def _k_range(self) -> ClusteringParams:
        if self.max_k < self.min_k:
            raise ValueError(f"max_k ({self.max_k}) must be at least min_k ({self.min_k})")
        return self


class ExternalParams(_Params):
    """How external feature sources are combined and which columns count as features."""

    id_column_pattern: str = Field(
        r"(?i)(^id$|_id$|_nbr$|_num$|_code$|_key$)",
        description="Numeric columns whose name matches are identifiers, not features.",
    )
    one_hot_columns: list[str] = Field(
        default_factory=list,
        description="Text columns to encode as 0/1 indicator features instead of dropping them.",
    )


class MergingParams(_Params):
    """Demand clusters (external × internal) and rebalancing of small ones."""

    min_cluster_size: int = Field(
        20, ge=1, description="Demand clusters smaller than this are folded into a large one."
    )


class PipelineParams(_Params):
    """All parameters of one pipeline run."""

    internal_features: FeatureParams = FeatureParams()
    external_features: FeatureParams = FeatureParams()
    external: ExternalParams = ExternalParams()
    internal_clustering: ClusteringParams = ClusteringParams()
    external_clustering: ClusteringParams = ClusteringParams()
    merging: MergingParams = MergingParams()
    workers: int | None = Field(
        None, ge=1, description="Processes for per-category work; default: number of cores."
    )


def parse_params(raw: dict[str, object] | None, source: str = "parameters") -> PipelineParams:
    """Validate a nested mapping into :class:`PipelineParams`; one readable sentence on error."""
    try:
        return PipelineParams.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"]) or "(top level)"
        problem = first["msg"]
        if first["type"] == "extra_forbidden":
            problem = "unknown key"
        raise ConfigError(f"{source}: {path}: {problem}.") from None

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
    transform: Literal["none", "sqrt"] = Field(
        "none",
        description="sqrt: square root of each value before anything else (the Hellinger "
        "transform for shares: every need state then carries about the same noise).",
    )
    scaler: Literal["standard", "robust", "none"] = Field(
        "standard",
        description="Per-feature scaling; none keeps the features' own units (right for "
        "sqrt shares, whose noise is already even).",
    )
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
    selection: Literal[
        "bic_silhouette",
        "silhouette",
        "bic",
        "gap",
        "stability",
        "prediction_strength",
        "calinski_harabasz",
        "davies_bouldin",
        "combined",
    ] = Field(
        "bic_silhouette",
        description="Rule that picks k (make quality compares them on a ladder of generated "
        "retailers; bic_silhouette measured best).",
    )
    n_init: int = Field(10, ge=10, description="k-means restarts; fewer were measured unstable.")
    seed: int = 42
    selection_sample_size: int = Field(
        3000, ge=200, description="k is chosen on at most this many stores; all are clustered."
    )
    selection_n_init: int = Field(4, ge=1, description="k-means restarts per k while choosing.")
    trim_share: float = Field(
        0.05,
        ge=0.0,
        lt=0.5,
        description="Share of stores in the sparsest places left out of choosing k and of "
        "fitting the centres (they are still assigned to the nearest cluster).",
    )
    silhouette_tolerance: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="bic_silhouette: silhouette the BIC's larger k may cost against the "
        "silhouette's own choice.",
    )
    # 2,000 stores picked the same k as the full 10k silhouette here, at 1/25 of the cost.
    silhouette_sample_size: int = Field(2000, ge=100, le=5000)
    silhouette_seeds: int = Field(3, ge=1, description="Sampled silhouette is averaged over these.")
    silhouette_floor: float = Field(
        0.1, ge=-1.0, le=1.0, description="A chosen k scoring below this raises a quality warning."
    )
    stability_resamples: int = Field(
        5, ge=2, description="Resamples whose fits are compared for the stability score."
    )
    stability_share: float = Field(
        0.8, gt=0.1, lt=1.0, description="Share of the stores each resample sees."
    )
    stability_floor: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="A chosen k whose stability (mean ARI across resamples) is below this "
        "raises a quality warning.",
    )

    @model_validator(mode="after")
    def _k_range(self) -> ClusteringParams:
        if self.max_k < self.min_k:
            raise ValueError(f"max_k ({self.max_k}) must be at least min_k ({self.min_k})")
        return self


class ExternalParams(_Params):
    """How external feature sources are combined and which columns count as features."""

    id_column_pattern: str = Field(
        r"(?i)(^id$|[_ ]id$|^id[_ ]|_nbr$|_num$|_no$|_code$|_cd$|_key$|zip|postal)",
        description="Columns whose name matches are identifiers (ids, codes, zip codes), not "
        "features.",
    )
    coordinate_column_pattern: str = Field(
        r"(?i)^(lat|latitude|lon|lng|long|longitude)$|(^|[_ ])(lat|lon|lng)($|[_ ])",
        description="Columns whose name matches are coordinates, not features (raw latitude "
        "and longitude say where a store is, not what it is like).",
    )
    include_columns: list[str] = Field(
        default_factory=list,
        description="Columns to keep as features although their name looks like an "
        "identifier or a coordinate (names compared without case).",
    )
    one_hot_columns: list[str] = Field(
        default_factory=list,
        description="Text columns to encode as 0/1 indicator features instead of dropping them.",
    )


class QualityParams(_Params):
    """Data-quality thresholds (percentages): above ``*_warn`` a run warns (console, asset
    check, alert); above ``*_fail`` it stops with one sentence. ``null`` never stops."""

    unmapped_sales_warn: float = Field(
        5.0, ge=0, le=100, description="% of sales on SKUs missing from the need-state map."
    )
    unmapped_sales_fail: float | None = Field(50.0, ge=0, le=100)
    category_mismatch_warn: float = Field(
        5.0,
        ge=0,
        le=100,
        description="% of mapped SKUs whose map CATEGORY differs from the sales' CAT_DSC.",
    )
    category_mismatch_fail: float | None = Field(None, ge=0, le=100)
    stores_without_sales_warn: float = Field(
        10.0,
        ge=0,
        le=100,
        description="% of store × category pairs with sales but no mapped sales (no shares).",
    )
    stores_without_external_warn: float = Field(
        10.0,
        ge=0,
        le=100,
        description="% of stores with mapped sales that have no external features.",
    )
    stores_without_external_fail: float | None = Field(None, ge=0, le=100)


class MergingParams(_Params):
    """How internal and external clusters become the final clusters of a category."""

    strategy: Literal["internal_first", "nearest_centroid"] = Field(
        "internal_first",
        description="internal_first: split internal clusters by external cluster where every "
        "part stays large enough (never mixes internal clusters); nearest_centroid: the "
        "reference system's external × internal demand clusters, small ones folded into the "
        "nearest large one.",
    )
    min_cluster_size: int = Field(
        20, ge=1, description="Every final cluster keeps at least this many stores."
    )
    max_final_clusters: int = Field(
        10, ge=1, description="At most this many final clusters per category."
    )


class PipelineParams(_Params):
    """All parameters of one pipeline run."""

    # Need-state shares are compositions: on generated retailers the square-root (Hellinger)
    # space recovered planted store types better than standardised shares (make quality).
    internal_features: FeatureParams = FeatureParams(transform="sqrt", scaler="none")
    external_features: FeatureParams = FeatureParams()
    external: ExternalParams = ExternalParams()
    internal_clustering: ClusteringParams = ClusteringParams()
    external_clustering: ClusteringParams = ClusteringParams()
    merging: MergingParams = MergingParams()
    quality: QualityParams = QualityParams()
    workers: int | None = Field(
        None,
        ge=1,
        description="Processes for per-category work; default: number of cores; 1: none (every "
        "category in the run's own process).",
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

"""Every asset and asset check of the pipeline: the raw inputs (external assets) and five groups
of assets: preprocessing, internal_clustering, external_clustering, merging and workbench (run
history, report, comparison)."""

from clustering.dagster.assets.clustering import (
    external_clustering_assets,
    internal_clustering_assets,
)
from clustering.dagster.assets.merging import merging_assets
from clustering.dagster.assets.preprocessing import (
    RAW_INPUTS,
    external_store_features,
    internal_need_state_sales,
    need_state_map,
)
from clustering.dagster.assets.workbench import workbench_assets

ALL_ASSETS = [
    need_state_map,
    internal_need_state_sales,
    external_store_features,
    *internal_clustering_assets,
    *external_clustering_assets,
    *merging_assets,
    *workbench_assets,
]

__all__ = ["ALL_ASSETS", "RAW_INPUTS"]

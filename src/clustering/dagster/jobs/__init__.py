"""The six jobs. Each selects the assets of one stage, so it runs on its own once its upstream
has been materialized (it reads the persisted upstream from the warehouse)."""

from __future__ import annotations

import dagster as dg

JOB_ASSETS: dict[str, list[str]] = {
    "internal_preprocessing_job": ["need_state_map", "internal_need_state_sales"],
    "internal_clustering_job": [
        "internal_features",
        "internal_models",
        "internal_assignments",
        "internal_centroids",
        "internal_profiles",
        "internal_fitted_models",
    ],
    "external_preprocessing_job": ["external_store_features"],
    "external_clustering_job": [
        "external_features",
        "external_models",
        "external_assignments",
        "external_centroids",
        "external_profiles",
        "external_fitted_models",
    ],
    "merging_job": [
        "final_store_clusters",
        "merging_summary",
        "store_overrides",
        "final_fitted_models",
        "run_history",
        "clustering_report",
    ],
}

JOB_DESCRIPTIONS = {
    "internal_preprocessing_job": "Validate the need-state map and aggregate sales to need-state "
    "shares per category and store.",
    "internal_clustering_job": "Features, k selection, clusters and profiles per category from "
    "need-state shares.",
    "external_preprocessing_job": "Join the external store-feature sources; keep numeric features.",
    "external_clustering_job": "Features, k selection, clusters and profiles from external "
    "store features.",
    "merging_job": "Final clusters per category (internal clusters split by external cluster "
    "where every part stays large enough); the final store × category table with the overrides "
    "honoured, recorded in the run history, and the run's HTML report.",
    "full_pipeline_job": "Every stage, from raw inputs to the final store × category table and "
    "the report.",
    "compare_runs_job": "Compare two runs or what-if scenarios (run config a, b; default the "
    "latest two runs): agreement, moved stores and size changes per category.",
}

#: Names the command line also accepts, from the reference system.
JOB_ALIASES = {
    "internal_ml_job": "internal_clustering_job",
    "external_ml_job": "external_clustering_job",
}

#: The job that materializes each asset, for "run X first" messages.
PRODUCING_JOBS = {asset: job for job, assets in JOB_ASSETS.items() for asset in assets}


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """One job per stage plus ``full_pipeline_job``."""
    jobs = [
        dg.define_asset_job(
            name,
            selection=dg.AssetSelection.assets(*assets),
            description=JOB_DESCRIPTIONS[name],
        )
        for name, assets in JOB_ASSETS.items()
    ]
    jobs.append(
        dg.define_asset_job(
            "full_pipeline_job",
            # Every asset the five stage jobs build (the raw inputs are read, never built).
            selection=dg.AssetSelection.assets(*PRODUCING_JOBS),
            description=JOB_DESCRIPTIONS["full_pipeline_job"],
        )
    )
    # Not a stage: reads the history only, so it stays out of PRODUCING_JOBS and the full run.
    jobs.append(
        dg.define_asset_job(
            "compare_runs_job",
            selection=dg.AssetSelection.assets("run_comparison"),
            description=JOB_DESCRIPTIONS["compare_runs_job"],
        )
    )
    return jobs

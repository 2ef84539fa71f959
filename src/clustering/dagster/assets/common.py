"""What every asset shares: run-config overrides, user-error handling and metadata helpers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
import pandas as pd
from pydantic import ValidationError

from clustering.core.errors import ClusteringError
from clustering.core.params import ClusteringParams, MergingParams
from clustering.core.tables import missing_or_extra_stores, stores_by_set
from clustering.dagster.resources.config import ClusteringConfigResource
from clustering.infra.config import JOB_NAMES, AppConfig

PREVIEW_ROWS = 5


class ClusteringRunConfig(dg.Config):
    """Per-run overrides of the clustering parameters (Launchpad); unset fields keep the YAML's."""

    algorithm: str | None = None
    min_k: int | None = None
    max_k: int | None = None
    min_cluster_size: int | None = None
    selection: str | None = None
    seed: int | None = None

    def apply(self, params: ClusteringParams) -> ClusteringParams:
        """``params`` with the fields set here replaced, validated again."""
        updates = {k: v for k, v in self.model_dump().items() if v is not None}
        if not updates:
            return params
        try:
            return ClusteringParams.model_validate({**params.model_dump(), **updates})
        except ValidationError as exc:
            raise _run_config_failure(exc) from None


class MergingRunConfig(dg.Config):
    """Per-run overrides of the merging parameters (Launchpad); unset fields keep the YAML's."""

    strategy: str | None = None
    min_cluster_size: int | None = None
    max_final_clusters: int | None = None

    def apply(self, params: MergingParams) -> MergingParams:
        """``params`` with the fields set here replaced, validated again."""
        updates = {k: v for k, v in self.model_dump().items() if v is not None}
        if not updates:
            return params
        try:
            return MergingParams.model_validate({**params.model_dump(), **updates})
        except ValidationError as exc:
            raise _run_config_failure(exc) from None


def _run_config_failure(exc: ValidationError) -> dg.Failure:
    first = exc.errors()[0]
    path = ".".join(str(p) for p in first["loc"])
    return dg.Failure(description=f"run config: {path}: {first['msg']}.", allow_retries=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors a user can cause into a step failure that shows just their sentence."""
    try:
        yield
    except ClusteringError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None


def load_settings(
    settings: ClusteringConfigResource, context: dg.AssetExecutionContext
) -> AppConfig:
    """The configuration for this run: the job's config file applies when the run is one of the
    named jobs (ad-hoc materializations run under an internal job name and get none)."""
    job = context.job_name if context.job_name in JOB_NAMES else None
    try:
        return settings.load(job=job)
    except ClusteringError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None


def progress_to(
    context: dg.AssetExecutionContext, logger: logging.Logger | None = None
) -> Callable[[str], None]:
    """A progress callback that writes to the run's log (and the environment's log file)."""

    def report(message: str) -> None:
        context.log.info(message)
        if logger is not None:
            logger.info("%s: %s", context.op_execution_context.op_handle, message)

    return report


def coverage_check(
    frames: Mapping[str, pd.DataFrame], assignments: pd.DataFrame
) -> dg.AssetCheckResult:
    """Passes when every store of every category in ``frames`` has exactly one row."""
    problems = missing_or_extra_stores(stores_by_set(frames), assignments)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"categories_with_problems": dg.MetadataValue.json(problems)},
        description=(
            "every store assigned exactly once"
            if not problems
            else f"stores missing or duplicated in {len(problems)} categories"
        ),
    )


def preview(frame: pd.DataFrame, rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first rows of ``frame`` as a Markdown table for the UI."""
    head = frame.head(rows)
    columns = [str(c) for c in head.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in head.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def store_metadata(frame: pd.DataFrame) -> dict[str, object]:
    """Rows, stores and categories of a table with STORE_NBR / CATEGORY columns, and a preview."""
    metadata: dict[str, object] = {"rows": len(frame), "preview": preview(frame)}
    if "STORE_NBR" in frame.columns:
        metadata["stores"] = int(frame["STORE_NBR"].nunique())
    if "CATEGORY" in frame.columns:
        metadata["categories"] = int(frame["CATEGORY"].nunique())
    return metadata

"""What every asset shares: run-config overrides, user errors, progress, metadata, catalogue."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import ValidationError
from tqdm import tqdm

from clustering.core.errors import ClusteringError
from clustering.core.params import ClusteringParams, MergingParams
from clustering.core.quality import Finding
from clustering.core.tables import missing_or_extra_stores
from clustering.dagster.metadata import preview
from clustering.dagster.resources.io_manager import EXPORT_KEY

#: Who answers for the assets (shown in the catalogue).
OWNERS = ["team:category-analytics"]

#: Op tag of the steps that run categories in worker processes (``core.engine``): a command that
#: runs a job holding one starts the workers' fork server before the run.
WORKER_PROCESSES_TAG = "clustering/worker-processes"
WORKER_OP_TAGS = {WORKER_PROCESSES_TAG: "per category"}


def table_schema(**columns: str) -> dg.TableSchema:
    """A column schema from ``NAME="type: description"`` pairs, for the catalogue."""
    parsed = []
    for name, text in columns.items():
        kind, _, description = text.partition(":")
        parsed.append(dg.TableColumn(name, kind.strip(), description=description.strip() or None))
    return dg.TableSchema(columns=parsed)


def catalogue(schema: dg.TableSchema, export: str = "") -> dict[str, object]:
    """Definition metadata: the column schema, and the export formats when there are any."""
    metadata: dict[str, object] = {"dagster/column_schema": schema}
    if export:
        metadata[EXPORT_KEY] = export
    return metadata


class ClusteringRunConfig(dg.Config):
    """Per-run overrides of the clustering parameters (Launchpad); unset fields keep the YAML's."""

    algorithm: str | None = None
    min_k: int | None = None
    max_k: int | None = None
    min_cluster_size: int | None = None
    selection: str | None = None
    seed: int | None = None
    # internal_clustering only: cluster just these categories (a what-if on a few categories).
    categories: list[str] | None = None

    def apply(self, params: ClusteringParams) -> ClusteringParams:
        """``params`` with the fields set here replaced, validated again."""
        fields = {k: v for k, v in self.model_dump().items() if k != "categories"}
        return _override(ClusteringParams, params, fields)

    def select(self, names: Iterable[str], kind: str) -> list[str]:
        """The category ``names`` limited to :attr:`categories` (all when it is not set)."""
        frames = sorted(names)
        if self.categories is None:
            return frames
        if kind != "internal":
            raise dg.Failure(
                description="run config: categories applies to internal_clustering only; the "
                "external features are clustered once for every category.",
                allow_retries=False,
            )
        unknown = sorted(set(self.categories) - set(frames))
        if unknown or not self.categories:
            raise dg.Failure(
                description=f"run config: categories: {', '.join(unknown) or '(empty list)'} "
                f"{'is' if len(unknown) == 1 else 'are'} not a category of the sales "
                f"(categories: {', '.join(sorted(frames))}).",
                allow_retries=False,
            )
        return sorted(set(self.categories))


class MergingRunConfig(dg.Config):
    """Per-run overrides of the merging parameters (Launchpad); unset fields keep the YAML's."""

    strategy: str | None = None
    min_cluster_size: int | None = None
    max_final_clusters: int | None = None

    def apply(self, params: MergingParams) -> MergingParams:
        """``params`` with the fields set here replaced, validated again."""
        return _override(MergingParams, params, self.model_dump())


def run_scope(run: dg.DagsterRun) -> set[str] | None:
    """The categories a run was limited to (run config ``categories`` of internal_clustering),
    or None for a run of every category."""
    run_config: Mapping[str, Any] = run.run_config or {}
    ops: Mapping[str, Any] = run_config.get("ops") or {}
    config: Mapping[str, Any] = (ops.get("internal_clustering") or {}).get("config") or {}
    categories = config.get("categories")
    return None if categories is None else {str(c) for c in categories}


P = TypeVar("P", ClusteringParams, MergingParams)


def _override(kind: type[P], params: P, fields: Mapping[str, object]) -> P:
    updates = {k: v for k, v in fields.items() if v is not None}
    if not updates:
        return params
    try:
        return kind.model_validate({**params.model_dump(), **updates})
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise dg.Failure(
            description=f"run config: {path}: {first['msg']}.", allow_retries=False
        ) from None


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors a user can cause (bad input, bad config) into a step failure that shows just
    their sentence."""
    try:
        yield
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


R = TypeVar("R")


#: Seconds between two progress lines of a step: each line is an event the run's storage
#: writes (tens of milliseconds on SQLite), so a hundred fast categories must not each log one.
PROGRESS_INTERVAL_S = 2.0


@contextmanager
def category_progress(
    total: int,
    report: Callable[[str], None],
    describe: Callable[[str, R], str],
    interval_s: float = PROGRESS_INTERVAL_S,
) -> Iterator[Callable[[str, R], None]]:
    """A per-category progress bar (on the step's stderr, when that is a terminal) and log
    lines in the order the categories finish: the first, then at most one per ``interval_s``
    (naming the categories finished since the last line), and the last."""
    done = 0
    pending: list[str] = []
    last = time.monotonic()
    with tqdm(
        total=total, unit="category", file=sys.stderr, mininterval=1.0, disable=None, leave=False
    ) as bar:

        def finished(name: str, result: R) -> None:
            nonlocal done, last
            done += 1
            bar.update(1)
            pending.append(describe(name, result))
            now = time.monotonic()
            if done == 1 or done == total or now - last >= interval_s:
                report(f"{done}/{total}: {'; '.join(pending)}")
                pending.clear()
                last = now

        yield finished


def coverage_check(
    expected: Mapping[str, Collection[int] | np.ndarray], assignments: pd.DataFrame
) -> dg.AssetCheckResult:
    """Passes when every store of every category in ``expected`` has exactly one row."""
    problems = missing_or_extra_stores(expected, assignments)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"categories_with_problems": dg.MetadataValue.json(problems)},
        description=(
            "every store assigned exactly once"
            if not problems
            else f"stores missing or duplicated in {len(problems)} categories"
        ),
    )


def size_check(below: Mapping[str, int], too_small: Mapping[str, int]) -> dg.AssetCheckResult:
    """The minimum-size check: fails for clusters ``below`` the size (category → smallest), and
    warns, listing them, for categories ``too_small`` to split (category → stores)."""
    metadata = {
        "clusters_below_min_size": dg.MetadataValue.json(dict(below)),
        "categories_too_small_to_split": dg.MetadataValue.json(dict(too_small)),
    }
    if below:
        return dg.AssetCheckResult(
            passed=False,
            metadata=metadata,
            description=f"clusters below the minimum size in {len(below)} categories",
        )
    return dg.AssetCheckResult(
        passed=not too_small,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=(
            "every cluster large enough"
            if not too_small
            else f"{len(too_small)} categories have fewer stores than the minimum cluster size "
            "and form one cluster each: "
            + ", ".join(f"{c} ({n})" for c, n in sorted(too_small.items()))
        ),
    )


def for_check(result: dg.AssetCheckResult, asset: str, name: str) -> dg.AssetCheckResult:
    """``result`` addressed to check ``name`` of ``asset`` (a step yielding several checks)."""
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(asset),
        check_name=name,
        passed=result.passed,
        severity=result.severity,
        metadata=result.metadata,
        description=result.description,
    )


def quality_check(name: str, findings: Sequence[Finding]) -> dg.AssetCheckResult:
    """A data-quality check result: a warning listing every finding, or passed."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"findings": dg.MetadataValue.json([f.sentence for f in findings])},
        description="; ".join(f.sentence for f in findings) or "no data-quality problem found",
    )


def store_metadata(frame: pd.DataFrame) -> dict[str, Any]:
    """Rows, stores and categories of a table with STORE_NBR / CATEGORY columns, and a preview."""
    metadata: dict[str, Any] = {"rows": len(frame), "preview": preview(frame)}
    if "STORE_NBR" in frame.columns:
        metadata["stores"] = int(frame["STORE_NBR"].nunique())
    if "CATEGORY" in frame.columns:
        metadata["categories"] = int(frame["CATEGORY"].nunique())
    return metadata

"""Write generated sample data (``clustering.sample.generator``) to disk.

Layout under ``out_dir``::

    internal_sales.parquet      SKU_NBR, STORE_NBR, CAT_DSC, TOTAL_SALES
    need_state.csv              PRODUCT_ID, CATEGORY, NEED_STATE, CDT, ATTRIBUTE_1..6, ...
    external_sales.parquet      STORE_NBR, STORE_NAME, REGION, DISTRICT_ID, numeric features
    truth/internal_truth.parquet, truth/external_truth.parquet, truth/truth.json

Sales are streamed one category at a time through a Parquet writer, so memory stays bounded
by one category whatever the preset. Every file is written under a hidden temporary name in
its final folder and renamed when complete: an interrupted run never leaves a half file under a
final name (nor one that a ``*.parquet`` glob would pick up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from clustering.core.errors import ClusteringError
from clustering.io.readers import named_locations
from clustering.io.writers import atomic_path, write_frame, write_json
from clustering.sample.generator import (
    SALES_SCHEMA,
    SamplePlan,
    category_sales,
    external_features,
    external_truth,
    internal_truth,
    need_state_map,
    plan_sample_data,
    resolve_preset,
    truth_summary,
)

INTERNAL_SALES_FILE = "internal_sales.parquet"
NEED_STATE_FILE = "need_state.csv"
EXTERNAL_FILE = "external_sales.parquet"
TRUTH_DIR = "truth"
INTERNAL_TRUTH_FILE = "internal_truth.parquet"
EXTERNAL_TRUTH_FILE = "external_truth.parquet"
TRUTH_JSON_FILE = "truth.json"


def existing_inputs(folder: Path) -> tuple[list[Path], list[str]]:
    """The pipeline inputs already in ``folder`` (files or folders by name, any of the formats
    the readers take), and the names of those missing."""
    present: list[Path] = []
    missing: list[str] = []
    for stem in (INTERNAL_SALES_FILE, NEED_STATE_FILE, EXTERNAL_FILE):
        name = stem.split(".")[0]
        found = [p for p in named_locations(Path(folder) / name) if p.exists()]
        if found:
            present.append(found[0])
        else:
            missing.append(name)
    return present, missing


@dataclass(frozen=True)
class SampleDataReport:
    """What ``write_sample_data`` wrote, and how long it took."""

    out_dir: Path
    truth_dir: Path
    stores: int
    categories: int
    sales_rows: int
    seconds: float
    files: list[Path]


def write_sample_data(
    out_dir: Path,
    preset: str = "small",
    seed: int = 0,
    stores: int | None = None,
    categories: int | None = None,
    progress: Callable[[str], None] | None = None,
    difficulty: str = "classic",
) -> SampleDataReport:
    """Generate a sample data set and write the three inputs plus the planted truth.

    ``preset`` is one of ``PRESETS`` ("small", "medium", "large", "xlarge"); ``stores`` and
    ``categories`` override its sizes; ``difficulty`` is ``classic`` or a rung of the ladder
    (``LADDER``). The same seed always writes byte-identical files.
    ``progress`` receives short human-readable lines while the sales are written.

    Raises ``ConfigError`` for an unknown preset or invalid size and ``ClusteringError`` when a
    file cannot be written; existing files keep their previous content in both cases.
    """
    started = time.perf_counter()
    report = progress or (lambda _line: None)
    plan = plan_sample_data(resolve_preset(preset, stores, categories), seed, difficulty)
    out_dir = Path(out_dir)
    truth_dir = out_dir / TRUTH_DIR
    try:
        truth_dir.mkdir(parents=True, exist_ok=True)
        files: list[Path] = []
        sales_path = out_dir / INTERNAL_SALES_FILE
        sales_rows = _write_sales(sales_path, plan, report)
        files.append(sales_path)

        need_state_path = out_dir / NEED_STATE_FILE
        write_frame(need_state_map(plan), need_state_path)
        files.append(need_state_path)

        external_path = out_dir / EXTERNAL_FILE
        write_frame(external_features(plan), external_path)
        files.append(external_path)
        report("need-state map and external features written")

        internal_truth_path = truth_dir / INTERNAL_TRUTH_FILE
        write_frame(internal_truth(plan), internal_truth_path)
        external_truth_path = truth_dir / EXTERNAL_TRUTH_FILE
        write_frame(external_truth(plan), external_truth_path)
        truth_json_path = truth_dir / TRUTH_JSON_FILE
        summary = truth_summary(plan) | {"sales_rows": sales_rows}
        write_json(summary, truth_json_path)
        files += [internal_truth_path, external_truth_path, truth_json_path]
        report("planted truth written")
    except OSError as exc:
        where = exc.filename or out_dir
        raise ClusteringError(
            f"cannot write sample data to {where}: {exc.strerror or exc}."
        ) from exc
    return SampleDataReport(
        out_dir=out_dir,
        truth_dir=truth_dir,
        stores=plan.preset.stores,
        categories=plan.preset.categories,
        sales_rows=sales_rows,
        seconds=time.perf_counter() - started,
        files=files,
    )


def _write_sales(path: Path, plan: SamplePlan, report: Callable[[str], None]) -> int:
    """Stream the sales one category (one row group) at a time; return the number of rows."""
    n_categories = len(plan.categories)
    # About ten progress lines whatever the size.
    every = max(1, n_categories // 10)
    rows = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, SALES_SCHEMA) as writer:
        for done, category in enumerate(plan.categories, start=1):
            table = category_sales(plan, category)
            writer.write_table(table)
            rows += table.num_rows
            if done % every == 0 or done == n_categories:
                report(f"categories {done}/{n_categories} written ({rows:,} sales rows)")
    return rows

"""Time and peak memory of each pipeline stage on generated data (``make bench``).

For each preset (default: medium and large) the script generates the data into a temporary
folder, then runs the stages one after another and prints seconds and peak resident memory
(this process and its worker processes, sampled every 50 ms). Figures are also printed as a
ratio to a baseline measured in the same run: reading the raw sales file into memory with
pyarrow, the floor any aggregation has to pay. Nothing here asserts a timing.

    python benchmarks/bench_pipeline.py [--presets medium large] [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow.parquet as pq

from clustering.core.external_preprocessing import combine_external_sources
from clustering.core.params import PipelineParams
from clustering.core.pipeline import cluster_all, merge_clustered, preprocess_internal
from clustering.io.readers import (
    connect,
    read_external_sources,
    read_internal_sales,
    read_need_states,
)
from clustering.io.sample_data import write_sample_data

T = TypeVar("T")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/statm") as handle:
                total += int(handle.read().split()[1]) * PAGE
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    stack.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Sample the process tree's RSS while the block runs; yields a one-item list (peak bytes)."""
    peak = [_tree_rss(os.getpid())]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(os.getpid()))
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _tree_rss(os.getpid()))


def measure(label: str, rows: list[tuple[str, float, int]], work: Callable[[], T]) -> T:
    """Run ``work``, record (label, seconds, peak bytes)."""
    with peak_memory() as peak:
        start = time.perf_counter()
        value = work()
        seconds = time.perf_counter() - start
    rows.append((label, seconds, peak[0]))
    print(f"  {label:<34} {seconds:8.1f} s  {peak[0] / 2**30:6.2f} GB", flush=True)
    return value


def bench_preset(preset: str, workers: int | None, keep: Path | None) -> None:
    """Generate ``preset`` and time every stage."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{preset}-", dir=keep))
    rows: list[tuple[str, float, int]] = []
    params = PipelineParams(workers=workers)
    print(f"\n== {preset} (data in {folder})", flush=True)
    try:
        report = measure("generate", rows, lambda: write_sample_data(folder, preset=preset, seed=0))
        print(
            f"  ({report.stores:,} stores, {report.categories} categories, "
            f"{report.sales_rows:,} sales rows)"
        )
        sales_file = folder / "internal_sales.parquet"
        measure("baseline: read sales with pyarrow", rows, lambda: pq.read_table(sales_file))

        con = connect()

        def preprocess() -> tuple[dict[str, pd.DataFrame], object]:
            sales = read_internal_sales(con, sales_file)
            need_states = read_need_states(con, folder / "need_state.csv")
            return preprocess_internal(sales, need_states)

        matrices, _ = measure("preprocess (validate, shares)", rows, preprocess)
        sources = read_external_sources(con, [folder / "external_sales.parquet"])
        external_features = combine_external_sources(sources, params.external)

        internal, external = measure(
            "features + choose k + clustering",
            rows,
            lambda: cluster_all(matrices, external_features, params),
        )
        measure(
            "merge",
            rows,
            lambda: merge_clustered(internal, external, params),
        )
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)

    baseline = next(seconds for label, seconds, _ in rows if label.startswith("baseline"))
    stages = [row for row in rows if not row[0].startswith("baseline")]
    total = sum(seconds for _, seconds, _ in stages)
    print(f"  {'total (without baseline)':<34} {total:8.1f} s")
    print(f"  ratios to the baseline ({baseline:.2f} s):")
    for label, seconds, _ in stages:
        print(f"    {label:<32} {seconds / baseline:8.1f}x")
    print(f"    {'total':<32} {total / baseline:8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--presets", nargs="+", default=["medium", "large"])
    parser.add_argument("--workers", type=int, default=None, help="default: number of cores")
    parser.add_argument("--keep", type=Path, help="generate under this folder and keep the data")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, workers: {args.workers or os.cpu_count()}")
    for preset in args.presets:
        bench_preset(preset, args.workers, args.keep)


if __name__ == "__main__":
    main()

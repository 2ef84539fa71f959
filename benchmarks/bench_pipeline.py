"""Wall time, peak memory and time per step of the pipeline on generated data (``make bench``).

For each preset (default: medium and large) the script generates the data into a temporary
folder and runs ``python -m clustering cluster`` (``full_pipeline_job`` through Dagster, in one
process) as a child process, sampling the resident memory of the whole process tree every 50 ms.
Figures are also printed as a ratio to a baseline measured in the same run: reading the raw sales
file into memory with pyarrow, the floor any aggregation has to pay. Nothing here asserts a
timing.

    python benchmarks/bench_pipeline.py [--presets medium large] [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from clustering.sample.files import write_sample_data

PAGE = os.sysconf("SC_PAGE_SIZE")
STEP_LINE = re.compile(r"^  [✓✗] (?P<step>\S+)\s+(?P<seconds>[\d.]+) s")


def tree_rss(pid: int) -> int:
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


def run_measured(command: list[str]) -> tuple[float, int, str]:
    """Run ``command``; its wall seconds, the peak RSS of its process tree, and its output."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(process.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return time.perf_counter() - started, peak[0], output


def bench_preset(preset: str, workers: int | None, keep: Path | None) -> None:
    """Generate ``preset`` and time the pipeline on it."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{preset}-", dir=keep))
    print(f"\n== {preset} (data in {folder})", flush=True)
    try:
        report = write_sample_data(folder, preset=preset, seed=0)
        print(
            f"  {report.stores:,} stores, {report.categories} categories, "
            f"{report.sales_rows:,} sales rows (generated in {report.seconds:.1f} s)"
        )
        started = time.perf_counter()
        pq.read_table(folder / "internal_sales.parquet")
        baseline = time.perf_counter() - started
        command = [sys.executable, "-m", "clustering", "cluster", "--raw-dir", str(folder)]
        command += ["--out", str(folder / "out")]
        if workers:
            command += ["--workers", str(workers)]
        seconds, peak, output = run_measured(command)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"  baseline: read the sales with pyarrow  {baseline:8.2f} s")
    for line in output.splitlines():
        match = STEP_LINE.match(line)
        if match and float(match["seconds"]) >= 0.5:
            print(f"    {match['step']:<36} {float(match['seconds']):8.1f} s")
    print(f"  full_pipeline_job (cluster)            {seconds:8.1f} s  {peak / 2**30:6.2f} GB")
    print(f"  ratio to the baseline                  {seconds / baseline:8.1f}x")


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

"""How well the pipeline recovers the planted store types (``make recovery``).

Generates a preset into a temporary folder, runs the whole pipeline (``full_pipeline_job``, as
``python -m clustering cluster`` does) and prints the adjusted Rand index against the planted
truth: per category for internal clusters (minimum and mean), for the external clusters, and how
often the chosen k equals the planted k.

    python benchmarks/recovery.py [--presets small medium] [--seed 0] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import adjusted_rand_score

from clustering.cli.run import run_in_memory
from clustering.io.duckdb_store import DuckDBStore
from clustering.sample.files import write_sample_data


def recovery(preset: str, seed: int, workers: int | None) -> None:
    """Print the recovery figures for one preset."""
    folder = Path(tempfile.mkdtemp(prefix=f"recovery-{preset}-"))
    try:
        write_sample_data(folder, preset=preset, seed=seed)
        out = folder / "out"
        overrides = {
            "paths": {
                "raw_dir": str(folder),
                "exports_dir": str(out),
                "duckdb_path": str(out / "clustering_dev.duckdb"),
            },
            "params": {"workers": workers},
        }
        started = time.perf_counter()
        if run_in_memory("dev", overrides, out=lambda _line: None) != 0:
            raise SystemExit(f"{preset}: the pipeline failed")
        seconds = time.perf_counter() - started
        store = DuckDBStore(out / "clustering_dev.duckdb")
        assignments = store.read_table("internal_clustering", "internal_assignments")
        models = store.read_table("internal_clustering", "internal_models")
        chosen = models[models["chosen"]].set_index("CATEGORY")["k"]
        truth = pd.read_parquet(folder / "truth" / "internal_truth.parquet")
        planted = json.loads((folder / "truth" / "truth.json").read_text())
        aris = []
        for category, found in assignments.groupby("CATEGORY"):
            expected = truth[truth["CATEGORY"] == category].set_index("STORE_NBR")["STORE_TYPE"]
            labels = found.set_index("STORE_NBR")["CLUSTER"].reindex(expected.index)
            aris.append(adjusted_rand_score(expected, labels))
        hits = sum(int(chosen[c] == k) for c, k in planted["internal_k"].items())
        external = store.read_table("external_clustering", "external_assignments")
        ext_truth = pd.read_parquet(folder / "truth" / "external_truth.parquet")
        both = external.merge(ext_truth, on="STORE_NBR")
        external_ari = adjusted_rand_score(both["STORE_TYPE"], both["CLUSTER"])
        n = len(aris)
        print(
            f"{preset:<7} internal ARI min {min(aris):.3f} mean {sum(aris) / n:.3f}; "
            f"planted k chosen in {hits}/{n} categories; external ARI {external_ari:.3f} "
            f"(k={external['CLUSTER'].nunique()}, planted {planted['external_k']}); "
            f"pipeline {seconds:.1f} s",
            flush=True,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Recovery of planted store types (ARI).")
    parser.add_argument("--presets", nargs="+", default=["small", "medium"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    for preset in args.presets:
        recovery(preset, args.seed, args.workers)


if __name__ == "__main__":
    main()

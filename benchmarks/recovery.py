"""How well the pipeline recovers the planted store types (``make recovery``).

Generates a preset into a temporary folder, runs the whole pipeline and prints the adjusted Rand
index against the planted truth: per category for internal clusters (minimum and mean), for the
external clusters, and how often the chosen k equals the planted k.

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

from clustering.core.params import PipelineParams
from clustering.core.pipeline import run_pipeline
from clustering.io.readers import (
    connect,
    read_external_sources,
    read_internal_sales,
    read_need_states,
)
from clustering.io.sample_data import write_sample_data


def recovery(preset: str, seed: int, workers: int | None) -> None:
    """Print the recovery figures for one preset."""
    folder = Path(tempfile.mkdtemp(prefix=f"recovery-{preset}-"))
    try:
        write_sample_data(folder, preset=preset, seed=seed)
        con = connect()
        started = time.perf_counter()
        result = run_pipeline(
            read_internal_sales(con, folder / "internal_sales.parquet"),
            read_need_states(con, folder / "need_state.csv"),
            read_external_sources(con, [folder / "external_sales.parquet"]),
            PipelineParams(workers=workers),
        )
        seconds = time.perf_counter() - started
        truth = pd.read_parquet(folder / "truth" / "internal_truth.parquet")
        planted = json.loads((folder / "truth" / "truth.json").read_text())
        aris = []
        k_matches = 0
        for category, clustered in result.internal.items():
            expected = truth[truth["CATEGORY"] == category].set_index("STORE_NBR")["STORE_TYPE"]
            aris.append(adjusted_rand_score(expected, clustered.labels.reindex(expected.index)))
            k_matches += int(clustered.result.k == planted["internal_k"][category])
        ext_truth = pd.read_parquet(folder / "truth" / "external_truth.parquet")
        ext_truth = ext_truth.set_index("STORE_NBR")["STORE_TYPE"]
        external_ari = float("nan")
        if result.external is not None:
            common = result.external.labels.index.intersection(ext_truth.index)
            external_ari = adjusted_rand_score(
                ext_truth.loc[common], result.external.labels.loc[common]
            )
        n = len(result.internal)
        print(
            f"{preset:<7} internal ARI min {min(aris):.3f} mean {sum(aris) / n:.3f}; "
            f"planted k chosen in {k_matches}/{n} categories; external ARI {external_ari:.3f} "
            f"(k={result.external.result.k if result.external else '-'}, planted "
            f"{planted['external_k']}); pipeline {seconds:.1f} s",
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

"""The baseline ``make bench`` compares the pipeline with: the analyst-style script.

This is the same work written the way a careful analyst of the reference system does it, in
one process, one category after another, with nothing from the ``clustering`` package:

1. internal preprocessing in pandas: read the sales Parquet, join the need-state map on the
   SKU, split the sales of a SKU mapped to several need states evenly between them, sum per
   category × store × need state and pivot each category to the store × need-state matrix of
   % of the store's category sales;
2. per category: StandardScaler, then KMeans(n_init=10) for every k = 2…10 with the full
   silhouette, Calinski–Harabasz and Davies–Bouldin scores; k chosen by the silhouette;
3. external features the same way (numeric columns other than identifiers, missing cells
   filled with the column median);
4. the reference system's merge: demand cluster = internal × external cluster per category;
   stores of demand clusters smaller than the minimum size move to the nearest centroid of a
   large one (standardised internal and external features side by side).

scikit-learn runs on one thread (``--threads 1``, the default here): on this 2-core machine, which
runs other work at the same time, its default of an OpenMP thread per core made this script up
to 10x slower (4.3 s against 46.8 s on 1,000 stores x 4 categories, measured while other jobs
were running). One thread is the baseline's best setting here, so every ratio to it errs on the
side of the baseline; ``--threads 0`` keeps scikit-learn's default.
The result has the columns of the pipeline's ``final_store_clusters`` export (STORE_NBR,
CATEGORY, INTERNAL_CLUSTER, EXTERNAL_CLUSTER, DEMAND_CLUSTER, REBALANCED_CLUSTER), so the
benchmark scores both against the planted truth with the same code.

    python benchmarks/baseline_analyst.py RAW_DIR --out OUT_DIR [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

K_RANGE = range(2, 11)
MIN_CLUSTER_SIZE = 20  # the reference system's minimum demand-cluster size (as the pipeline's)
SEED = 42
RESULT_FILE = "baseline_clusters.parquet"


def need_state_shares(raw_dir: Path) -> dict[str, pd.DataFrame]:
    """Per category, the store × need-state matrix of % of the store's category sales."""
    sales = pd.read_parquet(
        raw_dir / "internal_sales.parquet",
        columns=["SKU_NBR", "STORE_NBR", "CAT_DSC", "TOTAL_SALES"],
    )
    need_states = pd.read_csv(
        raw_dir / "need_state.csv", usecols=["PRODUCT_ID", "NEED_STATE"]
    ).drop_duplicates()
    # A SKU in several need states splits its sales evenly between them.
    need_states["WEIGHT"] = 1.0 / need_states.groupby("PRODUCT_ID")["NEED_STATE"].transform("size")
    merged = sales.merge(need_states, left_on="SKU_NBR", right_on="PRODUCT_ID", how="inner")
    unmatched = 100.0 * (
        1.0 - merged["TOTAL_SALES"].mul(merged["WEIGHT"]).sum() / sales["TOTAL_SALES"].sum()
    )
    print(f"  {len(sales):,} sales rows; {unmatched:.2f}% of sales on unmapped SKUs", flush=True)
    merged["SALES"] = merged["TOTAL_SALES"] * merged["WEIGHT"]
    summed = merged.groupby(["CAT_DSC", "STORE_NBR", "NEED_STATE"], as_index=False)["SALES"].sum()
    del sales, merged
    shares = {}
    for category, part in summed.groupby("CAT_DSC"):
        wide = part.pivot_table(
            index="STORE_NBR", columns="NEED_STATE", values="SALES", aggfunc="sum", fill_value=0.0
        )
        totals = wide.sum(axis=1)
        wide = wide[totals > 0]
        shares[str(category)] = wide.div(totals[totals > 0], axis=0) * 100.0
    return shares


def external_features(raw_dir: Path) -> pd.DataFrame:
    """Numeric store features indexed by STORE_NBR; identifiers left out, gaps filled."""
    frame = pd.read_parquet(raw_dir / "external_sales.parquet")
    frame = frame.drop_duplicates("STORE_NBR").set_index("STORE_NBR")
    numeric = frame.select_dtypes("number")
    # Codes are numbers but not measurements: DISTRICT_ID, PLANOGRAM_NBR, ...
    numeric = numeric.drop(columns=[c for c in numeric if c.endswith(("_ID", "_NBR"))])
    return numeric.fillna(numeric.median())


def cluster_with_silhouette(features: pd.DataFrame) -> tuple[pd.Series, np.ndarray, pd.DataFrame]:
    """Scaled features, every k of ``K_RANGE`` with the three scores, the silhouette's choice.

    Returns the labels (indexed like ``features``), the scaled matrix and the k-curve.
    """
    matrix = StandardScaler().fit_transform(features.to_numpy(dtype=float))
    curve, fits = [], {}
    for k in K_RANGE:
        if k >= len(matrix):
            break
        model = KMeans(n_clusters=k, n_init=10, random_state=SEED).fit(matrix)
        fits[k] = model.labels_
        curve.append(
            {
                "k": k,
                "silhouette": silhouette_score(matrix, model.labels_),
                "calinski_harabasz": calinski_harabasz_score(matrix, model.labels_),
                "davies_bouldin": davies_bouldin_score(matrix, model.labels_),
            }
        )
    scores = pd.DataFrame(curve)
    best = int(scores.loc[scores["silhouette"].idxmax(), "k"])
    return pd.Series(fits[best], index=features.index), matrix, scores


def merge_category(
    internal: pd.Series,
    internal_matrix: np.ndarray,
    external: pd.Series,
    external_matrix: pd.DataFrame,
) -> pd.DataFrame:
    """Demand clusters (internal × external) and small ones moved to the nearest large one."""
    stores = internal.index
    ext = external.reindex(stores)
    demand = internal.astype(str) + "-" + ext.map(lambda v: "NA" if pd.isna(v) else str(int(v)))
    # Stores without external features sit at the external mean (0 after scaling).
    space = np.hstack([internal_matrix, external_matrix.reindex(stores).fillna(0.0).to_numpy()])
    sizes = demand.value_counts()
    large = sizes[sizes >= MIN_CLUSTER_SIZE].index
    rebalanced = demand.copy()
    if len(large) and len(large) < len(sizes):
        labels = demand.to_numpy()
        centroids = np.vstack([space[labels == label].mean(axis=0) for label in large])
        small = ~demand.isin(large).to_numpy()
        distances = ((space[small, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        rebalanced[small] = np.asarray(large)[distances.argmin(axis=1)]
    return pd.DataFrame(
        {
            "STORE_NBR": stores,
            "INTERNAL_CLUSTER": internal.to_numpy() + 1,
            "EXTERNAL_CLUSTER": (ext + 1).astype("Int64").to_numpy(),
            "DEMAND_CLUSTER": demand.to_numpy(),
            "REBALANCED_CLUSTER": rebalanced.to_numpy(),
        }
    )


def run_baseline(raw_dir: Path, out_dir: Path) -> Path:
    """Run the whole analyst-style pipeline; print seconds per stage; return the result file."""
    stages: dict[str, float] = {}
    started = time.perf_counter()
    shares = need_state_shares(raw_dir)
    stages["internal preprocessing (pandas)"] = time.perf_counter() - started

    mark = time.perf_counter()
    internal = {}
    for category, matrix in shares.items():
        labels, scaled, _ = cluster_with_silhouette(matrix)
        internal[category] = (labels, scaled)
    stages["internal clustering (k = 2..10, 3 scores)"] = time.perf_counter() - mark

    mark = time.perf_counter()
    features = external_features(raw_dir)
    external, external_scaled, _ = cluster_with_silhouette(features)
    external_matrix = pd.DataFrame(external_scaled, index=features.index)
    stages["external preprocessing + clustering"] = time.perf_counter() - mark

    mark = time.perf_counter()
    frames = []
    for category, (labels, scaled) in internal.items():
        merged = merge_category(labels, scaled, external, external_matrix)
        merged.insert(1, "CATEGORY", category)
        frames.append(merged)
    result = pd.concat(frames, ignore_index=True)
    stages["merge (demand = external x internal)"] = time.perf_counter() - mark

    mark = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULT_FILE
    result.to_parquet(path, index=False)
    stages["write"] = time.perf_counter() - mark

    for stage, seconds in stages.items():
        print(f"  ✓ {stage:<44} {seconds:8.1f} s", flush=True)
    print(
        f"  {result['STORE_NBR'].nunique():,} stores, {len(shares)} categories, "
        f"{time.perf_counter() - started:.1f} s in all",
        flush=True,
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="The analyst-style baseline of make bench.")
    parser.add_argument("raw_dir", type=Path, help="folder with the three generated inputs")
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {RESULT_FILE}")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OpenMP/BLAS threads for scikit-learn (default 1; 0: scikit-learn's default)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        with threadpool_limits(limits=args.threads):
            run_baseline(args.raw_dir, args.out)
    else:
        run_baseline(args.raw_dir, args.out)


if __name__ == "__main__":
    main()

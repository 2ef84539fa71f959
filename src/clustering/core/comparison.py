"""Compare two clusterings of the same stores (two runs, or a run and a what-if scenario).

Cluster labels of two runs are not aligned (``I2-E3`` of one run need not be ``I2-E3`` of the
other), so per category the clusters of A are first matched one-to-one to those of B by the
stores they share (the assignment maximising the overlap). A store *moved* when its cluster in
B is not the counterpart of its cluster in A. The agreement of the two partitions is the
adjusted Rand index (1 = the same clusters, whatever their names; about 0 = unrelated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clustering.core.tables import as_text, compact_text

STORE_COLUMNS = ["CATEGORY", "STORE_NBR", "CLUSTER_A", "CLUSTER_B", "COUNTERPART_B", "MOVED"]
_STORE_TEXT = ["CATEGORY", "CLUSTER_A", "CLUSTER_B", "COUNTERPART_B"]
CLUSTER_COLUMNS = ["CATEGORY", "CLUSTER_A", "SIZE_A", "CLUSTER_B", "SIZE_B", "SIZE_CHANGE"]
SUMMARY_COLUMNS = [
    "CATEGORY",
    "STORES",
    "ARI",
    "MOVED",
    "CLUSTERS_A",
    "CLUSTERS_B",
    "ONLY_IN_A",
    "ONLY_IN_B",
]


@dataclass(frozen=True)
class Comparison:
    """Per category figures, per store details and per cluster size changes."""

    summary: pd.DataFrame  # SUMMARY_COLUMNS
    stores: pd.DataFrame  # STORE_COLUMNS, every store both have
    clusters: pd.DataFrame  # CLUSTER_COLUMNS, matched pairs and clusters of one side only

    @property
    def moved(self) -> pd.DataFrame:
        """The stores that changed cluster."""
        return self.stores[self.stores["MOVED"]]


def _match(contingency: pd.DataFrame) -> dict[str, str]:
    """A-cluster → B-cluster pairs maximising the stores they share (one-to-one)."""
    from scipy.optimize import linear_sum_assignment

    counts = contingency.to_numpy(dtype=float)
    rows, cols = linear_sum_assignment(-counts)
    return {
        str(contingency.index[r]): str(contingency.columns[c])
        for r, c in zip(rows, cols, strict=True)
        if counts[r, c] > 0
    }


def _compare_category(
    category: str, a: pd.Series, b: pd.Series, only_moved: bool = False
) -> tuple[dict[str, object], pd.DataFrame, pd.DataFrame]:
    from sklearn.metrics import adjusted_rand_score

    common = a.index.intersection(b.index)
    # Labels as integer codes: comparing text labels store by store cost seconds per category
    # at 50,000 stores (sorting strings), codes cost milliseconds.
    codes_a, uniques_a = pd.factorize(as_text(a.loc[common]), sort=True)
    codes_b, uniques_b = pd.factorize(as_text(b.loc[common]), sort=True)
    names_a = np.asarray(uniques_a, dtype=object)
    names_b = np.asarray(uniques_b, dtype=object)
    counts = np.bincount(
        codes_a * len(names_b) + codes_b, minlength=len(names_a) * len(names_b)
    ).reshape(len(names_a), len(names_b))
    contingency = pd.DataFrame(counts, index=names_a, columns=names_b)
    match = _match(contingency) if len(common) else {}
    # The counterpart's code in B for each cluster of A (-1: no counterpart).
    position_b = {name: i for i, name in enumerate(names_b)}
    counterpart_code = np.array(
        [position_b.get(match.get(str(name), ""), -1) for name in names_a], dtype=np.int64
    )
    store_counterpart = counterpart_code[codes_a] if len(common) else np.zeros(0, np.int64)
    moved = store_counterpart != codes_b
    keep = moved if only_moved else np.ones(len(common), dtype=bool)
    counterpart_names = np.array([*names_b, None], dtype=object)  # code -1: no counterpart
    stores = pd.DataFrame(
        {
            "CATEGORY": category,
            "STORE_NBR": common.to_numpy(dtype=np.int64)[keep],
            "CLUSTER_A": names_a[codes_a[keep]],
            "CLUSTER_B": names_b[codes_b[keep]],
            "COUNTERPART_B": counterpart_names[store_counterpart[keep]],
            "MOVED": moved[keep],
        },
        columns=STORE_COLUMNS,
    )
    sizes_a, sizes_b = as_text(a).value_counts(), as_text(b).value_counts()
    sizes_a.index, sizes_b.index = sizes_a.index.astype(object), sizes_b.index.astype(object)
    rows = []
    for cluster_a in sorted(sizes_a.index):
        cluster_b = match.get(cluster_a)
        size_b = int(sizes_b[cluster_b]) if cluster_b is not None else 0
        rows.append((cluster_a, int(sizes_a[cluster_a]), cluster_b, size_b))
    for cluster_b in sorted(set(sizes_b.index) - set(match.values())):
        rows.append((None, 0, cluster_b, int(sizes_b[cluster_b])))
    clusters = pd.DataFrame(
        [
            {
                "CATEGORY": category,
                "CLUSTER_A": ca,
                "SIZE_A": sa,
                "CLUSTER_B": cb,
                "SIZE_B": sb,
                "SIZE_CHANGE": sb - sa,
            }
            for ca, sa, cb, sb in rows
        ],
        columns=CLUSTER_COLUMNS,
    )
    ari = float(adjusted_rand_score(codes_a, codes_b)) if len(common) > 1 else float("nan")
    summary = {
        "CATEGORY": category,
        "STORES": len(common),
        "ARI": ari,
        "MOVED": int(moved.sum()),
        "CLUSTERS_A": int(a.nunique()),
        "CLUSTERS_B": int(b.nunique()),
        "ONLY_IN_A": len(a.index.difference(b.index)),
        "ONLY_IN_B": len(b.index.difference(a.index)),
    }
    return summary, stores, clusters


def compare_final_tables(
    a: pd.DataFrame,
    b: pd.DataFrame,
    cluster_column: str = "REBALANCED_CLUSTER",
    *,
    only_moved: bool = False,
) -> Comparison:
    """Compare two final tables (``STORE_NBR``, ``CATEGORY`` and ``cluster_column``) per
    category both have; with ``only_moved`` the store list keeps the moved stores only."""
    # Row positions per category, found once (not one scan of millions of rows per category).
    rows_a = {str(c): i for c, i in a.groupby(as_text(a["CATEGORY"])).indices.items()}
    rows_b = {str(c): i for c, i in b.groupby(as_text(b["CATEGORY"])).indices.items()}
    summaries, stores, clusters = [], [], []
    for category in sorted(set(rows_a) & set(rows_b)):
        left = a.iloc[rows_a[category]].set_index("STORE_NBR")[cluster_column]
        right = b.iloc[rows_b[category]].set_index("STORE_NBR")[cluster_column]
        summary, store_rows, cluster_rows = _compare_category(category, left, right, only_moved)
        summaries.append(summary)
        # Text in Arrow buffers: every store of every category is listed.
        stores.append(compact_text(store_rows, _STORE_TEXT))
        clusters.append(cluster_rows)
    return Comparison(
        summary=pd.DataFrame(summaries, columns=SUMMARY_COLUMNS),
        stores=pd.concat(stores, ignore_index=True)
        if stores
        else pd.DataFrame(columns=STORE_COLUMNS),
        clusters=pd.concat(clusters, ignore_index=True)
        if clusters
        else pd.DataFrame(columns=CLUSTER_COLUMNS),
    )


def parameter_changes(a: dict[str, object], b: dict[str, object], prefix: str = "") -> list[str]:
    """``"internal_clustering.max_k: 10 → 4"`` for every leaf that differs between two nested
    parameter mappings."""
    changes = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(left, dict) and isinstance(right, dict):
            changes += parameter_changes(left, right, f"{name}.")
        elif left != right:
            changes.append(f"{name}: {left} → {right}")
    return changes

"""Choosing k and fitting clusters on one feature matrix.

How k is chosen (every figure is kept on the k-curve as evidence):

1. The k range is clipped to what the stores allow: at most ``n // min_cluster_size`` clusters,
   and fewer than the number of stores.
2. k is chosen on a sample of at most ``selection_sample_size`` stores (cost stays linear in the
   number of stores). The ``trim_share`` of sampled stores in the sparsest places (largest
   distance to their 10th nearest neighbour) are left out of the choice: stores that follow no
   store type would otherwise be given clusters of their own.
3. For every k, k-means on those stores gives the silhouette (on at most
   ``silhouette_sample_size`` stores), Calinski–Harabasz, Davies–Bouldin, the inertia and the BIC
   of a Gaussian mixture with one shared diagonal covariance evaluated on the k-means partition.
   A k whose smallest cluster, scaled to all stores, is below ``min_cluster_size`` is
   inadmissible.
4. The selection rule picks one admissible k. The default, ``bic_silhouette``, takes the k the
   BIC prefers unless it costs more than ``silhouette_tolerance`` of silhouette against the
   silhouette's own choice, in which case it takes the largest k in between that does not.
   Silhouette alone under-picks when some store types are close to each other; BIC alone
   over-splits types whose stores are not Gaussian. The other rules stay selectable:
   ``silhouette``, ``bic``, ``gap`` (gap statistic), ``stability`` (agreement across
   resamples), ``prediction_strength``, ``calinski_harabasz``, ``davies_bouldin``, ``combined``.
5. The chosen k is fitted on all stores (``n_init`` restarts, the same trimming: the sparsest
   stores do not pull the centres, and are then assigned to the nearest one). Its stability
   (mean adjusted Rand index between fits on ``stability_resamples`` resamples) is recorded.

Fallback when no k in the range is admissible: k is lowered step by step below ``min_k`` (down to
2); if even two clusters cannot both reach the minimum size, all stores of the category form one
cluster. ``ClusterResult.fallback`` then says why. The minimum size is never broken and every
store is assigned. Labels are 1-based and ordered by cluster size (1 = largest; ties by
centroid), so the same data always gives the same numbering.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

# scikit-learn is imported inside the functions that use it: importing it costs about 2 s, and
# every Dagster step process and UI reload imports this module without always fitting anything.
from clustering.core.params import ClusteringParams

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

K_CURVE_COLUMNS = [
    "k",
    "silhouette",
    "calinski_harabasz",
    "davies_bouldin",
    "inertia",
    "bic",
    "smallest_cluster",
    "admissible",
    "score",
    "stability",
    "chosen",
]

_METRIC_NAMES = ("silhouette", "calinski_harabasz", "davies_bouldin", "bic", "stability")
_NEIGHBOURS = 10


@dataclass(frozen=True)
class ClusterResult:
    """Assignments and the evidence behind them for one feature matrix."""

    labels: pd.Series  # index STORE_NBR, values 1..k
    k: int
    k_curve: pd.DataFrame  # columns K_CURVE_COLUMNS, one row per k tried
    centroids: pd.DataFrame  # index cluster 1..k, columns = matrix columns (scaled space)
    metrics: dict[str, float]
    fallback: str | None = None
    trimmed: list[int] = field(default_factory=list)  # stores left out of fitting the centres


@functools.cache
def _thread_controller() -> ThreadpoolController:
    # Looking up the loaded BLAS and OpenMP libraries takes ~6 ms: once per process, after
    # importing what loads them (scikit-learn's OpenMP, SciPy's BLAS; in workers already done).
    import scipy.spatial  # noqa: F401
    import sklearn.cluster  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_thread() -> AbstractContextManager[object]:
    """A context in which BLAS and OpenMP use one thread (threadpoolctl's ``limit``)."""
    limit: AbstractContextManager[object] = _thread_controller().limit(limits=1)
    return limit


def adjusted_rand(first: np.ndarray, second: np.ndarray) -> float:
    """scikit-learn's ``adjusted_rand_score`` of two labellings by integers 0..k-1, from one
    contingency count (the library's version validates its input and builds a sparse matrix:
    half the stability measure's time)."""
    n = len(first)
    if n < 2:
        return 1.0
    k_second = int(second.max()) + 1
    cells = (int(first.max()) + 1) * k_second
    counts = np.bincount(first * k_second + second, minlength=cells).astype(np.int64)
    table = counts.reshape(-1, k_second)
    sum_squares = int((table**2).sum())
    rows = table.sum(axis=1)
    columns = table.sum(axis=0)
    true_positive = sum_squares - n
    false_positive = int((table @ columns).sum()) - sum_squares
    false_negative = int((table.T @ rows).sum()) - sum_squares
    true_negative = n * n - false_positive - false_negative - sum_squares
    if false_negative == 0 and false_positive == 0:
        return 1.0
    return (
        2.0
        * (true_positive * true_negative - false_negative * false_positive)
        / (
            (true_positive + false_negative) * (false_negative + true_negative)
            + (true_positive + false_positive) * (false_positive + true_negative)
        )
    )


def _kmeans(values: np.ndarray, k: int, n_init: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0..k-1 and centres of a single-threaded k-means fit."""
    from sklearn.cluster import KMeans

    if k == 1:
        return np.zeros(len(values), dtype=np.int64), values.mean(axis=0, keepdims=True)
    model = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed)
    labels = model.fit_predict(values)
    return np.asarray(labels, dtype=np.int64), np.asarray(model.cluster_centers_)


def _nearest_centre(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distances = ((values[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return np.asarray(distances.argmin(axis=1), dtype=np.int64)


def squared_distances(values: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between all rows (n × n), through one matrix product."""
    squared = np.einsum("ij,ij->i", values, values)
    d2: np.ndarray = values @ values.T
    d2 *= -2.0
    d2 += squared[:, None]
    d2 += squared[None, :]
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def sparse_store_mask(
    values: np.ndarray, share: float, neighbours: int = _NEIGHBOURS
) -> np.ndarray:
    """True for the ``share`` of rows farthest from their ``neighbours``-th nearest neighbour.

    These are stores in sparse places of the feature space: they follow no store type and, left
    in, k-means tends to give them a cluster of their own.
    """
    n = len(values)
    neighbours = min(neighbours, n - 1)
    if share <= 0 or neighbours < 2:
        return np.zeros(n, dtype=bool)
    reach = neighbour_reach(values, neighbours)
    return np.asarray(reach > np.quantile(reach, 1.0 - share))


def neighbour_reach(values: np.ndarray, neighbours: int) -> np.ndarray:
    """Each row's distance to its ``neighbours``-th nearest other row, from a k-d tree:
    O(n log n), where the full distance matrix (n²) took 13 % of a category's time at 3,000
    stores."""
    from scipy.spatial import cKDTree

    # The nearest row found is the store itself (distance 0), hence one more.
    found, _ = cKDTree(values).query(values, k=neighbours + 1)
    return np.asarray(found[:, neighbours], dtype=float)


def silhouettes_precomputed(distances: np.ndarray, labelings: list[np.ndarray]) -> list[float]:
    """Mean silhouette of each of ``labelings`` given the rows' pairwise ``distances``.

    scikit-learn's definition (0 for a store alone in its cluster; NaN for a single cluster).
    Per-cluster distance sums come from one matrix product for all labelings together (~6x
    faster than ``silhouette_score(metric="precomputed")`` at 2,000 rows for one labelling;
    the k-sweep's nine labellings in one product read the distance matrix once instead of nine
    times: 44 ms → 14 ms).
    """
    n = len(distances)
    rows = np.arange(n)
    coded = [np.unique(labels, return_inverse=True) for labels in labelings]
    widths = [len(groups) for groups, _ in coded]
    members = np.zeros((n, sum(widths)), dtype=distances.dtype)
    offsets = np.concatenate(([0], np.cumsum(widths)))
    for (_, inverse), offset in zip(coded, offsets[:-1], strict=True):
        members[rows, offset + inverse.reshape(-1)] = 1.0
    all_sums = np.asarray(distances @ members, dtype=np.float64)
    scores = []
    for (_, inverse), k, offset in zip(coded, widths, offsets[:-1], strict=True):
        if k < 2 or k >= n:
            scores.append(float("nan"))
            continue
        inverse = inverse.reshape(-1)
        sums = all_sums[:, offset : offset + k]
        counts = np.bincount(inverse, minlength=k).astype(np.float64)
        own = counts[inverse]
        within = sums[rows, inverse] / np.maximum(own - 1.0, 1.0)
        means = sums / counts
        means[rows, inverse] = np.inf
        nearest = means.min(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            each = (nearest - within) / np.maximum(within, nearest)
        each[own == 1] = 0.0
        scores.append(float(np.nan_to_num(each).mean()))
    return scores


def fit_clusters(
    values: np.ndarray, k: int, params: ClusteringParams, trimmed: np.ndarray | None = None
) -> np.ndarray:
    """Fit the configured algorithm with ``k`` clusters on the untrimmed rows; every row gets a
    label 0..k-1 (trimmed rows go to the nearest centre). Single-threaded."""
    if k == 1:
        return np.zeros(len(values), dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.mixture import GaussianMixture

    core = np.ones(len(values), dtype=bool) if trimmed is None else ~trimmed
    if core.sum() < k:
        core[:] = True
    # One thread per fit: two OpenMP threads were measured 2-2.7x slower on 2 cores; categories
    # run in parallel processes instead.
    with one_thread():
        if params.algorithm == "kmeans":
            _, centres = _kmeans(values[core], k, params.n_init, params.seed)
            return _nearest_centre(values, centres)
        if params.algorithm == "gmm":
            gmm = GaussianMixture(
                n_components=k,
                covariance_type="diag",
                n_init=3,
                random_state=params.seed,
                reg_covar=1e-4,
            ).fit(values[core])
            return np.asarray(gmm.predict(values), dtype=np.int64)
        # Ward has no centres to assign to; it clusters every store (O(n²) memory).
        ward = AgglomerativeClustering(n_clusters=k, linkage="ward")
        return np.asarray(ward.fit_predict(values), dtype=np.int64)


def sampled_silhouette(values: np.ndarray, labels: np.ndarray, params: ClusteringParams) -> float:
    """Silhouette on at most ``silhouette_sample_size`` stores, averaged over a few seeds.

    The full silhouette is O(n²): 7-9 s per sweep at 10k stores against 0.3 s on a 2,000 sample,
    with the same k chosen.
    """
    from sklearn.metrics import silhouette_score

    n = len(values)
    if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= n:
        return float("nan")
    if n <= params.silhouette_sample_size:
        return float(silhouette_score(values, labels))
    scores = [
        silhouette_score(
            values, labels, sample_size=params.silhouette_sample_size, random_state=params.seed + i
        )
        for i in range(params.silhouette_seeds)
    ]
    return float(np.mean(scores))


def mixture_bic(values: np.ndarray, labels: np.ndarray, k: int) -> float:
    """BIC of a Gaussian mixture with one shared diagonal covariance, on a hard partition.

    The k-means partition fixes the components; the mixture weights, means and the per-feature
    within-cluster variance are their maximum-likelihood values. Lower is better.
    """
    n, d = values.shape
    sizes = np.bincount(labels, minlength=k).astype(float)
    means = np.vstack([values[labels == c].mean(axis=0) for c in range(k)])
    residual = values - means[labels]
    variance = np.maximum((residual**2).sum(axis=0) / max(n - k, 1), 1e-12)
    log_likelihood = (
        float(np.sum(sizes * np.log(np.maximum(sizes, 1.0) / n)))
        - 0.5 * n * float(np.sum(np.log(2.0 * np.pi * variance)))
        - 0.5 * float(np.sum(residual**2 / variance))
    )
    parameters = k * d + d + (k - 1)
    return float(-2.0 * log_likelihood + parameters * np.log(n))


class _SilhouetteSample:
    """Silhouette of any labelling on one fixed sample of the selection stores, whose pairwise
    distances are computed once (instead of once per k)."""

    def __init__(self, values: np.ndarray, params: ClusteringParams) -> None:
        n = len(values)
        size = min(n, params.silhouette_sample_size)
        rng = np.random.default_rng(params.seed + 7)
        self.rows = np.sort(rng.choice(n, size, replace=False)) if size < n else np.arange(n)
        self.distances: np.ndarray | None = None
        if size > 2:
            squared = squared_distances(values[self.rows])
            # Single precision halves the matrix product of every k's silhouette; the sums of
            # 2,000 distances keep ~6 significant digits, the score is shown with three.
            self.distances = np.sqrt(squared, out=squared).astype(np.float32)

    def many(self, labelings: list[np.ndarray]) -> list[float]:
        """The silhouette of each labelling, from one product with the distance matrix."""
        if self.distances is None:
            return [float("nan")] * len(labelings)
        return silhouettes_precomputed(self.distances, [labels[self.rows] for labels in labelings])


def _curve_row(
    values: np.ndarray,
    labels: np.ndarray,
    k: int,
    scale: float,
    params: ClusteringParams,
    silhouette: float | None = None,
) -> dict[str, object]:
    """Metrics of one k on the selection stores; sizes scaled to the whole category.
    ``silhouette`` is the labelling's, when already measured (else measured here on a sample)."""
    counts = np.bincount(labels, minlength=k)
    smallest = round(float(counts.min()) * scale) if len(labels) else 0
    several = len(np.unique(labels)) >= 2
    measured = silhouette if silhouette is not None else sampled_silhouette(values, labels, params)
    calinski, davies = _ch_db(values, labels) if several else (np.nan, np.nan)
    return {
        "k": k,
        "silhouette": measured if several else np.nan,
        "calinski_harabasz": calinski,
        "davies_bouldin": davies,
        "inertia": _inertia(values, labels),
        "bic": mixture_bic(values, labels, k),
        "smallest_cluster": smallest,
        "admissible": bool((counts > 0).all() and smallest >= params.min_cluster_size),
    }


def _ch_db(values: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Calinski–Harabasz and Davies–Bouldin scores (scikit-learn's definitions) from one pass
    over the clusters: the library's versions validate and recompute distances per call, which
    cost more than the k-means fit at 3,000 stores."""
    groups, inverse = np.unique(labels, return_inverse=True)
    n, k = len(labels), len(groups)
    counts = np.bincount(inverse, minlength=k).astype(float)
    centres = np.zeros((k, values.shape[1]))
    np.add.at(centres, inverse, values)
    centres /= counts[:, None]
    residual = values - centres[inverse]
    within = float(np.einsum("ij,ij->", residual, residual))
    between = float((counts * ((centres - values.mean(axis=0)) ** 2).sum(axis=1)).sum())
    calinski = 1.0 if within == 0.0 else between * (n - k) / (within * (k - 1.0))
    spread = np.bincount(inverse, weights=np.sqrt((residual**2).sum(axis=1)), minlength=k) / counts
    gaps = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2))
    if np.allclose(spread, 0.0) or np.allclose(gaps, 0.0):
        return calinski, 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (spread[:, None] + spread[None, :]) / gaps
    ratio[~np.isfinite(ratio)] = np.inf
    np.fill_diagonal(ratio, -np.inf)
    return calinski, float(ratio.max(axis=1).mean())


def _inertia(values: np.ndarray, labels: np.ndarray) -> float:
    total = 0.0
    for label in np.unique(labels):
        members = values[labels == label]
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total


def _minmax(series: pd.Series) -> pd.Series:
    span = series.max() - series.min()
    if not np.isfinite(span) or span == 0:
        return pd.Series(1.0, index=series.index)
    return pd.Series((series - series.min()) / span)


def selection_scores(curve: pd.DataFrame, rule: str, tolerance: float = 0.05) -> pd.Series:
    """Score each row of a k-curve (higher is better) under a curve-based selection ``rule``.

    ``curve`` holds the admissible rows, sorted by k. Rules that need resampling (``gap``,
    ``stability``, ``prediction_strength``) put their own figure in the ``score`` column first.
    """
    if rule == "silhouette":
        return pd.Series(curve["silhouette"].astype(float))
    if rule == "calinski_harabasz":
        return pd.Series(curve["calinski_harabasz"].astype(float))
    if rule == "davies_bouldin":
        return pd.Series(-curve["davies_bouldin"].astype(float))
    if rule == "bic":
        return pd.Series(-curve["bic"].astype(float))
    if rule == "bic_silhouette":
        return _bic_silhouette_scores(curve, tolerance)
    if rule in ("gap", "stability", "prediction_strength"):
        return pd.Series(curve["score"].astype(float))
    # combined: each metric min-max normalised over the admissible ks, then averaged.
    return (
        _minmax(curve["silhouette"].astype(float))
        + _minmax(curve["calinski_harabasz"].astype(float))
        + _minmax(-curve["davies_bouldin"].astype(float))
    ) / 3.0


def _bic_silhouette_scores(curve: pd.DataFrame, tolerance: float) -> pd.Series:
    """1 for the k chosen by 'BIC, vetoed by silhouette', 0 elsewhere (see the module text)."""
    ks = curve["k"].astype(int)
    silhouette = curve["silhouette"].astype(float).fillna(-1.0)
    by_silhouette = int(ks.to_numpy()[int(np.argmax(silhouette.to_numpy()))])
    by_bic = int(ks.to_numpy()[int(np.argmin(curve["bic"].to_numpy(dtype=float)))])
    chosen = by_silhouette
    if by_bic > by_silhouette:
        floor = float(silhouette[ks == by_silhouette].iloc[0]) - tolerance
        between = curve[(ks > by_silhouette) & (ks <= by_bic) & (silhouette >= floor)]
        if len(between):
            chosen = int(between["k"].max())
    return pd.Series((ks == chosen).astype(float), index=curve.index)


def canonical_labels(values: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Renumber clusters 1..k by size (largest first), ties broken by centroid coordinates."""
    keys = []
    for label in np.unique(raw):
        members = values[raw == label]
        keys.append((-len(members), tuple(np.round(members.mean(axis=0), 9)), label))
    order = {label: rank + 1 for rank, (_, _, label) in enumerate(sorted(keys))}
    return np.array([order[label] for label in raw], dtype=np.int64)


def _smallest(labels: np.ndarray) -> int:
    return int(np.bincount(labels).min()) if len(labels) else 0


def _selection_sample(values: np.ndarray, params: ClusteringParams) -> np.ndarray:
    n = len(values)
    if n <= params.selection_sample_size:
        return np.arange(n)
    rng = np.random.default_rng(params.seed)
    return np.sort(rng.choice(n, params.selection_sample_size, replace=False))


def stability(values: np.ndarray, k: int, params: ClusteringParams) -> float:
    """Mean adjusted Rand index between k-means fits on ``stability_resamples`` resamples.

    Each fit sees ``stability_share`` of the stores (drawn without replacement) and labels all of
    them; 1.0 means every resample gives the same clusters.
    """
    if k < 2 or params.stability_resamples < 2:
        return float("nan")
    n = len(values)
    rng = np.random.default_rng(params.seed + 1)
    size = max(k, round(params.stability_share * n))
    labelings = []
    for i in range(params.stability_resamples):
        rows = rng.choice(n, size=size, replace=False)
        _, centres = _kmeans(values[rows], k, 3, params.seed + i)
        labelings.append(_nearest_centre(values, centres))
    pairs = [
        adjusted_rand(labelings[i], labelings[j])
        for i in range(len(labelings))
        for j in range(i + 1, len(labelings))
    ]
    return float(np.mean(pairs))


def _gap_scores(values: np.ndarray, ks: list[int], seed: int, references: int = 5) -> list[float]:
    """Tibshirani's gap statistic turned into a score: 1 for the chosen k, else 0.

    The chosen k is the smallest with Gap(k) >= Gap(k+1) - s(k+1); the references are uniform in
    the box of the data's principal axes.
    """
    centred = values - values.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    rotated = centred @ axes.T
    rng = np.random.default_rng(seed)
    boxes = [
        rng.uniform(rotated.min(axis=0), rotated.max(axis=0), rotated.shape) @ axes
        for _ in range(references)
    ]
    candidates = sorted({1, *ks, max(ks) + 1})
    gaps: dict[int, float] = {}
    spread: dict[int, float] = {}
    for k in candidates:
        own = np.log(max(_inertia(centred, _kmeans(centred, k, 3, seed)[0]), 1e-12))
        logs = [np.log(max(_inertia(box, _kmeans(box, k, 2, seed)[0]), 1e-12)) for box in boxes]
        gaps[k] = float(np.mean(logs) - own)
        spread[k] = float(np.std(logs) * np.sqrt(1.0 + 1.0 / references))
    chosen = next((k for k in ks if gaps[k] >= gaps[k + 1] - spread[k + 1]), max(ks))
    return [1.0 if k == chosen else 0.0 for k in ks]


def _prediction_strength(values: np.ndarray, k: int, seed: int) -> float:
    """Tibshirani & Walther's prediction strength of k (two halves, both directions)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(values))
    halves = (values[order[: len(values) // 2]], values[order[len(values) // 2 :]])
    strengths = []
    for train, test in (halves, halves[::-1]):
        _, centres = _kmeans(train, k, 3, seed)
        predicted = _nearest_centre(test, centres)
        own, _ = _kmeans(test, k, 3, seed)
        worst = 1.0
        for cluster in range(k):
            members = predicted[own == cluster]
            if len(members) < 2:
                continue
            counts = np.bincount(members, minlength=k).astype(float)
            worst = min(
                worst, float((counts * (counts - 1)).sum() / (len(members) * (len(members) - 1)))
            )
        strengths.append(worst)
    return float(np.mean(strengths))


def _resampling_scores(
    values: np.ndarray, curve: pd.DataFrame, params: ClusteringParams
) -> pd.Series:
    """The ``score`` of each admissible k for the rules that need extra fits."""
    ks = [int(k) for k in curve["k"]]
    if params.selection == "gap":
        return pd.Series(_gap_scores(values, ks, params.seed), index=curve.index)
    if params.selection == "stability":
        scores = [stability(values, k, params) for k in ks]
        # Ties go to the larger k: a finer stable clustering says more.
        return pd.Series([s + 1e-6 * k for s, k in zip(scores, ks, strict=True)], index=curve.index)
    strengths = [_prediction_strength(values, k, params.seed) for k in ks]
    # The largest k whose prediction strength reaches 0.8 (the authors' threshold).
    passing = [k for k, s in zip(ks, strengths, strict=True) if s >= 0.8] or [min(ks)]
    return pd.Series([1.0 if k == max(passing) else 0.0 for k in ks], index=curve.index)


def choose_k(matrix: pd.DataFrame, params: ClusteringParams) -> ClusterResult:
    """Cluster the stores of ``matrix`` (index ``STORE_NBR``), choosing k as the module says."""
    values = matrix.to_numpy(dtype=float)
    n = len(values)
    with one_thread():
        sample = _selection_sample(values, params)
        sparse = sparse_store_mask(
            values[sample], params.trim_share, min(_NEIGHBOURS, params.min_cluster_size - 1)
        )
        selection = values[sample][~sparse]
        scale = n / max(len(selection), 1)
        top = min(params.max_k, n // params.min_cluster_size, n - 1, len(selection) - 1)
        ks = list(range(params.min_k, top + 1))
        labelings = [_kmeans(selection, k, params.selection_n_init, params.seed)[0] for k in ks]
        # Every k's silhouette on one fixed sample, its distance matrix read once for all.
        silhouettes = _SilhouetteSample(selection, params).many(labelings) if ks else []
        rows = [
            _curve_row(selection, labels, k, scale, params, measured)
            for k, labels, measured in zip(ks, labelings, silhouettes, strict=True)
        ]
        curve = pd.DataFrame(rows, columns=K_CURVE_COLUMNS)
        curve["score"] = np.nan
        curve["stability"] = np.nan
        curve["chosen"] = False
        curve["admissible"] = curve["admissible"].astype(bool)

        ranked = _ranked_ks(selection, curve, params)
        chosen_k, labels, fallback = 0, np.zeros(n, dtype=np.int64), None
        trimmed = _trimmed_rows(values, sample, sparse)
        for k in ranked:
            fitted = fit_clusters(values, k, params, trimmed)
            if len(np.unique(fitted)) == k and _smallest(fitted) >= params.min_cluster_size:
                chosen_k, labels = k, fitted
                break
        if not chosen_k:
            chosen_k, labels, fallback = _fallback(values, params, trimmed)
            if not (curve["k"] == chosen_k).any():
                row = _curve_row(values, labels, chosen_k, 1.0, params)
                row.update(admissible=True, score=np.nan, stability=np.nan, chosen=False)
                extra = pd.DataFrame([row], columns=K_CURVE_COLUMNS)
                curve = pd.concat([extra, curve], ignore_index=True) if len(curve) else extra
        curve = curve.sort_values("k", kind="stable").reset_index(drop=True)
        curve.loc[curve["k"] == chosen_k, "chosen"] = True
        curve.loc[curve["k"] == chosen_k, "stability"] = stability(selection, chosen_k, params)

    labels = canonical_labels(values, labels)
    centroids = (
        pd.DataFrame(values, columns=matrix.columns).groupby(labels).mean().rename_axis("CLUSTER")
    )
    chosen_row = curve.loc[curve["k"] == chosen_k].iloc[0]
    metrics = {name: float(chosen_row[name]) for name in _METRIC_NAMES}
    metrics["k"] = float(chosen_k)
    return ClusterResult(
        labels=pd.Series(labels, index=matrix.index.copy(), name="CLUSTER"),
        k=chosen_k,
        k_curve=curve[K_CURVE_COLUMNS],
        centroids=centroids,
        metrics=metrics,
        fallback=fallback,
        trimmed=[int(s) for s in matrix.index[trimmed]],
    )


def _ranked_ks(selection: np.ndarray, curve: pd.DataFrame, params: ClusteringParams) -> list[int]:
    """Admissible k in the order to try them: the rule's choice first, then by score."""
    admissible = curve[curve["admissible"]]
    if admissible.empty:
        return []
    if params.selection in ("gap", "stability", "prediction_strength"):
        curve.loc[admissible.index, "score"] = _resampling_scores(selection, admissible, params)
        admissible = curve[curve["admissible"]]
    scores = selection_scores(admissible, params.selection, params.silhouette_tolerance)
    if params.selection in ("bic_silhouette", "gap", "prediction_strength"):
        # These rules name one k; the rest follow in the BIC's order of preference.
        backup = -admissible["bic"].astype(float).rank(method="first") / (len(admissible) + 1)
        scores = scores + backup * 1e-3
    curve.loc[admissible.index, "score"] = scores
    order = scores.fillna(-np.inf).sort_values(ascending=False, kind="stable")
    return [int(admissible.loc[i, "k"]) for i in order.index]


def _trimmed_rows(values: np.ndarray, sample: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    """The sparse stores of the sample, as a mask over all rows (unsampled rows stay in)."""
    trimmed = np.zeros(len(values), dtype=bool)
    trimmed[sample[sparse]] = True
    return trimmed


FallbackResult = tuple[int, np.ndarray, str]


def _fallback(values: np.ndarray, params: ClusteringParams, trimmed: np.ndarray) -> FallbackResult:
    n = len(values)
    if n < 2 * params.min_cluster_size:
        reason = (
            f"{n} stores cannot form two clusters of at least {params.min_cluster_size}; "
            "all stores form one cluster"
        )
        return 1, np.zeros(n, dtype=np.int64), reason
    for k in range(min(params.min_k, n) - 1, 1, -1):
        labels = fit_clusters(values, k, params, trimmed)
        if len(np.unique(labels)) == k and _smallest(labels) >= params.min_cluster_size:
            if n <= params.min_k:
                why = f"{n} stores are too few for min_k = {params.min_k}"
            else:
                why = (
                    f"no k in [{params.min_k}, {params.max_k}] kept every cluster at "
                    f"{params.min_cluster_size}+ stores"
                )
            return k, labels, f"{why}; lowered k to {k}"
    reason = (
        f"no k from 2 to {params.max_k} kept every cluster at {params.min_cluster_size}+ "
        "stores; all stores form one cluster"
    )
    return 1, np.zeros(n, dtype=np.int64), reason

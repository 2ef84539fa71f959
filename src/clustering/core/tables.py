"""The stored shape of each stage: tidy tables keyed by ``CATEGORY`` and ``STORE_NBR``.

Shares, features, assignments and the final table are long tables (one row per store and
category, or per store, category and feature), because categories have different need states.
A step turns its input into per-category frames once, works on those, and writes long tables
once: nothing converts back and forth. Rows are always re-joined by key, never by position.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clustering.core.clustering import K_CURVE_COLUMNS
from clustering.core.engine import ClusteredSet

ASSIGNMENT_COLUMNS = ["CATEGORY", "STORE_NBR", "CLUSTER"]
MODEL_COLUMNS = ["CATEGORY", *K_CURVE_COLUMNS, "FALLBACK"]
CENTROID_COLUMNS = ["CATEGORY", "CLUSTER", "FEATURE", "VALUE"]
PROFILE_COLUMNS = [
    "CATEGORY",
    "CLUSTER",
    "STORES",
    "LABEL",
    "FEATURE",
    "CLUSTER_MEAN",
    "AVERAGE",
    "INDEX",
    "Z_DIFF",
]

EXTERNAL_SET = "EXTERNAL"
"""Name under which the external features are clustered (one set for all categories)."""


def _long(frame: pd.DataFrame, key: str, category: str) -> pd.DataFrame:
    """``frame`` (index ``key``, one column per feature) as CATEGORY, key, FEATURE, VALUE."""
    values = frame.to_numpy(dtype=float)
    rows, columns = values.shape
    return pd.DataFrame(
        {
            "CATEGORY": category,
            key: np.repeat(frame.index.to_numpy(), columns),
            "FEATURE": np.tile(np.array([str(c) for c in frame.columns], dtype=object), rows),
            "VALUE": values.reshape(-1),
        }
    )


def _stack(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def concat_taking(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat(frames, ignore_index=True)`` for frames of the same columns and dtypes (e.g.
    one category's rows each), built one column at a time while taking that column out of
    every frame (``frames`` end up empty): memory holds the result plus one column's pieces,
    never the pieces and the whole result at once (a second copy of a 5-million-row final
    table at the end of a merge). Frames that differ are joined by ``pd.concat``."""
    if not frames:
        return pd.DataFrame()
    first = frames[0]
    if any(
        not frame.columns.equals(first.columns) or not frame.dtypes.equals(first.dtypes)
        for frame in frames
    ):
        joined = pd.concat(frames, ignore_index=True)
        frames.clear()
        return joined
    data: dict[object, pd.Series] = {}
    for name in list(first.columns):
        pieces = [frame.pop(name) for frame in frames]
        data[name] = pd.concat(pieces, ignore_index=True)
        del pieces
    frames.clear()
    return pd.DataFrame(data, copy=False)


FEATURE_SCHEMA = pa.schema(
    [
        ("CATEGORY", pa.string()),
        ("STORE_NBR", pa.int64()),
        ("FEATURE", pa.string()),
        ("VALUE", pa.float64()),
        ("OUTLIER", pa.bool_()),
    ]
)


def feature_rows(name: str, item: ClusteredSet) -> pa.Table:
    """Category ``name``'s rows of the features table (:data:`FEATURE_SCHEMA`): its clustering
    input, a row per store and feature in the matrix's order, with each store's outlier flag.
    Built as Arrow from the matrix directly: a tenth of the time of a pandas long table and its
    conversion, which the step's own process spent for every category as it finished."""
    matrix = item.features.matrix
    values = matrix.to_numpy(dtype=float)
    rows, columns = values.shape
    flagged = item.features.outliers.reindex(matrix.index).to_numpy(dtype=bool)
    names = pa.array([str(c) for c in matrix.columns], pa.string())
    return pa.table(
        {
            "CATEGORY": pc.take(pa.array([name], pa.string()), np.zeros(rows * columns, np.int32)),
            "STORE_NBR": np.repeat(matrix.index.to_numpy(dtype=np.int64), columns),
            "FEATURE": pc.take(names, np.tile(np.arange(columns, dtype=np.int32), rows)),
            "VALUE": values.reshape(-1),
            "OUTLIER": np.repeat(flagged, columns),
        },
        schema=FEATURE_SCHEMA,
    )


#: Text kept in Arrow buffers, no Python object per value: the dtype of text columns of tables
#: with a row per store × category (5 million rows at 50,000 stores × 100 categories took
#: over a gigabyte as Python strings). The warehouse keeps it across a round trip.
COMPACT_TEXT = "string[pyarrow]"


def compact_text(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with ``columns`` as Arrow-backed text (same values, missing stays missing)."""
    return frame.astype({column: COMPACT_TEXT for column in columns if column in frame})


def as_text(series: pd.Series) -> pd.Series:
    """``series`` as text; text columns are returned as they are (converting Arrow-backed text
    to Python strings cost seconds per million rows)."""
    if isinstance(series.dtype, pd.StringDtype):
        return series
    return series.astype(str)


class CategoryTables:
    """A clustering step's output tables, built category by category as each one finishes.

    ``builders`` name the small tables and the function making each from clustered sets (e.g.
    ``{"models": model_table}``); each category's rows are kept, its long feature rows go to
    ``spill`` at once (an Arrow table of :data:`FEATURE_SCHEMA`), and the clustered set itself
    is not kept: memory holds one category's matrices at a time, not every category's.
    """

    def __init__(
        self,
        builders: Mapping[str, Callable[[Mapping[str, ClusteredSet]], pd.DataFrame]],
        spill: Callable[[pa.Table], None],
    ) -> None:
        self._builders = dict(builders)
        self._spill = spill
        self._parts: dict[str, dict[str, pd.DataFrame]] = {}
        self.outlier_rows = 0  # feature rows flagged OUTLIER, over every category

    def add(self, name: str, item: ClusteredSet) -> None:
        """Take category ``name``'s rows of every table from ``item``."""
        features = feature_rows(name, item)
        self.outlier_rows += int(features["OUTLIER"].to_numpy(zero_copy_only=False).sum())
        self._spill(features)
        one = {name: item}
        self._parts[name] = {part: build(one) for part, build in self._builders.items()}

    def names(self) -> list[str]:
        """The categories taken so far, sorted."""
        return sorted(self._parts)

    def table(self, part: str) -> pd.DataFrame:
        """Table ``part`` over every category taken, in category order."""
        frames = [self._parts[name][part] for name in self.names()]
        if not frames:
            return self._builders[part]({})
        return pd.concat(frames, ignore_index=True)


def model_table(clustered: Mapping[str, ClusteredSet]) -> pd.DataFrame:
    """Every k tried per category with its metrics, the chosen one flagged, and any fallback."""
    parts = [
        item.result.k_curve.assign(CATEGORY=name, FALLBACK=item.result.fallback or "")
        for name, item in sorted(clustered.items())
    ]
    table = _stack(parts, MODEL_COLUMNS)
    table["chosen"] = table["chosen"].astype(bool)
    table["admissible"] = table["admissible"].astype(bool)
    return table.sort_values(["CATEGORY", "k"], kind="stable").reset_index(drop=True)


def chosen_models(models: pd.DataFrame) -> pd.DataFrame:
    """One row per category: the chosen k and its metrics."""
    return models[models["chosen"]].set_index("CATEGORY")


def assignment_table(clustered: Mapping[str, ClusteredSet]) -> pd.DataFrame:
    """CATEGORY, STORE_NBR, CLUSTER for every store of every category."""
    parts = [
        pd.DataFrame(
            {
                "CATEGORY": name,
                "STORE_NBR": item.labels.index.to_numpy(dtype=np.int64),
                "CLUSTER": item.labels.to_numpy(dtype=np.int64),
            }
        )
        for name, item in sorted(clustered.items())
    ]
    return _stack(parts, ASSIGNMENT_COLUMNS)


def centroid_table(clustered: Mapping[str, ClusteredSet]) -> pd.DataFrame:
    """Cluster centroids in the clustering space: CATEGORY, CLUSTER, FEATURE, VALUE."""
    parts = [
        _long(item.result.centroids, "CLUSTER", name) for name, item in sorted(clustered.items())
    ]
    return _stack(parts, CENTROID_COLUMNS)


def profile_table(clustered: Mapping[str, ClusteredSet]) -> pd.DataFrame:
    """Each cluster's profile in original units, with its size and generated label."""
    parts = []
    for name, item in sorted(clustered.items()):
        summary = item.profiles.summary[["CLUSTER", "STORES", "LABEL"]]
        parts.append(item.profiles.profile.merge(summary, on="CLUSTER").assign(CATEGORY=name))
    return _stack(parts, PROFILE_COLUMNS)


def cluster_labels_table(profiles: pd.DataFrame) -> pd.DataFrame:
    """One row per category × cluster: STORES and LABEL (from :func:`profile_table`)."""
    return (
        profiles[["CATEGORY", "CLUSTER", "STORES", "LABEL"]]
        .drop_duplicates(["CATEGORY", "CLUSTER"])
        .reset_index(drop=True)
    )


def frames_from_table(table: pd.DataFrame, value: str = "VALUE") -> dict[str, pd.DataFrame]:
    """Per category the wide frame (index STORE_NBR, one column per FEATURE) of a long table.

    Columns keep the order in which they first appear for the category.
    """
    frames: dict[str, pd.DataFrame] = {}
    for category, group in table.groupby("CATEGORY", sort=True):
        order = list(group["FEATURE"].unique())  # order of first appearance
        wide = group.pivot(index="STORE_NBR", columns="FEATURE", values=value)
        wide = wide[order].sort_index().astype(float)
        wide.columns.name = None
        frames[str(category)] = wide
    return frames


def numbered_stores(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The distinct store numbers of a column, sorted, and each row's position among them.

    Tables written by the pipeline come sorted by store within a category, so the stores are
    numbered where they change (a sort of a category's rows took a sixth of building its
    matrix); rows in any other order are sorted.
    """
    stores = column.to_numpy().astype(np.int64, copy=False)
    if len(stores) > 1 and bool((stores[1:] < stores[:-1]).any()):
        ids, index = np.unique(stores, return_inverse=True)
        return ids, index.reshape(-1)
    starts = np.empty(len(stores), dtype=bool)
    starts[:1] = True
    np.not_equal(stores[1:], stores[:-1], out=starts[1:])
    return stores[starts], np.cumsum(starts) - 1


#: Stands for a missing value among integer codes (:func:`missing_last`): sorts after all others.
MISSING_LAST = int(np.iinfo(np.int64).max)


def missing_last(values: np.ndarray) -> np.ndarray:
    """Integer codes held as floats (NaN: missing, e.g. a store without an external cluster)
    as int64, a missing one as :data:`MISSING_LAST`."""
    present = ~np.isnan(values)
    return np.where(present, np.where(present, values, 0.0).astype(np.int64), MISSING_LAST)


def integer_pairs(
    first: np.ndarray, second: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (first, second) pairs of two integer columns, sorted by first then second
    (rows of an m × 2 array), each row's pair (its row in that array) and each pair's count.
    Whatever is computed per pair (a label's text, a vote) is then done once per pair, not
    once per store."""
    firsts, first_codes = np.unique(first, return_inverse=True)
    seconds, second_codes = np.unique(second, return_inverse=True)
    codes, inverse, counts = np.unique(
        first_codes.reshape(-1) * len(seconds) + second_codes.reshape(-1),
        return_inverse=True,
        return_counts=True,
    )
    values = np.column_stack([firsts[codes // len(seconds)], seconds[codes % len(seconds)]])
    return values, inverse.reshape(-1), counts


def wide_matrix(rows: pa.Table) -> pd.DataFrame:
    """One category's long rows (STORE_NBR, FEATURE, VALUE) as the frame
    :func:`frames_from_table` gives: index STORE_NBR sorted, features in order of first
    appearance, float values. A numpy scatter over Arrow's dictionary codes of the feature
    names: pandas' pivot took 0.3 s per category of 10,000 stores, and turning the names into
    Python strings to factorize them half of what remained."""
    store_ids, store_index = numbered_stores(rows.column("STORE_NBR"))
    encoded = pc.dictionary_encode(rows.column("FEATURE").combine_chunks())
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    matrix = np.full((len(store_ids), len(names)), np.nan)
    matrix[store_index, codes] = rows.column("VALUE").to_numpy().astype(float)
    return pd.DataFrame(
        matrix,
        index=pd.Index(store_ids, dtype=np.int64, name="STORE_NBR"),
        columns=pd.Index([str(n) for n in names], dtype=object),
    )


def labels_from_table(assignments: pd.DataFrame) -> dict[str, pd.Series]:
    """Per category the CLUSTER of each store, indexed by STORE_NBR (sorted)."""
    return {
        str(category): group.set_index("STORE_NBR")["CLUSTER"].sort_index().rename("CLUSTER")
        for category, group in assignments.groupby("CATEGORY", sort=True)
    }


def external_frames(features: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The external feature table (STORE_NBR + numeric columns) as the one set to cluster."""
    return {EXTERNAL_SET: features.set_index("STORE_NBR").sort_index().astype(float)}


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of integers by sorting: numpy 2's hashing ``unique`` took 11 ms per
    50,000 stores, which made the coverage check 7.5 s at 100 categories of 50,000 stores."""
    ordered = np.sort(np.asarray(values, dtype=np.int64))
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _stores_per_category(table: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per category of a long table (``CATEGORY``, ``STORE_NBR``), by name: its stores sorted
    without repeats, and the stores with more than one row (sorted). Rows without a category
    are left out.

    Rows are grouped by one sort of integer (category, store) codes, and each category's stores
    sorted by number: grouping by the text column and ``duplicated`` over both took 270 MB and
    2 s for a 5-million-row final table at the peak of the merge; this takes 95 MB and 1.1 s.
    """
    categories, category_names = pd.factorize(table["CATEGORY"])
    stores, store_numbers = pd.factorize(table["STORE_NBR"].to_numpy(dtype=np.int64))
    if (categories < 0).any():
        known = categories >= 0
        categories, stores = categories[known], stores[known]
    keys = categories.astype(np.int64, copy=False)  # the codes become the keys, in place
    width = max(len(store_numbers), 1)  # both codes are below the rows: the key fits in int64
    keys *= width
    keys += stores
    del stores
    keys.sort()
    bounds = np.searchsorted(keys, np.arange(len(category_names) + 1, dtype=np.int64) * width)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for code in sorted(range(len(category_names)), key=lambda c: str(category_names[c])):
        ordered = np.sort(store_numbers[keys[bounds[code] : bounds[code + 1]] - code * width])
        if not len(ordered):
            continue
        repeat = ordered[1:] == ordered[:-1]
        first = np.concatenate(([True], ~repeat))
        found[str(category_names[code])] = (ordered[first], _sorted_unique(ordered[1:][repeat]))
    return found


def smallest_groups(table: pd.DataFrame, column: str) -> dict[str, int]:
    """Per ``CATEGORY`` of ``table``, the rows of its smallest group by ``column`` (e.g. its
    smallest final cluster); rows missing either are left out. Counted on integer codes: a
    pandas group-by over the two text columns of a 5-million-row final table took 150 MB."""
    categories, category_names = pd.factorize(table["CATEGORY"])
    groups, group_names = pd.factorize(table[column])
    width = max(len(group_names), 1)
    keep = (categories >= 0) & (groups >= 0)
    categories *= width
    categories += groups
    counts = np.bincount(categories[keep], minlength=len(category_names) * width)
    counts = counts.reshape(len(category_names), width)
    return {
        str(name): int(row[row > 0].min())
        for name, row in zip(category_names, counts, strict=True)
        if (row > 0).any()
    }


def missing_or_extra_stores(
    expected: Mapping[str, Collection[int] | np.ndarray], assignments: pd.DataFrame
) -> dict[str, dict[str, list[int]]]:
    """Per category the stores without an assignment and those assigned more than once or
    unexpectedly (first 10 of each); empty when every store has exactly one row."""
    problems: dict[str, dict[str, list[int]]] = {}
    nothing = np.zeros(0, dtype=np.int64)
    found_by = _stores_per_category(assignments) if len(assignments) else {}
    for name in sorted(set(expected) | set(found_by)):
        found, repeated = found_by.get(name, (nothing, nothing))
        given = expected.get(name, nothing)
        wanted = _sorted_unique(
            np.asarray(given if isinstance(given, np.ndarray) else list(given), dtype=np.int64)
        )
        issue = {
            "missing": [int(s) for s in np.setdiff1d(wanted, found, assume_unique=True)[:10]],
            "unexpected": [int(s) for s in np.setdiff1d(found, wanted, assume_unique=True)[:10]],
            "duplicated": [int(s) for s in repeated[:10]],
        }
        if any(issue.values()):
            problems[name] = issue
    return problems

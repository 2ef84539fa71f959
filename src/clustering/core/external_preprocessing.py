"""External preprocessing: combine store-level feature sources into one numeric table.

External data is small (stores × features), so this runs in pandas. Sources are joined on
STORE_NBR; only numeric columns become features. Text columns are dropped (or one-hot encoded
when configured), identifier-like numeric columns are dropped, and every dropped column is
reported with its reason, so nothing is silently used as a number or silently lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from clustering.core.errors import ConfigError, InputContractError
from clustering.core.params import ExternalParams

STORE_KEY = "STORE_NBR"
LABEL = "external features"


@dataclass(frozen=True)
class ExternalFeatures:
    """Numeric store features from every source, and what was left out and why.

    ``features`` has index STORE_NBR (int64, sorted) and float64 columns only; a store missing
    from a source has NaN in that source's columns.
    """

    features: pd.DataFrame
    dropped_columns: dict[str, str]
    sources: list[str]
    duplicate_rows_dropped: int


def combine_external_sources(
    frames: Sequence[tuple[str, pd.DataFrame]], params: ExternalParams
) -> ExternalFeatures:
    """Join (source name, frame with STORE_NBR) pairs into one numeric feature table.

    Exact duplicate rows are dropped and counted; two different rows for the same store, or the
    same column in two sources, raise :class:`InputContractError`. Booleans become 0/1, text
    columns listed in ``params.one_hot_columns`` become ``COL=value`` indicators, other text
    columns and numeric columns whose name matches ``params.id_column_pattern`` are dropped.
    """
    if not frames:
        raise InputContractError(f"{LABEL}: no source was given.")
    id_pattern = re.compile(params.id_column_pattern)
    one_hot = set(params.one_hot_columns)

    owner: dict[str, str] = {}
    parts: list[pd.DataFrame] = []
    dropped: dict[str, str] = {}
    duplicates = 0
    for name, frame in frames:
        frame = _with_integer_store_key(name, frame)
        for column in frame.columns.drop(STORE_KEY):
            if column in owner:
                raise InputContractError(
                    f"{LABEL}: column {column} is in both '{owner[column]}' and '{name}'; "
                    "keep it in one source or rename it."
                )
            owner[column] = name
        unique = frame.drop_duplicates()
        duplicates += len(frame) - len(unique)
        _check_one_row_per_store(name, unique)
        features, source_dropped = _numeric_features(
            unique.set_index(STORE_KEY), one_hot, id_pattern
        )
        parts.append(features)
        dropped.update(source_dropped)

    unknown = sorted(one_hot - owner.keys())
    if unknown:
        raise ConfigError(
            f"external.one_hot_columns: {', '.join(unknown)} "
            f"{'is' if len(unknown) == 1 else 'are'} in no external source."
        )

    combined = pd.concat(parts, axis=1, join="outer").sort_index()
    combined.index = combined.index.astype(np.int64).rename(STORE_KEY)
    return ExternalFeatures(
        features=combined.astype(np.float64),
        dropped_columns=dropped,
        sources=[name for name, _ in frames],
        duplicate_rows_dropped=duplicates,
    )


def _with_integer_store_key(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with STORE_NBR as int64, or an error naming the source."""
    if STORE_KEY not in frame.columns:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise InputContractError(
            f"{LABEL} '{name}': missing column {STORE_KEY} (expected an integer); "
            f"found columns {found}."
        )
    raw = frame[STORE_KEY]
    as_number = pd.to_numeric(raw, errors="coerce")
    bad = as_number.isna() | (as_number != np.floor(as_number))
    if bad.any():
        first = ", ".join(
            f"({STORE_KEY}={'NULL' if pd.isna(value) else repr(value)})"
            for value in raw[bad].head(3).tolist()
        )
        rows = "1 row" if bad.sum() == 1 else f"{int(bad.sum()):,} rows"
        raise InputContractError(
            f"{LABEL} '{name}': column {STORE_KEY} must be an integer in every row; "
            f"{rows} {'is' if bad.sum() == 1 else 'are'} not, first: {first}."
        )
    return frame.assign(**{STORE_KEY: as_number.astype(np.int64)})


def _check_one_row_per_store(name: str, frame: pd.DataFrame) -> None:
    """Two different rows for one store cannot be combined without guessing: refuse them."""
    repeated = frame[STORE_KEY].duplicated(keep=False)
    if not repeated.any():
        return
    stores = frame.loc[repeated, STORE_KEY]
    store = stores.iloc[0]
    rows = frame[frame[STORE_KEY] == store]
    differing = next(c for c in rows.columns if rows[c].nunique(dropna=False) > 1)
    values = " vs ".join(repr(v) for v in rows[differing].drop_duplicates().head(3).tolist())
    n_stores = stores.nunique()
    others = f"; {n_stores:,} stores are affected in all" if n_stores > 1 else ""
    raise InputContractError(
        f"{LABEL} '{name}': store {store} has {len(rows)} different rows "
        f"(they differ in column {differing}: {values}){others}."
    )


def _numeric_features(
    frame: pd.DataFrame, one_hot: set[str], id_pattern: re.Pattern[str]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Keep numeric columns as float64, encode configured columns, report the rest."""
    kept: list[pd.DataFrame | pd.Series] = []
    dropped: dict[str, str] = {}
    for column in frame.columns:
        values = frame[column]
        if column in one_hot:
            kept.append(_indicators(column, values))
        elif values.isna().all():
            dropped[column] = "all missing"
        elif _is_boolean(values):
            kept.append(values.astype("float64").rename(column))
        elif ptypes.is_numeric_dtype(values):
            if id_pattern.search(str(column)):
                dropped[column] = "identifier"
            else:
                kept.append(values.astype(np.float64))
        elif _is_text(values):
            dropped[column] = "text"
        else:
            dropped[column] = f"not a number ({values.dtype})"
    features = pd.concat(kept, axis=1) if kept else pd.DataFrame(index=frame.index)
    return features, dropped


def _is_boolean(values: pd.Series) -> bool:
    """True for bool columns, including object columns of True/False/None (bools with gaps)."""
    if ptypes.is_bool_dtype(values):
        return True
    if values.dtype != object:
        return False
    present = values.dropna()
    return len(present) > 0 and all(isinstance(v, bool | np.bool_) for v in present)


def _is_text(values: pd.Series) -> bool:
    """True for string and categorical columns, including object columns of str with gaps."""
    if isinstance(values.dtype, pd.StringDtype | pd.CategoricalDtype):
        return True
    if values.dtype != object:
        return False
    return all(isinstance(v, str) for v in values.dropna())


def _indicators(column: str, values: pd.Series) -> pd.DataFrame:
    """0/1 columns ``COL=value`` per distinct value; a missing value stays missing in all."""
    indicators = pd.get_dummies(values.astype("string"), prefix=column, prefix_sep="=", dtype=float)
    indicators = indicators.reindex(sorted(indicators.columns), axis=1)
    indicators[values.isna().to_numpy()] = np.nan
    return indicators


@dataclass(frozen=True)
class CoverageSummary:
    """How many stores of the internal universe have external features."""

    stores_total: int
    stores_with_features: int
    stores_without_features: list[int]
    features_only_stores: int

    def describe(self) -> str:
        """One or two human lines for logs and the command line."""
        pct = 100.0 * self.stores_with_features / self.stores_total if self.stores_total else 0.0
        line = (
            f"External features cover {self.stores_with_features:,} of "
            f"{self.stores_total:,} stores ({pct:.1f}%)"
        )
        if self.stores_without_features:
            first = ", ".join(str(s) for s in self.stores_without_features[:5])
            more = len(self.stores_without_features) > 5
            line += f"; without: {first}{', ...' if more else ''}"
        line += "."
        n_only = self.features_only_stores
        if n_only == 1:
            line += "\n1 store in the external data has no internal sales."
        elif n_only > 1:
            line += f"\n{n_only:,} stores in the external data have no internal sales."
        return line


def external_coverage(features: ExternalFeatures, stores: Iterable[int]) -> CoverageSummary:
    """Compare the stores with at least one external feature value to the store universe."""
    universe = {int(s) for s in stores}
    has_values = features.features.notna().any(axis=1)
    covered = {int(s) for s in features.features.index[has_values.to_numpy()]}
    external_stores = {int(s) for s in features.features.index}
    return CoverageSummary(
        stores_total=len(universe),
        stores_with_features=len(universe & covered),
        stores_without_features=sorted(universe - covered),
        features_only_stores=len(external_stores - universe),
    )

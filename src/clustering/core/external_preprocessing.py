"""External preprocessing: combine store-level feature sources into one numeric table.

External data is small (stores × features), so this runs in pandas. Sources from different
vendors are joined on STORE_NBR; only numeric columns become features, and every column left
out is reported with its reason, so nothing is silently used as a number or silently lost:

- text columns are dropped (or one-hot encoded when configured);
- identifier-like columns (``STORE_ID``, ``CVS ID``, ``ZIP_CD``, ``*_CODE`` …) and coordinates
  (``LATITUDE``, ``LONGITUDE`` …) are dropped, unless listed in ``include_columns``;
- a column in several sources is merged when the sources agree on every store they share; all
  the disagreements are listed in one sentence otherwise;
- rows of one store that are exact duplicates, or differ only in columns that are dropped
  anyway, are reduced to one (with a warning); rows that differ in a feature are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from clustering.core.errors import ConfigError, InputContractError
from clustering.core.params import ExternalParams

STORE_KEY = "STORE_NBR"
LABEL = "external features"
_MAX_LISTED = 5


@dataclass(frozen=True)
class ExternalFeatures:
    """Numeric store features from every source, and what was left out and why.

    ``features`` has index STORE_NBR (int64, sorted) and float64 columns only; a store missing
    from a source has NaN in that source's columns. ``warnings`` are sentences a user should
    see (rows de-duplicated, columns merged across sources).
    """

    features: pd.DataFrame
    dropped_columns: dict[str, str]
    sources: list[str]
    duplicate_rows_dropped: int
    warnings: list[str] = field(default_factory=list)


def clean_column_name(name: object) -> str:
    """A column name without a byte-order mark and surrounding spaces."""
    return str(name).replace("\ufeff", "").strip()


def combine_external_sources(
    frames: Sequence[tuple[str, pd.DataFrame]], params: ExternalParams
) -> ExternalFeatures:
    """Join (source name, frame with STORE_NBR) pairs into one numeric feature table.

    Raises :class:`InputContractError` (one sentence naming the source, column or store) for a
    missing or bad STORE_NBR, two different rows of one store in a feature, sources that
    disagree on a shared column, or no usable numeric feature at all.
    """
    if not frames:
        raise InputContractError(f"{LABEL}: no source was given.")
    id_pattern = re.compile(params.id_column_pattern)
    coordinates = re.compile(params.coordinate_column_pattern)
    one_hot = {c.upper() for c in params.one_hot_columns}
    include = {c.upper() for c in params.include_columns}

    parts: list[tuple[str, pd.DataFrame]] = []
    dropped: dict[str, str] = {}
    warnings: list[str] = []
    duplicates = 0
    seen_columns: set[str] = set()
    for name, raw in frames:
        frame = _with_integer_store_key(name, _clean_names(name, raw))
        seen_columns |= {c.upper() for c in frame.columns}
        features, source_dropped = _numeric_features(
            frame.set_index(STORE_KEY), one_hot, include, id_pattern, coordinates
        )
        dropped.update(source_dropped)
        features, removed, note = _one_row_per_store(name, frame, features)
        duplicates += removed
        if note:
            warnings.append(note)
        parts.append((name, features))

    unknown = sorted(c for c in one_hot | include if c not in seen_columns)
    if unknown:
        raise ConfigError(
            f"external.one_hot_columns / external.include_columns: {', '.join(unknown)} "
            f"{'is' if len(unknown) == 1 else 'are'} in no external source."
        )
    combined, merged = _join(parts)
    if merged:
        warnings.append(
            f"{LABEL}: {', '.join(merged)} {'is' if len(merged) == 1 else 'are'} in several "
            "sources with the same values; merged."
        )
    if combined.shape[1] == 0:
        reasons = ", ".join(f"{c} ({why})" for c, why in sorted(dropped.items())) or "none"
        raise InputContractError(
            f"{LABEL} ({', '.join(name for name, _ in frames)}): no usable numeric feature; "
            f"every column besides STORE_NBR was left out: {reasons}. Add numeric store "
            "features, or keep a column with external.include_columns."
        )
    combined.index = combined.index.astype(np.int64).rename(STORE_KEY)
    return ExternalFeatures(
        features=combined.sort_index().astype(np.float64),
        dropped_columns=dropped,
        sources=[name for name, _ in frames],
        duplicate_rows_dropped=duplicates,
        warnings=warnings,
    )


def _clean_names(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Names without BOM and spaces; ``store_nbr`` in any case becomes STORE_NBR."""
    cleaned = [clean_column_name(c) for c in frame.columns]
    cleaned = [STORE_KEY if c.upper() == STORE_KEY else c for c in cleaned]
    upper = [c.upper() for c in cleaned]
    repeated = sorted({c for c in cleaned if upper.count(c.upper()) > 1})
    if repeated:
        raise InputContractError(
            f"{LABEL} '{name}': column {repeated[0]} appears more than once (names are "
            "compared without spaces and case); rename one of them."
        )
    return frame.set_axis(cleaned, axis=1)


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


def _one_row_per_store(
    name: str, frame: pd.DataFrame, features: pd.DataFrame
) -> tuple[pd.DataFrame, int, str]:
    """``features`` with one row per store; rows removed; a warning when rows were removed.

    Rows equal in every kept feature are one store's row written twice (or differing only in a
    text or identifier column that is dropped anyway); different feature values cannot be
    combined without guessing and are refused.
    """
    keyed = features.reset_index()
    unique = keyed.drop_duplicates()
    repeated = unique[STORE_KEY].duplicated(keep=False)
    if repeated.any():
        store = unique.loc[repeated, STORE_KEY].iloc[0]
        rows = unique[unique[STORE_KEY] == store]
        differing = next(c for c in rows.columns if rows[c].nunique(dropna=False) > 1)
        values = " vs ".join(repr(v) for v in rows[differing].drop_duplicates().head(3).tolist())
        n_stores = unique.loc[repeated, STORE_KEY].nunique()
        others = f"; {n_stores:,} stores are affected in all" if n_stores > 1 else ""
        raise InputContractError(
            f"{LABEL} '{name}': store {store} has {len(rows)} rows with different values of "
            f"feature {differing} ({values}){others}; keep one row per store."
        )
    removed = len(keyed) - len(unique)
    if not removed:
        return features, 0, ""
    exact = len(frame) - len(frame.drop_duplicates())
    stores = keyed.loc[keyed[STORE_KEY].duplicated(keep=False), STORE_KEY].nunique()
    how = (
        "exact duplicates"
        if exact == removed
        else "equal in every feature, different only in columns that are left out"
    )
    note = (
        f"{LABEL} '{name}': {stores:,} {'store has' if stores == 1 else 'stores have'} "
        f"several rows ({how}); one row per store kept, {removed:,} removed."
    )
    return unique.set_index(STORE_KEY), removed, note


def _numeric_features(
    frame: pd.DataFrame,
    one_hot: set[str],
    include: set[str],
    id_pattern: re.Pattern[str],
    coordinates: re.Pattern[str],
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Keep numeric columns as float64, encode configured columns, report the rest."""
    kept: list[pd.DataFrame | pd.Series] = []
    dropped: dict[str, str] = {}
    for column in frame.columns:
        values = frame[column]
        name = str(column)
        wanted = name.upper() in include
        if name.upper() in one_hot:
            kept.append(_indicators(name, values))
        elif values.isna().all():
            dropped[name] = "all missing"
        elif _is_boolean(values):
            kept.append(values.astype("float64").rename(name))
        elif not wanted and id_pattern.search(name):
            dropped[name] = "identifier"
        elif not wanted and coordinates.search(name):
            dropped[name] = "coordinates"
        elif ptypes.is_numeric_dtype(values):
            kept.append(values.astype(np.float64))
        elif _is_text(values):
            numbers = pd.to_numeric(values, errors="coerce")
            if wanted and numbers.notna().sum() == values.notna().sum():
                kept.append(numbers.astype(np.float64).rename(name))
            else:
                dropped[name] = "text"
        else:
            dropped[name] = f"not a number ({values.dtype})"
    features = pd.concat(kept, axis=1) if kept else pd.DataFrame(index=frame.index)
    return features, dropped


def _join(parts: list[tuple[str, pd.DataFrame]]) -> tuple[pd.DataFrame, list[str]]:
    """Outer join on STORE_NBR; a column in several sources is merged when they agree."""
    combined = pd.DataFrame(index=pd.Index([], dtype=np.int64, name=STORE_KEY))
    owner: dict[str, str] = {}
    merged: list[str] = []
    conflicts: list[str] = []
    for name, features in parts:
        shared = [c for c in features.columns if c in combined.columns]
        for column in shared:
            both = combined[[column]].join(features[[column]], how="inner", rsuffix="__new")
            both = both.dropna()
            differ = ~np.isclose(both[column], both[f"{column}__new"], rtol=1e-9, atol=1e-9)
            if differ.any():
                store = both.index[differ][0]
                conflicts.append(
                    f"{column} ('{owner[column]}' vs '{name}': {int(differ.sum()):,} stores "
                    f"differ, e.g. store {store}: {both[column][store]:g} vs "
                    f"{both[f'{column}__new'][store]:g})"
                )
            else:
                merged.append(column)
        if conflicts:
            continue
        new = [c for c in features.columns if c not in combined.columns]
        combined = combined.join(features[new], how="outer")
        for column in shared:
            combined[column] = combined[column].combine_first(features[column])
        combined = combined.reindex(combined.index.union(features.index))
        owner.update({c: name for c in new})
    if conflicts:
        shown = "; ".join(conflicts[:_MAX_LISTED])
        more = f"; and {len(conflicts) - _MAX_LISTED} more" if len(conflicts) > _MAX_LISTED else ""
        raise InputContractError(
            f"{LABEL}: sources disagree on {len(conflicts)} shared "
            f"{'column' if len(conflicts) == 1 else 'columns'}: {shown}{more}; keep each "
            "column in one source or make the values agree."
        )
    return combined, sorted(set(merged))


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
    """How many stores with mapped sales have external features, and the external stores
    that have no mapped sales in any category."""

    stores_total: int
    stores_with_features: int
    stores_without_features: list[int]
    external_only_stores: int

    @property
    def without_pct(self) -> float:
        """Share (%) of the stores with mapped sales that have no external features."""
        return 100.0 * len(self.stores_without_features) / max(self.stores_total, 1)

    def describe(self) -> str:
        """One or two human lines for logs and the command line."""
        pct = 100.0 * self.stores_with_features / self.stores_total if self.stores_total else 0.0
        line = (
            f"External features cover {self.stores_with_features:,} of the "
            f"{self.stores_total:,} stores with mapped sales ({pct:.1f}%)"
        )
        if self.stores_without_features:
            first = ", ".join(str(s) for s in self.stores_without_features[:5])
            more = len(self.stores_without_features) - 5
            line += f"; without: {first}" + (f" and {more:,} more" if more > 0 else "")
        line += "."
        n_only = self.external_only_stores
        if n_only:
            stores = "1 store" if n_only == 1 else f"{n_only:,} stores"
            verb = "has" if n_only == 1 else "have"
            line += (
                f"\n{stores} in the external data {verb} no mapped sales in any category "
                "(no sales, or only SKUs missing from the need-state map)."
            )
        return line


def external_coverage(features: pd.DataFrame, stores: Iterable[int]) -> CoverageSummary:
    """Compare the stores with at least one external feature value (``features``, index
    STORE_NBR) to the stores with mapped sales."""
    universe = {int(s) for s in stores}
    has_values = features.notna().any(axis=1)
    covered = {int(s) for s in features.index[has_values.to_numpy()]}
    external_stores = {int(s) for s in features.index}
    return CoverageSummary(
        stores_total=len(universe),
        stores_with_features=len(universe & covered),
        stores_without_features=sorted(universe - covered),
        external_only_stores=len(external_stores - universe),
    )

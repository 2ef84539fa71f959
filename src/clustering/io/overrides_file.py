"""Read the overrides file: stores a category manager pinned to a final cluster.

A CSV with ``STORE_NBR, CATEGORY, CLUSTER, REASON`` (and optionally ``APPROVED_BY``); other
columns are ignored. A missing file means no overrides. Any problem is one sentence naming the
file, the line and the column (:class:`~clustering.core.overrides.OverrideError`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clustering.core.overrides import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, OverrideError


def empty_overrides() -> pd.DataFrame:
    """An overrides table without rows."""
    return pd.DataFrame(
        {
            "STORE_NBR": pd.Series(dtype="int64"),
            **{c: pd.Series(dtype=object) for c in [*REQUIRED_COLUMNS[1:], *OPTIONAL_COLUMNS]},
        }
    )


def read_overrides(path: Path | None) -> pd.DataFrame:
    """The rows of the overrides file at ``path`` (none when it is None or missing)."""
    if path is None or not Path(path).exists():
        return empty_overrides()
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OverrideError(f"overrides file '{path}' cannot be read: {reason}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise OverrideError(
            f"overrides file '{path}': column {missing[0]} is missing (expected "
            f"{', '.join(REQUIRED_COLUMNS)}; optional {', '.join(OPTIONAL_COLUMNS)})."
        )
    frame = raw[[c for c in [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS] if c in raw.columns]]
    frame = frame.apply(lambda column: column.str.strip())
    for position, row in enumerate(frame.to_dict("records")):
        line = position + 2
        for column in REQUIRED_COLUMNS:
            if not row[column]:
                hint = "; say why the store is pinned" if column == "REASON" else ""
                raise OverrideError(
                    f"overrides file '{path}', line {line}: {column} is empty{hint}."
                )
        if not row["STORE_NBR"].lstrip("-").isdigit():
            raise OverrideError(
                f"overrides file '{path}', line {line}: STORE_NBR '{row['STORE_NBR']}' is not a "
                "whole number."
            )
    result: pd.DataFrame = frame.assign(STORE_NBR=frame["STORE_NBR"].astype("int64"))
    return result.reset_index(drop=True)

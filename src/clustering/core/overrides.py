"""Manual overrides: stores pinned to a final cluster by a category manager, honoured every run.

An override row says: in ``CATEGORY``, store ``STORE_NBR`` belongs in final cluster ``CLUSTER``
because ``REASON`` (optionally ``APPROVED_BY``). Each run applies the file to its final table.
Cluster names are positions (``I2`` is the second largest internal cluster), so after
re-clustering the same name can mean other stores. A pin therefore follows the stores of the
cluster it names, as the most recent earlier run that had that cluster shows them:

- the store goes to the cluster of this run that holds most of those stores — ``applied`` when
  that is the pinned name, ``mapped`` (with a note saying where and how many) when the cluster
  was renamed or no longer exists;
- no earlier run had the cluster (a first run, or a new file) → the pinned name, when this run
  has it (``applied``);
- otherwise the model's cluster is kept and the row is flagged ``review``; it is listed in the
  report, the run summary and an asset check, never silently dropped.

A store or category the run does not know stops the run with one sentence naming the file and
line. In a what-if scenario limited to some categories, rows of the other categories are
``out_of_scope``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clustering.core.errors import InputContractError

REQUIRED_COLUMNS = ["STORE_NBR", "CATEGORY", "CLUSTER", "REASON"]
OPTIONAL_COLUMNS = ["APPROVED_BY"]
AUDIT_COLUMNS = [
    "STORE_NBR",
    "CATEGORY",
    "PINNED_CLUSTER",
    "MODEL_CLUSTER",
    "FINAL_CLUSTER",
    "STATUS",
    "REASON",
    "APPROVED_BY",
    "NOTE",
]

APPLIED = "applied"
MAPPED = "mapped"
REVIEW = "review"
OUT_OF_SCOPE = "out_of_scope"

Pin = tuple[str, str]
"""(category, final cluster label)."""


class OverrideError(InputContractError):
    """The overrides file names a store or category the run does not know, or is malformed."""


def _line(position: int) -> int:
    """File line of the row at ``position`` (the header is line 1)."""
    return position + 2


def check_overrides(
    overrides: pd.DataFrame,
    final: pd.DataFrame,
    source: str,
    scope: set[str] | None = None,
) -> pd.DataFrame:
    """The rows of ``overrides`` that apply to this run; one sentence on the first bad row.

    ``final`` is the run's final table. ``scope`` lists the categories a what-if scenario was
    limited to (None: the whole run); rows of other categories are dropped here.
    """
    if overrides.empty:
        return overrides
    duplicated = overrides.duplicated(["STORE_NBR", "CATEGORY"], keep="first")
    if duplicated.any():
        position = int(np.flatnonzero(duplicated.to_numpy())[0])
        row = overrides.iloc[position]
        raise OverrideError(
            f"overrides file '{source}', line {_line(position)}: store {row['STORE_NBR']} in "
            f"{row['CATEGORY']} is pinned twice; keep one row per store and category."
        )
    categories = {str(c) for c in final["CATEGORY"].unique()}
    stores: dict[str, set[int]] = {}  # of the pinned categories only

    def stores_of(category: str) -> set[int]:
        if category not in stores:
            rows = (final["CATEGORY"] == category).to_numpy(bool)
            stores[category] = {int(s) for s in final.loc[rows, "STORE_NBR"]}
        return stores[category]

    keep = []
    for position, (store, category) in enumerate(
        zip(overrides["STORE_NBR"], overrides["CATEGORY"], strict=True)
    ):
        if scope is not None and category not in scope:
            keep.append(False)
            continue
        if category not in categories:
            known = ", ".join(sorted(categories))
            raise OverrideError(
                f"overrides file '{source}', line {_line(position)}: category '{category}' is "
                f"not a category of this run (categories: {known})."
            )
        if int(store) not in stores_of(category):
            raise OverrideError(
                f"overrides file '{source}', line {_line(position)}: store {store} has no sales "
                f"in {category}, so it has no cluster there to override."
            )
        keep.append(True)
    return overrides[np.asarray(keep, dtype=bool)]


def pins_to_look_up(overrides: pd.DataFrame) -> list[Pin]:
    """The (category, cluster) pins whose stores must be looked up in an earlier run."""
    return sorted(set(zip(overrides["CATEGORY"], overrides["CLUSTER"].astype(str), strict=True)))


@dataclass(frozen=True)
class AppliedOverrides:
    """The final table with the overrides in it, and one audit row per override."""

    final: pd.DataFrame
    audit: pd.DataFrame

    def count(self, status: str) -> int:
        """How many overrides ended with ``status``."""
        return int((self.audit["STATUS"] == status).sum())

    def describe(self) -> str:
        """One line for the run summary, e.g. ``Overrides: 3 applied, 1 mapped, 1 to review``."""
        if self.audit.empty:
            return "Overrides: none."
        parts = [f"{self.count(APPLIED)} applied"]
        if self.count(MAPPED):
            parts.append(f"{self.count(MAPPED)} mapped to a new cluster")
        if self.count(REVIEW):
            review = self.audit[self.audit["STATUS"] == REVIEW]
            listed = ", ".join(
                f"store {s} in {c}"
                for s, c in zip(review["STORE_NBR"], review["CATEGORY"], strict=True)
            )
            parts.append(f"{self.count(REVIEW)} to review ({listed})")
        if self.count(OUT_OF_SCOPE):
            parts.append(f"{self.count(OUT_OF_SCOPE)} outside this scenario's categories")
        return "Overrides: " + ", ".join(parts) + "."


def apply_overrides(
    final: pd.DataFrame,
    overrides: pd.DataFrame,
    earlier_members: Mapping[Pin, set[int]],
    scope: set[str] | None = None,
) -> AppliedOverrides:
    """Pin the stores of ``overrides`` (already checked) in the final table.

    ``earlier_members`` gives, for each pin, the stores its cluster held in the most recent
    earlier run that had it (pins no earlier run had are missing). The result has two more columns:
    ``OVERRIDDEN`` (the store is where the override put it) and ``OVERRIDE_REASON`` (the reason,
    with a note when the pin was mapped or needs review). ``DISTANCE`` is left empty for a store
    an override moved: it measured the distance to the model's cluster.
    """
    # A new frame sharing the final table's columns (a deep copy held a second 5-million-row
    # table at the merge's peak); the two columns a pin may change are copied when one does.
    index = final.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        result = final.copy(deep=False)
    else:
        result = final.reset_index(drop=True)
    if not overrides.empty:
        for column in ("REBALANCED_CLUSTER", "DISTANCE"):
            result[column] = result[column].copy()
    result["OVERRIDDEN"] = False
    # Text like the cluster labels (Arrow-backed in a large final table), "" when not pinned.
    text_type = result["REBALANCED_CLUSTER"].dtype
    if isinstance(text_type, pd.StringDtype):
        blank = np.zeros(len(result), dtype=np.int64)
        result["OVERRIDE_REASON"] = pd.array([""], dtype=text_type).take(blank)
    else:
        result["OVERRIDE_REASON"] = ""
    audit_rows: list[dict[str, object]] = []
    # The model's labels of each pinned category, taken before any pin moves a store. Rows are
    # looked up per pinned category only: an index of every (category, store) of a chain with
    # millions of rows would cost far more than the few pins it serves.
    labels_of: dict[str, pd.Series] = {}

    def model_labels(category: str) -> pd.Series:
        if category not in labels_of:
            rows = result.index[(result["CATEGORY"] == category).to_numpy(bool)]
            labels_of[category] = result.loc[rows, "REBALANCED_CLUSTER"].astype(str)
        return labels_of[category]

    approvals = overrides.reindex(columns=["APPROVED_BY"])["APPROVED_BY"]
    columns = [overrides[c].tolist() for c in REQUIRED_COLUMNS] + [approvals.tolist()]
    for store_value, category_value, pinned_value, reason_value, by_value in zip(
        *columns, strict=True
    ):
        store, category = int(store_value), str(category_value)
        pinned, reason = str(pinned_value), str(reason_value)
        by = "" if pd.isna(by_value) else str(by_value)
        audit = {
            "STORE_NBR": store,
            "CATEGORY": category,
            "PINNED_CLUSTER": pinned,
            "MODEL_CLUSTER": None,
            "FINAL_CLUSTER": None,
            "REASON": reason,
            "APPROVED_BY": by,
            "NOTE": "",
        }
        if scope is not None and category not in scope:
            audit_rows.append({**audit, "STATUS": OUT_OF_SCOPE, "NOTE": "not in this scenario"})
            continue
        in_category = model_labels(category)
        rows = in_category.index
        i = int(rows[(result.loc[rows, "STORE_NBR"] == store).to_numpy(bool)][0])
        model = in_category[i]
        status, target, note = _follow_pin(pinned, category, in_category, result, earlier_members)
        if status == REVIEW:
            result.loc[i, "OVERRIDE_REASON"] = f"REVIEW: {note} {reason}"
        else:
            result.loc[i, "REBALANCED_CLUSTER"] = target
            result.loc[i, "OVERRIDDEN"] = True
            result.loc[i, "OVERRIDE_REASON"] = reason if not note else f"{reason} ({note})"
            if target != model:
                result.loc[i, "DISTANCE"] = np.nan
        audit_rows.append(
            {
                **audit,
                "MODEL_CLUSTER": model,
                "FINAL_CLUSTER": result.loc[i, "REBALANCED_CLUSTER"],
                "STATUS": status,
                "NOTE": note,
            }
        )
    audit_frame = pd.DataFrame(audit_rows, columns=AUDIT_COLUMNS)
    audit_frame["STORE_NBR"] = audit_frame["STORE_NBR"].astype(np.int64)
    return AppliedOverrides(final=result, audit=audit_frame)


def _follow_pin(
    pinned: str,
    category: str,
    in_category: pd.Series,
    final: pd.DataFrame,
    earlier_members: Mapping[Pin, set[int]],
) -> tuple[str, str, str]:
    """(status, target cluster, note) of one pin (see the module text)."""
    members = earlier_members.get((category, pinned), set())
    stores = final.loc[in_category.index, "STORE_NBR"].astype(int)
    held = in_category[stores.isin(members).to_numpy()]
    exists = pinned in set(in_category)
    if held.empty:
        if exists:
            return APPLIED, pinned, ""
        note = (
            f"pinned cluster {pinned} does not exist in this run and no earlier run had it; "
            "the model's cluster is kept."
        )
        return REVIEW, "", note
    counts = held.value_counts()
    best, count = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))[0]
    if str(best) == pinned:
        return APPLIED, pinned, ""
    what = "was renamed" if exists else "no longer exists"
    note = (
        f"pinned cluster {pinned} {what}; mapped to {best}, which holds {int(count)} of its "
        f"{len(members)} stores"
    )
    return MAPPED, str(best), note

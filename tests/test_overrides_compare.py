"""Manual overrides and run comparison on hand-built final tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clustering.core.comparison import compare_final_tables, parameter_changes
from clustering.core.overrides import (
    APPLIED,
    MAPPED,
    OUT_OF_SCOPE,
    REVIEW,
    OverrideError,
    apply_overrides,
    check_overrides,
    pins_to_look_up,
)


def _final(labels: dict[str, list[str]]) -> pd.DataFrame:
    """Stores 1..n per category with the given final clusters."""
    rows = [
        {
            "STORE_NBR": i + 1,
            "CATEGORY": category,
            "REBALANCED_CLUSTER": label,
            "DISTANCE": 0.5,
        }
        for category, column in labels.items()
        for i, label in enumerate(column)
    ]
    return pd.DataFrame(rows)


def _overrides(*rows: tuple[int, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["STORE_NBR", "CATEGORY", "CLUSTER", "REASON"])


FINAL = _final({"SNACKS": ["I1"] * 4 + ["I2"] * 4, "BEER": ["I1"] * 5 + ["I2"] * 3})


def test_pinned_store_is_moved_and_marked() -> None:
    applied = apply_overrides(FINAL, _overrides((1, "SNACKS", "I2", "flagship")), {})
    row = applied.final[(applied.final["STORE_NBR"] == 1) & (applied.final["CATEGORY"] == "SNACKS")]
    assert row["REBALANCED_CLUSTER"].item() == "I2"
    assert row["OVERRIDDEN"].item() and row["OVERRIDE_REASON"].item() == "flagship"
    assert np.isnan(row["DISTANCE"].item())  # the model's distance no longer applies
    assert applied.final["OVERRIDDEN"].sum() == 1
    assert applied.audit["STATUS"].tolist() == [APPLIED]
    assert applied.audit["MODEL_CLUSTER"].tolist() == ["I1"]


def test_the_final_table_given_is_left_as_it_was() -> None:
    # The result shares the given table's columns (no copy of a large final table), but a pin
    # must never write into the given one: object and Arrow-backed text alike.
    arrow_text = {"CATEGORY": "string[pyarrow]", "REBALANCED_CLUSTER": "string[pyarrow]"}
    for final in (FINAL.copy(), FINAL.astype(arrow_text)):
        before = final.copy()
        overrides = _overrides((1, "SNACKS", "I2", "flagship"), (2, "BEER", "I9", "gone"))
        applied = apply_overrides(final, overrides, {})
        pd.testing.assert_frame_equal(final, before)
        assert applied.final.loc[0, "REBALANCED_CLUSTER"] == "I2"
        assert np.isnan(applied.final.loc[0, "DISTANCE"])
        assert applied.final.loc[9, "OVERRIDE_REASON"].startswith("REVIEW:")


def test_vanished_cluster_is_mapped_to_where_its_stores_went() -> None:
    overrides = _overrides((1, "SNACKS", "I3", "new format"))
    assert pins_to_look_up(overrides) == [("SNACKS", "I3")]
    # I3 held stores 5, 6, 7 earlier; two of them are in I2 now.
    applied = apply_overrides(FINAL, overrides, {("SNACKS", "I3"): {5, 6, 7, 1}})
    audit = applied.audit.iloc[0]
    assert audit["STATUS"] == MAPPED and audit["FINAL_CLUSTER"] == "I2"
    assert "mapped to I2, which holds 3 of its 4 stores" in audit["NOTE"]
    reason = applied.final.loc[0, "OVERRIDE_REASON"]
    assert reason.startswith("new format (pinned cluster I3 no longer exists")


def test_pin_follows_its_stores_when_re_clustering_renamed_the_cluster() -> None:
    # The earlier run's I1 held stores 5-8, which this run calls I2: the pin follows them.
    overrides = _overrides((1, "SNACKS", "I1", "kids' range"), (2, "SNACKS", "I1", "same"))
    applied = apply_overrides(FINAL, overrides, {("SNACKS", "I1"): {5, 6, 7, 8}})
    assert applied.audit["FINAL_CLUSTER"].tolist() == ["I2", "I2"]
    assert applied.audit["STATUS"].tolist() == [MAPPED, MAPPED]
    assert "pinned cluster I1 was renamed; mapped to I2" in applied.audit["NOTE"].iloc[0]
    # Unchanged clusters keep their names: the pin is simply applied.
    same = apply_overrides(FINAL, overrides.iloc[:1], {("SNACKS", "I1"): {1, 2, 3, 4}})
    assert same.audit[["STATUS", "FINAL_CLUSTER"]].values.tolist() == [[APPLIED, "I1"]]


def test_unknown_cluster_without_history_is_flagged_for_review_never_dropped() -> None:
    applied = apply_overrides(FINAL, _overrides((1, "SNACKS", "I9", "typo?")), {})
    assert applied.audit["STATUS"].tolist() == [REVIEW]
    row = applied.final.iloc[0]
    assert row["REBALANCED_CLUSTER"] == "I1" and not row["OVERRIDDEN"]
    assert row["OVERRIDE_REASON"].startswith("REVIEW: pinned cluster I9 does not exist")
    assert "1 to review (store 1 in SNACKS)" in applied.describe()


def test_unknown_store_or_category_is_one_sentence_naming_the_line() -> None:
    with pytest.raises(OverrideError) as store:
        check_overrides(
            _overrides((1, "SNACKS", "I2", "a"), (99, "BEER", "I1", "b")), FINAL, "o.csv"
        )
    assert str(store.value) == (
        "overrides file 'o.csv', line 3: store 99 has no sales in BEER, so it has no cluster "
        "there to override."
    )
    with pytest.raises(OverrideError, match=r"line 2: category 'SNAKCS' is not a category"):
        check_overrides(_overrides((1, "SNAKCS", "I2", "a")), FINAL, "o.csv")
    with pytest.raises(OverrideError, match=r"line 3: store 1 in SNACKS is pinned twice"):
        check_overrides(_overrides((1, "SNACKS", "I2", "a"), (1, "SNACKS", "I1", "b")), FINAL, "o")


def test_rows_outside_a_scenario_are_kept_in_the_audit_only() -> None:
    overrides = _overrides((1, "SNACKS", "I2", "a"), (2, "BEER", "I2", "b"))
    checked = check_overrides(overrides, FINAL, "o.csv", scope={"SNACKS"})
    assert checked["CATEGORY"].tolist() == ["SNACKS"]
    applied = apply_overrides(FINAL, overrides, {}, scope={"SNACKS"})
    assert applied.audit.set_index("CATEGORY")["STATUS"].to_dict() == {
        "SNACKS": APPLIED,
        "BEER": OUT_OF_SCOPE,
    }


def test_comparison_matches_clusters_by_stores_not_by_name() -> None:
    a = _final({"SNACKS": ["I1"] * 4 + ["I2"] * 4})
    # Same partition, names swapped, and store 8 moved: one store moved, ARI below 1.
    b = _final({"SNACKS": ["I2"] * 4 + ["I1"] * 3 + ["I2"]})
    comparison = compare_final_tables(a, b)
    summary = comparison.summary.iloc[0]
    assert summary["MOVED"] == 1 and 0 < summary["ARI"] < 1
    assert comparison.moved["STORE_NBR"].tolist() == [8]
    assert comparison.moved.iloc[0][["CLUSTER_A", "CLUSTER_B", "COUNTERPART_B"]].tolist() == [
        "I2",
        "I2",
        "I1",
    ]
    sizes = comparison.clusters.set_index("CLUSTER_A")
    assert sizes.loc["I1", ["CLUSTER_B", "SIZE_A", "SIZE_B"]].tolist() == ["I2", 4, 5]
    same = compare_final_tables(a, a).summary.iloc[0]
    assert same["ARI"] == pytest.approx(1.0) and same["MOVED"] == 0


def test_a_cluster_without_counterpart_moves_all_its_stores() -> None:
    a = _final({"SNACKS": ["I1"] * 3 + ["I2"] * 3 + ["I3"] * 3})
    b = _final({"SNACKS": ["I1"] * 3 + ["I2"] * 6})
    comparison = compare_final_tables(a, b)
    assert comparison.summary.iloc[0]["MOVED"] == 3
    gone = comparison.clusters[comparison.clusters["CLUSTER_B"].isna()]
    assert gone[["CLUSTER_A", "SIZE_A", "SIZE_B"]].values.tolist() == [["I3", 3, 0]]


def test_parameter_changes_name_the_keys() -> None:
    a = {"internal_clustering": {"max_k": 10, "min_k": 2}, "workers": None}
    b = {"internal_clustering": {"max_k": 4, "min_k": 2}, "workers": None}
    assert parameter_changes(a, b) == ["internal_clustering.max_k: 10 → 4"]

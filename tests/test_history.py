"""The run history in the warehouse and the overrides file: what a user reads back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clustering.core.overrides import OverrideError
from clustering.io.history import HistoryStore, RunRecord
from clustering.io.overrides_file import read_overrides


def _final(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "STORE_NBR": range(1, len(labels) + 1),
            "CATEGORY": "SNACKS",
            "REBALANCED_CLUSTER": labels,
            "EXTERNAL_CLUSTER": pd.array([1] * (len(labels) - 1) + [None], dtype="Int64"),
        }
    )


def _record(run_id: str, at: str) -> RunRecord:
    return RunRecord(run_id=run_id, recorded_at=at, env="dev", params={"k": {"max_k": 4}})


def test_runs_are_appended_and_read_back_by_run_id(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "w.duckdb")
    assert store.runs() == []
    store.record_run(
        _record("run-a", "2026-12-01T10:00:00"),
        {"final_store_clusters": _final(["I1", "I2", "I3"])},
    )
    store.record_run(
        _record("run-b", "2026-12-01T11:00:00"),
        {"final_store_clusters": _final(["I1", "I1", "I2"])},
    )
    # Recording a run again (a retried step) replaces its rows instead of adding them twice.
    store.record_run(
        _record("run-b", "2026-12-01T11:00:00"),
        {"final_store_clusters": _final(["I1", "I1", "I2"])},
    )
    assert [r.run_id for r in store.runs()] == ["run-a", "run-b"]
    assert store.run("run-a").params == {"k": {"max_k": 4}}
    b = store.table("final_store_clusters", "run-b")
    assert b["REBALANCED_CLUSTER"].tolist() == ["I1", "I1", "I2"]
    assert store.table("final_store_clusters", "run-a")["REBALANCED_CLUSTER"].tolist() == [
        "I1",
        "I2",
        "I3",
    ]
    # I3 only existed in run a; I2 is taken from the latest run other than the current one.
    members = store.earlier_members([("SNACKS", "I3"), ("SNACKS", "I2"), ("SNACKS", "I9")], "run-c")
    assert members == {("SNACKS", "I3"): {3}, ("SNACKS", "I2"): {3}}


def test_a_failed_recording_leaves_the_history_as_it_was(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "w.duckdb")
    store.record_run(
        _record("run-a", "2026-12-01T10:00:00"), {"final_store_clusters": _final(["I1"])}
    )
    bad = pd.DataFrame({"STORE_NBR": ["not a number"], "CATEGORY": ["SNACKS"]})
    with pytest.raises(Exception):  # noqa: B017 - any database error
        store.record_run(
            _record("run-b", "2026-12-01T11:00:00"),
            {"merging_summary": pd.DataFrame({"X": [1]}), "final_store_clusters": bad},
        )
    assert [r.run_id for r in store.runs()] == ["run-a"]
    assert store.table("merging_summary", "run-b").empty


def test_overrides_file_problems_are_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "overrides.csv"
    assert read_overrides(path).empty  # no file, no overrides
    path.write_text("STORE_NBR,CATEGORY,CLUSTER,REASON,NOTE\n 12 ,SNACKS,I2-E1,flagship,x\n")
    frame = read_overrides(path)
    assert frame.to_dict("records") == [
        {"STORE_NBR": 12, "CATEGORY": "SNACKS", "CLUSTER": "I2-E1", "REASON": "flagship"}
    ]
    path.write_text("STORE_NBR,CATEGORY,CLUSTER\n12,SNACKS,I2\n")
    with pytest.raises(OverrideError, match=r"column REASON is missing"):
        read_overrides(path)
    path.write_text("STORE_NBR,CATEGORY,CLUSTER,REASON\n12,SNACKS,I2,\n")
    with pytest.raises(
        OverrideError, match=r"line 2: REASON is empty; say why the store is pinned"
    ):
        read_overrides(path)
    path.write_text("STORE_NBR,CATEGORY,CLUSTER,REASON\n12,SNACKS,I2,a\nx1,SNACKS,I2,b\n")
    with pytest.raises(OverrideError, match=r"line 3: STORE_NBR 'x1' is not a whole number"):
        read_overrides(path)

"""Worker processes of ``core.engine``: where each category runs and what a worker starts with."""

from __future__ import annotations

import os
import sys

import pytest

from clustering.core.engine import map_categories, resolve_workers, start_worker_server
from clustering.dagster.definitions import defs


def where_it_ran(name: str, value: int) -> tuple[int, int, bool]:
    """Module level, so a worker can import it: (value, process id, scikit-learn imported)."""
    return value, os.getpid(), "sklearn.cluster" in sys.modules


def test_a_single_category_runs_in_a_worker_that_starts_with_scikit_learn() -> None:
    start_worker_server()
    start_worker_server()  # a second call finds it running
    results = map_categories(where_it_ran, {"only": 7}, workers=2)
    value, pid, has_sklearn = results["only"]
    assert value == 7
    assert pid != os.getpid()
    # Imported by the fork server before the worker was forked, not by the task.
    assert has_sklearn


def test_categories_come_back_sorted_from_several_workers() -> None:
    items = {name: index for index, name in enumerate(["b", "d", "a", "c", "e"])}
    results = map_categories(where_it_ran, items, workers=2)
    assert list(results) == ["a", "b", "c", "d", "e"]
    assert {name: value for name, (value, _, _) in results.items()} == items
    assert all(pid != os.getpid() for _, pid, _ in results.values())


def test_one_worker_runs_every_category_in_this_process() -> None:
    results = map_categories(where_it_ran, {"a": 1, "b": 2}, workers=1)
    assert {pid for _, pid, _ in results.values()} == {os.getpid()}


@pytest.mark.parametrize(
    ("workers", "tasks", "expected"),
    [(1, 5, 0), (2, 5, 2), (4, 3, 3), (2, 1, 1), (2, 0, 0)],
)
def test_resolve_workers(workers: int, tasks: int, expected: int) -> None:
    assert resolve_workers(workers, tasks) == expected


@pytest.mark.parametrize(
    ("job", "uses_workers"),
    [("full_pipeline_job", True), ("merging_job", True), ("internal_preprocessing_job", False)],
)
def test_only_jobs_with_a_per_category_step_start_the_worker_server(
    job: str, uses_workers: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clustering.cli.run import _uses_worker_processes

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _uses_worker_processes(defs.resolve_job_def(job)) is uses_workers
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert _uses_worker_processes(defs.resolve_job_def(job)) is False

"""Worker processes of ``core.engine``: where each category runs and what a worker starts with."""

from __future__ import annotations

import os

import pytest
from worker_probe import where_it_ran

from clustering.core.engine import map_categories, resolve_workers, start_worker_server


def test_a_single_category_runs_in_a_worker_that_starts_with_scikit_learn() -> None:
    start_worker_server()
    value, pid, server, has_sklearn = map_categories(where_it_ran, {"only": 7}, workers=2)["only"]
    assert value == 7
    assert pid != os.getpid()
    assert server != os.getpid()  # forked by the fork server, not by this process
    # Imported by the fork server before the worker was forked, not by the task.
    assert has_sklearn
    start_worker_server()  # a second call finds it running: the next workers have the same parent
    assert map_categories(where_it_ran, {"again": 1}, workers=2)["again"][2] == server


def test_categories_come_back_sorted_from_several_workers() -> None:
    items = {name: index for index, name in enumerate(["b", "d", "a", "c", "e"])}
    results = map_categories(where_it_ran, items, workers=2)
    assert list(results) == ["a", "b", "c", "d", "e"]
    assert {name: value for name, (value, _, _, _) in results.items()} == items
    assert all(pid != os.getpid() for _, pid, _, _ in results.values())


def test_one_worker_runs_every_category_in_this_process() -> None:
    results = map_categories(where_it_ran, {"a": 1, "b": 2}, workers=1)
    assert {pid for _, pid, _, _ in results.values()} == {os.getpid()}


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
def test_only_runs_with_a_per_category_step_and_workers_start_the_worker_server(
    job: str, uses_workers: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clustering.cli.run import _uses_worker_processes
    from clustering.dagster.definitions import defs

    definition = defs.resolve_job_def(job)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _uses_worker_processes(definition, None) is uses_workers
    assert _uses_worker_processes(definition, 3) is uses_workers
    assert _uses_worker_processes(definition, 1) is False
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert _uses_worker_processes(definition, None) is False

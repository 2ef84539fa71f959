"""Measuring helpers of ``make bench``: a child process's wall time and memory, where a Dagster
run spent its time (from the run's own event log), and how well clusters match the planted truth.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_SECONDS = 0.05


# -- wall time and memory ----------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (those alive when asked)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    stack.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, PermissionError):
        # A kernel without smaps_rollup (or a process gone, where this gives 0): its RSS.
        return _rss(pid)
    except (ProcessLookupError, ValueError):
        pass
    return 0


class TreePss:
    """The peak of a process tree's summed proportional set size, sampled cheaply.

    The proportional set size (PSS) counts a page shared by n processes as 1/n in each, so
    summed over a tree it counts every page the tree uses once (pages of libraries shared with
    processes outside the tree are split with them); summed RSS counts shared pages once per
    process (a forked worker's copy-on-write pages again in every worker) and is the upper
    bound. Reading PSS walks every page of a process (~50 ms for a headline run's tree: at
    every 50 ms sample it took a fifth of a core from the run being measured), so each
    process's PSS is read when it is first seen, every ``refresh_s`` after, and for every
    process when one of the tree ends (its shared pages then count in the others); in between
    a sample moves each reading by the change of the process's RSS since. Between readings the
    estimate can err either way by what changed in that time: pages gained count whole, and a
    worker writing to pages it shares with the fork server raises the true figure but not RSS.
    """

    def __init__(self, refresh_s: float = 1.0) -> None:
        self.refresh_s = refresh_s
        self.peak = 0
        self._known: dict[int, tuple[float, int, int]] = {}  # pid: (read at, rss then, pss)

    def sample(self, pid: int) -> int:
        """Look at the tree of ``pid`` once and update :attr:`peak`; returns the tree's summed
        RSS."""
        now = time.monotonic()
        current = {p: _rss(p) for p in _tree(pid)}
        ended = self._known.keys() - current.keys()
        for p in ended:  # forgotten, so a reused pid is read afresh
            del self._known[p]
        for p, rss in current.items():
            known = self._known.get(p)
            if known is None or ended or now - known[0] >= self.refresh_s:
                self._known[p] = (now, rss, _pss(p))
        estimate = sum(
            max(self._known[p][2] + rss - self._known[p][1], 0) for p, rss in current.items()
        )
        self.peak = max(self.peak, estimate)
        return sum(current.values())


@dataclass
class Measured:
    """One child process: wall seconds, memory, output, and the load around it."""

    command: list[str]
    seconds: float
    peak_tree_bytes: int  # highest sum of PSS over the process tree (see TreePss)
    peak_process_bytes: int  # the largest single process (kernel's maxrss, exact)
    output: str
    returncode: int
    started_at: float  # time.time() when the child was started
    load_before: float
    load_after: float
    peak_tree_rss_bytes: int = 0  # highest sum of RSS over the tree (shared pages repeated)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_measured(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    echo: bool = False,
) -> Measured:
    """Run ``command`` to the end, sampling the resident memory of its whole process tree.

    The peak of the tree is the sum of every process's proportional set size at the busiest
    sample (every :data:`SAMPLE_SECONDS`, read as :class:`TreePss` says): each page counted
    once, however many processes share it. The sum of resident sizes is kept too: it counts the
    pages a forked worker shares with its parent once per process, an upper bound. The largest
    process's peak comes from the kernel (``wait4``'s maxrss, which also covers descendants
    that were waited for).
    """
    load_before = os.getloadavg()[0]
    started_at = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines: list[str] = []
    peak = [0, 0]  # PSS, RSS
    stop = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if echo:
                print("      | " + line.rstrip(), flush=True)

    tree_pss = TreePss()

    def sample() -> None:
        while not stop.is_set():
            peak[1] = max(peak[1], tree_pss.sample(process.pid))
            peak[0] = tree_pss.peak
            stop.wait(SAMPLE_SECONDS)

    reader = threading.Thread(target=read, daemon=True)
    sampler = threading.Thread(target=sample, daemon=True)
    reader.start()
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        command=list(command),
        seconds=seconds,
        peak_tree_bytes=peak[0],
        peak_tree_rss_bytes=peak[1],
        peak_process_bytes=usage.ru_maxrss * 1024,
        output="".join(lines),
        returncode=process.returncode,
        started_at=started_at,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )


# -- where a Dagster run spent its time ----------------------------------------------------------


@dataclass
class StepTime:
    """One step of a run: seconds in all, loading inputs, storing outputs (IO manager)."""

    total: float = 0.0
    load: float = 0.0
    store: float = 0.0

    @property
    def compute(self) -> float:
        return max(self.total - self.load - self.store, 0.0)


@dataclass
class RunBreakdown:
    """Where the wall time of one ``run`` went, from the events Dagster stored for it."""

    startup: float  # process start -> first event (imports, definitions, instance)
    planning: float  # first event -> run start (planned-materialization events)
    between_steps: float  # run start -> run end, outside any step
    tail: float  # run end -> process exit (summary printed by the CLI)
    events: int
    steps: dict[str, StepTime] = field(default_factory=dict)

    @property
    def in_steps(self) -> float:
        return sum(step.total for step in self.steps.values())

    @property
    def in_compute(self) -> float:
        return sum(step.compute for step in self.steps.values())


def run_breakdown(dagster_home: Path, measured: Measured) -> RunBreakdown | None:
    """Split the latest run stored in ``dagster_home`` into start-up, steps and bookkeeping.

    Per step: ``load`` runs from the step's start to its last loaded input, ``store`` from each
    output to the IO manager's "handled" event, ``compute`` is the rest. Event timestamps come
    from the same clock as ``measured.started_at``.
    """
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return None
        records = instance.get_records_for_run(runs[0].run_id).records
    entries = [record.event_log_entry for record in records]
    if not entries:
        return None
    steps: dict[str, StepTime] = {}
    started: dict[str, float] = {}
    output_at: dict[str, float] = {}
    run_start = run_end = None
    for entry in entries:
        event = entry.dagster_event
        if event is None:
            continue
        kind, key, at = event.event_type_value, entry.step_key, entry.timestamp
        if kind == "PIPELINE_START":
            run_start = at
        elif kind in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
            run_end = at
        elif key is None:
            continue
        elif kind == "STEP_START":
            started[key] = at
            steps[key] = StepTime()
        elif kind == "LOADED_INPUT" and key in started:
            steps[key].load = at - started[key]
        elif kind == "STEP_OUTPUT":
            output_at[key] = at
        elif kind == "HANDLED_OUTPUT" and key in output_at:
            steps[key].store += at - output_at.pop(key)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and key in started:
            steps[key].total = at - started[key]
    first, last = entries[0].timestamp, entries[-1].timestamp
    run_start = run_start or first
    run_end = run_end or last
    in_steps = sum(step.total for step in steps.values())
    return RunBreakdown(
        startup=first - measured.started_at,
        planning=run_start - first,
        between_steps=max(run_end - run_start - in_steps, 0.0),
        tail=measured.started_at + measured.seconds - run_end,
        events=len(entries),
        steps=steps,
    )


def printed_step_times(output: str) -> dict[str, float]:
    """Step durations from the ``  ✓ step   1.2 s`` (or ``2 min 05 s``) lines the CLI prints as
    steps finish."""
    times: dict[str, float] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] not in ("✓", "✗") or parts[-1] != "s":
            continue
        try:
            if len(parts) >= 6 and parts[-3] == "min":
                times[parts[1]] = 60 * float(parts[-4]) + float(parts[-2])
            else:
                times[parts[1]] = float(parts[-2])
        except ValueError:
            continue
    return times


# -- recovery of the planted truth ---------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """Adjusted Rand index against the planted types: internal per category, external once."""

    internal_mean: float
    internal_min: float
    external: float
    lost_rows: int  # store × category rows of the truth missing from the result

    def text(self) -> str:
        lost = f", {self.lost_rows:,} rows missing" if self.lost_rows else ""
        return (
            f"ARI internal {self.internal_mean:.3f} (min {self.internal_min:.3f}), "
            f"external {self.external:.3f}{lost}"
        )


def recovery(result: pd.DataFrame, truth_dir: Path) -> Recovery:
    """Score a result with STORE_NBR, CATEGORY, INTERNAL_CLUSTER and EXTERNAL_CLUSTER.

    Noise stores (planted type -1) follow no type and are left out. A store missing from the
    result counts as a cluster of its own, so a lost store lowers the score instead of hiding.
    Stores absent from the external file have no external cluster to score.
    """
    truth = pd.read_parquet(truth_dir / "internal_truth.parquet")
    truth = truth[truth["STORE_TYPE"] >= 0]
    found = result[["STORE_NBR", "CATEGORY", "INTERNAL_CLUSTER"]].astype({"CATEGORY": str})
    both = truth.merge(found, on=["STORE_NBR", "CATEGORY"], how="left")
    lost = int(both["INTERNAL_CLUSTER"].isna().sum())
    labels = both["INTERNAL_CLUSTER"].fillna(-1).astype(np.int64).to_numpy()
    both = both.assign(FOUND=labels)
    scores = [
        adjusted_rand_score(group["STORE_TYPE"], group["FOUND"])
        for _, group in both.groupby("CATEGORY")
    ]
    ext_truth = pd.read_parquet(truth_dir / "external_truth.parquet")
    ext_found = (
        result[["STORE_NBR", "EXTERNAL_CLUSTER"]]
        .dropna()
        .drop_duplicates("STORE_NBR")
        .merge(ext_truth, on="STORE_NBR")
    )
    external = adjusted_rand_score(ext_found["STORE_TYPE"], ext_found["EXTERNAL_CLUSTER"])
    return Recovery(float(np.mean(scores)), float(np.min(scores)), float(external), lost)


def read_result(folder: Path, name: str) -> pd.DataFrame:
    """The first file called ``name`` under ``folder`` (the layout of outputs may change)."""
    found = sorted(folder.rglob(name))
    if not found:
        raise FileNotFoundError(f"no {name} under {folder}")
    columns = ["STORE_NBR", "CATEGORY", "INTERNAL_CLUSTER", "EXTERNAL_CLUSTER"]
    return pd.read_parquet(found[0], columns=columns)

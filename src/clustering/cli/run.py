"""``python -m clustering run JOB`` and ``python -m clustering jobs``.

``run`` executes one Dagster job in this process against the project's Dagster instance (see
:mod:`clustering.infra.instance`), so the run, its logs and its materializations are recorded
there and show in the UI later. Steps are printed as they start and finish: a thread reads the
run's events from the instance as Dagster stores them, and
:class:`~clustering.infra.run_report.RunReport` turns events into lines and the closing summary.

Dagster and the definitions are imported only when a command needs them, so ``--help`` stays
fast.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clustering.core.errors import ClusteringError, ConfigError
from clustering.dagster.jobs import JOB_ALIASES
from clustering.infra.config import load_config

if TYPE_CHECKING:
    import dagster as dg

    from clustering.infra.run_report import RunReport

#: Builds the Dagster definitions for an environment (``dev``, ``staging``, ``prod``).
DefinitionsFactory = Callable[[str], "dg.Definitions"]
#: Receives one line of output.
Printer = Callable[[str], None]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


#: Run tag recording the environment; set from ``--env``, never from ``--tag``.
ENV_TAG = "clustering/env"
#: Run tag by which the progress printer finds the run it was started for; set by ``run``.
RUN_TOKEN_TAG = "clustering/invocation"

#: Module to point ``dagster dev`` at to see the runs.
DEFINITIONS_MODULE = "clustering.dagster.definitions"

# Longest step name used to line up durations; longer names simply push their duration right.
_MAX_STEP_WIDTH = 48


def _say(line: str) -> None:
    """Print a line at once (output may be piped, e.g. through make) even on a non-UTF-8 stdout."""
    try:
        print(line, flush=True)
    except UnicodeEncodeError:
        encoding = sys.stdout.encoding or "ascii"
        print(line.encode(encoding, "replace").decode(encoding), flush=True)


def _complain(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- pure helpers ----------------------------------------------------------------------------


def parse_tags(tags: Mapping[str, str] | Iterable[str], env: str) -> dict[str, str]:
    """Run tags from ``key=value`` strings (or a mapping), plus ``clustering/env=<env>``.

    Raises :class:`ConfigError` with one sentence for a malformed tag, a key given twice, or
    an attempt to set ``clustering/env`` (that is what ``--env`` is for).
    """
    pairs: list[tuple[str, str]]
    if isinstance(tags, Mapping):
        pairs = [(str(key), str(value)) for key, value in tags.items()]
    else:
        pairs = []
        for item in tags:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or key != key.strip():
                raise ConfigError(f"--tag {item!r} must have the form key=value.")
            pairs.append((key, value))
    parsed: dict[str, str] = {}
    for key, value in pairs:
        if key == ENV_TAG:
            raise ConfigError(f"the tag {ENV_TAG} comes from --env; use --env instead of --tag.")
        if key == RUN_TOKEN_TAG:
            raise ConfigError(f"the tag {RUN_TOKEN_TAG} is set by this command; use another key.")
        if key in parsed:
            raise ConfigError(f"--tag {key} is given twice; give each key once.")
        parsed[key] = value
    parsed[ENV_TAG] = env
    return parsed


def read_run_config(path: Path) -> dict[str, Any]:
    """A run config (``ops: …``) from a YAML file; one sentence when it cannot be read."""
    from clustering.infra.params_file import read_mapping_file

    return read_mapping_file(path, "run config file", "a mapping such as ops: {…}")


def job_names(defs: dg.Definitions) -> list[str]:
    """Sorted names of the jobs a user can run (Dagster's implicit ``__ASSET_JOB`` left out)."""
    return _user_job_names(defs.resolve_all_job_defs())


def _user_job_names(jobs: Iterable[dg.JobDefinition]) -> list[str]:
    # Dagster reserves names starting with "__" for the jobs it builds itself.
    return sorted(job.name for job in jobs if not job.name.startswith("__"))


def resolve_job_name(requested: str, names: Iterable[str]) -> str:
    """``requested`` itself if it is a job, the job it is an alias of, or a :class:`ConfigError`."""
    known = sorted(names)
    if requested in known:
        return requested
    target = JOB_ALIASES.get(requested)
    if target in known:
        return target
    raise ConfigError(f"unknown job {requested!r}; expected one of: {', '.join(known)}.")


def _load_definitions(env: str, factory: DefinitionsFactory | None) -> dg.Definitions:
    if factory is not None:
        return factory(env)
    # The definitions module builds `defs` for $CLUSTERING_ENV when imported; point it at the
    # requested environment so a run with --env dev never needs another environment's variables.
    os.environ["CLUSTERING_ENV"] = env
    from clustering.dagster.definitions import create_definitions

    return create_definitions(env)


# -- jobs ------------------------------------------------------------------------------------


def list_jobs(
    env: str, *, definitions_factory: DefinitionsFactory | None = None
) -> list[tuple[str, str]]:
    """``(name, first line of the description)`` for every job, sorted by name."""
    defs = _load_definitions(env, definitions_factory)
    jobs = defs.resolve_all_job_defs()
    descriptions = {job.name: job.description or "" for job in jobs}
    return [(name, _first_line(descriptions[name])) for name in _user_job_names(jobs)]


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def jobs_command(
    env: str,
    *,
    definitions_factory: DefinitionsFactory | None = None,
    out: Printer = _say,
    err: Printer = _complain,
) -> int:
    """Print the jobs with their descriptions and the accepted aliases; returns the exit code."""
    try:
        jobs = list_jobs(env, definitions_factory=definitions_factory)
    except ConfigError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except ClusteringError as exc:
        err(f"error: {exc}")
        return EXIT_FAILED
    width = max((len(name) for name, _ in jobs), default=0)
    out(f"Jobs ({env}):")
    for name, description in jobs:
        out(f"  {name.ljust(width)}  {description}".rstrip())
    names = {name for name, _ in jobs}
    aliases = [f"{alias} = {job}" for alias, job in JOB_ALIASES.items() if job in names]
    if aliases:
        out(f"Also accepted: {', '.join(aliases)}.")
    return EXIT_OK


# -- run -------------------------------------------------------------------------------------


def run_in_memory(
    env: str,
    overrides: Mapping[str, object],
    *,
    out: Printer = _say,
    err: Printer = _complain,
) -> int:
    """``full_pipeline_job`` in this process on a throwaway Dagster instance (``cluster``).

    The same assets and checks as every other way of running the pipeline, with ``overrides``
    layered over the environment's configuration; nothing is recorded in the run history.
    """
    import dagster as dg

    from clustering.dagster.definitions import create_definitions

    try:
        job = create_definitions(env, overrides=overrides).resolve_job_def("full_pipeline_job")
        tags = parse_tags({"clustering/trigger": "cluster"}, env)
        workers = _configured_workers(env, overrides)
    except ConfigError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    _start_worker_server_for(job, workers)
    with dg.DagsterInstance.ephemeral() as instance:
        return _execute(job, instance, None, tags, out=out, err=err)


def run_job(
    job_name: str,
    env: str,
    tags: Mapping[str, str] | Iterable[str] = (),
    *,
    definitions_factory: DefinitionsFactory | None = None,
    out: Printer = _say,
    err: Printer = _complain,
    run_config: Mapping[str, Any] | None = None,
) -> int:
    """Run ``job_name`` in this process against the project's Dagster instance.

    ``tags`` are ``key=value`` strings (as given to ``--tag``) or a mapping; ``clustering/env``
    is added. Prints each step as it starts and finishes, then a summary; errors go to ``err``
    as ``error: <sentence>``. Returns 0 when the run succeeded, 1 when it failed, 2 for a usage
    or configuration error (unknown job, malformed tag, invalid config). ``definitions_factory``
    replaces ``clustering.dagster.definitions.create_definitions`` (tests); ``run_config`` is
    the run's config (``ops: …``), as the Launchpad would send it.
    """
    from clustering.infra.instance import ensure_dagster_home

    try:
        run_tags = parse_tags(tags, env)
        defs = _load_definitions(env, definitions_factory)
        name = resolve_job_name(job_name, job_names(defs))
        job = defs.resolve_job_def(name)
        workers = _configured_workers(env)
        # Before the instance opens (~2 s of Dagster's storage imports), which it overlaps.
        _start_worker_server_for(job, workers)
        home = ensure_dagster_home(env=env)
        instance = _open_instance(home)
    except ConfigError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except ClusteringError as exc:
        err(f"error: {exc}")
        return EXIT_FAILED
    if name != job_name:
        out(f"{job_name} is another name for {name}.")
    with instance:
        try:
            return _execute(
                job,
                instance,
                home,
                run_tags,
                out=out,
                err=err,
                run_config=run_config,
            )
        except ConfigError as exc:
            err(f"error: {exc}")
            return EXIT_USAGE


def _open_instance(home: Path) -> dg.DagsterInstance:
    from clustering.infra.instance_storage import open_instance

    return open_instance(home)


#: Jobs handed to :func:`dagster.execute_job` by this process, by token (see registered_job).
_REGISTERED_JOBS: dict[str, dg.JobDefinition] = {}

#: How often the progress printer looks for new events of the run (seconds). Each look is a
#: query of the instance (~10 ms of this process's time, taken from the run): every 0.2 s cost
#: 2.3 s in a 40 s run, every 0.5 s 0.6 s in a 29 s run. A line shows at most a second late.
PROGRESS_POLL_S = 1.0


def registered_job(token: str) -> dg.JobDefinition:
    """The job :func:`_execute` registered under ``token``.

    ``dagster.execute_job`` takes a reconstructable job; this is the function it reconstructs
    from. The job always runs on the in-process executor, so it is only ever reconstructed in
    the process that registered it.
    """
    return _REGISTERED_JOBS[token]


def _configured_workers(env: str, overrides: Mapping[str, object] | None = None) -> int | None:
    """``params.workers`` of ``env``'s configuration; None (one per core) when it does not load
    here (the definitions may come from elsewhere and need none of it)."""
    try:
        return load_config(env, overrides).params.workers
    except ConfigError:
        return None


def _uses_worker_processes(job: dg.JobDefinition, workers: int | None) -> bool:
    """Whether a step of ``job`` will run categories in worker processes: it has such a step
    and ``workers`` (the configured number, else the cores) is more than one."""
    from clustering.core.engine import resolve_workers
    from clustering.dagster.assets.common import WORKER_PROCESSES_TAG

    # Even a job's single category runs in a worker unless ``workers`` leaves none.
    return resolve_workers(workers, 1) > 0 and any(
        WORKER_PROCESSES_TAG in op.tags for op in job.graph.node_defs
    )


def _start_worker_server_for(job: dg.JobDefinition, workers: int | None) -> None:
    """Start the worker processes' server now when ``job`` will use it: its imports (~2.7 s
    of CPU) then overlap this process's own start-up and the steps before the first one
    needing it, instead of delaying that step."""
    from clustering.core.engine import start_worker_server

    if _uses_worker_processes(job, workers):
        start_worker_server()


def _execute(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    home: Path | None,
    tags: Mapping[str, str],
    *,
    out: Printer,
    err: Printer,
    run_config: Mapping[str, Any] | None = None,
) -> int:
    """Execute ``job`` in this process while printing its progress; print the summary; return
    the code.

    The run goes through ``dagster.execute_job`` on the in-process executor: unlike
    ``execute_in_process`` it keeps no step's output value once the IO manager has stored it,
    so a step's memory is given back when the step ends. The progress lines come from a
    thread reading the run's events from the instance as they are stored.
    """
    import dagster as dg

    from clustering.infra.run_report import RunReport

    report = RunReport(width=_step_width(job))
    token = str(uuid.uuid4())
    run_tags = {**tags, RUN_TOKEN_TAG: token}
    printer = _ProgressPrinter(
        instance, token, report, out, f"Running {job.name} (env {tags.get(ENV_TAG, '?')})"
    )
    started = time.perf_counter()
    _REGISTERED_JOBS[token] = job.with_executor_def(dg.in_process_executor)
    try:
        printer.start()
        result = dg.execute_job(
            dg.build_reconstructable_job(__name__, "registered_job", reconstructable_args=(token,)),
            instance,
            run_config={**(_quiet_console_config(job) or {}), **(run_config or {})} or None,
            tags=run_tags,
            raise_on_error=False,
        )
    except dg.DagsterInvalidConfigError as exc:
        problems = "; ".join(error.message for error in exc.errors) or _first_line(str(exc))
        raise ConfigError(f"job {job.name} has invalid run config: {problems}") from exc
    finally:
        printer.stop()
        del _REGISTERED_JOBS[token]
    elapsed = time.perf_counter() - started

    run_id = result.run_id
    run = instance.get_run_by_id(run_id)
    status = run.status.value if run is not None else ("SUCCESS" if result.success else "FAILURE")
    for line in report.summary(run_id, status, elapsed):
        out(line)
    if home is not None:
        quoted = shlex.quote(str(home))
        out(f"Run history: {home} (UI: DAGSTER_HOME={quoted} dagster dev -m {DEFINITIONS_MODULE})")
    if printer.errors:
        err(f"warning: some progress lines could not be shown: {printer.errors[0]!r}")
    return EXIT_OK if result.success else EXIT_FAILED


class _ProgressPrinter:
    """Prints the progress lines of one run from a thread: finds the run, then reads its events
    in the order the instance stored them, each once (a storage cursor), until stopped;
    :meth:`stop` reads whatever is left, so the summary sees every event.

    A read that fails while the run is writing (a storage busy with the run's own writes) is
    tried again at the next look; only a failure of the last read after the run is kept. A
    display problem (a closed pipe, a bug in the report) loses that one event's lines. Both
    end in ``errors`` and never reach the run.
    """

    def __init__(
        self,
        instance: dg.DagsterInstance,
        token: str,
        report: RunReport,
        out: Printer,
        title: str,
    ) -> None:
        import threading

        self._instance = instance
        self._token = token
        self._report = report
        self._out = out
        self._title = title
        self._run_id: str | None = None
        self._cursor: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self.errors: list[Exception] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self._poll()  # events stored after the thread's last look
        except Exception as exc:
            self.errors.append(exc)

    def _loop(self) -> None:
        while not self._stopping.wait(PROGRESS_POLL_S):
            with contextlib.suppress(Exception):  # tried again at the next look
                self._poll()

    def _poll(self) -> None:
        if self._run_id is None:
            self._run_id = self._find_run()
            if self._run_id is None:
                return
            self._say(f"{self._title} as run {self._run_id}")
        while True:
            page = self._instance.get_records_for_run(self._run_id, cursor=self._cursor)
            for record in page.records:
                try:
                    lines = self._report.handle(record.event_log_entry)
                except Exception as exc:
                    self.errors.append(exc)
                    continue
                for line in lines:
                    self._say(line)
            self._cursor = page.cursor
            if not page.has_more:
                return

    def _find_run(self) -> str | None:
        import dagster as dg

        if self._instance.is_persistent:
            runs = self._instance.get_run_ids(
                filters=dg.RunsFilter(tags={RUN_TOKEN_TAG: self._token}), limit=1
            )
            return runs[0] if runs else None
        # A throwaway instance (``cluster``) holds this run only. Its in-memory run storage
        # cannot be read while the run writes to it; its event log can.
        started = self._instance.fetch_run_status_changes(dg.DagsterEventType.RUN_START, limit=1)
        return started.records[0].run_id if started.records else None

    def _say(self, line: str) -> None:
        try:
            self._out(line)
        except Exception as exc:
            self.errors.append(exc)


def _quiet_console_config(job: dg.JobDefinition) -> dict[str, Any] | None:
    """The job's run config with Dagster's console logger silenced, or None to leave it alone.

    Without this, Dagster's console logger writes every event at DEBUG level to stderr, with
    full tracebacks for failures, burying the progress lines. Only the console output changes:
    the instance still records every event and log message, so the UI shows everything. Jobs
    whose run config goes through a config mapping or partitioned config take config of another
    shape; their console logger is left on.
    """
    if job.config_mapping is not None or job.partitioned_config is not None:
        return None
    if "console" not in job.loggers:
        return None
    base = dict(job.run_config or {})
    loggers = dict(base.get("loggers") or {})
    loggers["console"] = {"config": {"log_level": "CRITICAL"}}
    return {**base, "loggers": loggers}


def _step_width(job: dg.JobDefinition) -> int:
    names = job.graph.node_names()
    return min(max((len(name) for name in names), default=0), _MAX_STEP_WIDTH)

"""Turn a Dagster run's event stream into progress lines and a closing summary.

:class:`RunReport` is fed every :class:`dagster.EventLogEntry` of one run, in order, as Dagster
stores it. :meth:`RunReport.handle` returns the lines to print at that moment (a step started,
finished, failed, a check did not pass); :meth:`RunReport.summary` returns the closing lines: run
id, status, duration, the failing steps with one sentence each, and what was written where (DuckDB
tables with their row counts, files, exports), read from the materialization metadata our IO
manager records (``dagster/table_name``, ``dagster/row_count``, ``duckdb_file``, ``path``,
``export_*``).

Nothing here prints or talks to an instance, so it can be tested with the events of any run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import dagster as dg

#: Metadata keys the IO manager writes (see ``clustering.dagster.resources.io_manager``).
TABLE_NAME_KEY = "dagster/table_name"
ROW_COUNT_KEY = "dagster/row_count"
DUCKDB_FILE_KEY = "duckdb_file"
PATH_KEY = "path"
EXPORT_PREFIX = "export_"
#: Metadata key of a few plain-text lines an asset wants shown in the run summary.
SUMMARY_KEY = "summary"

_OK, _FAILED, _STARTED, _RETRY, _SKIPPED, _CHECK = "✓", "✗", "▸", "↻", "-", "!"


class ErrorInfo(Protocol):
    """The parts of Dagster's serialized error (``SerializableErrorInfo``) used here."""

    @property
    def message(self) -> str: ...

    @property
    def cls_name(self) -> str | None: ...

    @property
    def cause(self) -> ErrorInfo | None: ...

    @property
    def context(self) -> ErrorInfo | None: ...


@dataclass
class StepOutcome:
    """What happened to one step so far."""

    key: str
    status: str  # "running", "succeeded", "failed", "retrying" or "skipped"
    started_at: float | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Materialized:
    """One asset materialized in the run and where its value went."""

    asset: str
    table: str | None = None
    rows: int | None = None
    duckdb_file: str | None = None
    path: str | None = None
    exports: tuple[str, ...] = ()
    highlights: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckOutcome:
    """One asset check evaluation."""

    asset: str
    check: str
    passed: bool
    severity: str  # "WARN" or "ERROR"
    description: str | None
    step: str | None


def format_seconds(seconds: float) -> str:
    """``1.2 s`` under a minute, ``3 min 05 s`` above."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped (empty if there is none)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def error_sentence(error: ErrorInfo | None, description: str | None = None) -> str:
    """One readable sentence for a failure.

    ``description`` (a :class:`dagster.Failure`'s description) wins when present. Otherwise the
    error is unwrapped from Dagster's own wrappers (``DagsterExecutionStepExecutionError`` and
    the like carry the user's exception as their cause) and its first line is used. Our own
    errors (``clustering.*``) and Dagster's read as sentences on their own; any other exception
    keeps its class name, because ``KeyError: 'x'`` says more than ``'x'``.
    """
    if description and first_line(description):
        return first_line(description)
    if error is None:
        return "no error message was recorded."
    while True:
        qualified, text = _split_message(error)
        inner = error.cause or error.context
        if inner is None or not qualified.startswith("dagster."):
            break
        error = inner
    line = first_line(text)
    if qualified.startswith(("clustering.", "dagster.")) and line:
        return line
    name = error.cls_name or qualified.rsplit(".", 1)[-1] or "error"
    return f"{name}: {line}" if line else name


def _split_message(error: ErrorInfo) -> tuple[str, str]:
    """``("pkg.mod.Cls", "text")`` from Dagster's ``"pkg.mod.Cls: text"`` message format."""
    head, sep, rest = error.message.partition(": ")
    looks_like_name = sep and head and not any(ch.isspace() for ch in head)
    if looks_like_name and (error.cls_name is None or head.rsplit(".", 1)[-1] == error.cls_name):
        return head, rest
    return error.cls_name or "", error.message


def _raw(value: object) -> object:
    """The plain Python value of a metadata entry (``MetadataValue.value``) or the entry itself."""
    return getattr(value, "value", value)


def _text(metadata: Mapping[str, object], key: str) -> str | None:
    value = _raw(metadata[key]) if key in metadata else None
    return None if value is None else str(value)


def _int(metadata: Mapping[str, object], key: str) -> int | None:
    value = _raw(metadata[key]) if key in metadata else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def materialized_from_metadata(asset: str, metadata: Mapping[str, object]) -> Materialized:
    """Where an asset went, from its materialization metadata."""
    # In the order the IO manager recorded them (Parquet first).
    exports = tuple(
        str(_raw(value)) for key, value in metadata.items() if key.startswith(EXPORT_PREFIX)
    )
    return Materialized(
        asset=asset,
        table=_text(metadata, TABLE_NAME_KEY),
        rows=_int(metadata, ROW_COUNT_KEY),
        duckdb_file=_text(metadata, DUCKDB_FILE_KEY),
        path=_text(metadata, PATH_KEY),
        exports=exports,
        highlights=tuple((_text(metadata, SUMMARY_KEY) or "").splitlines()),
    )


#: A step's per-category progress line ("3/20: CANDY/SNACKS k=4"), printed as it comes.
PROGRESS_LINE = re.compile(r"^\d+/\d+: ")


class RunReport:
    """Collects one run's events; see the module docstring.

    ``width`` pads step names so durations line up (the longest step name of the job).
    """

    def __init__(self, width: int = 0) -> None:
        self.width = width
        self.steps: dict[str, StepOutcome] = {}
        self.planned: list[str] = []
        # Keyed by asset so a retried step that materializes again is listed once, latest wins.
        self.materialized: dict[str, Materialized] = {}
        self.checks: list[CheckOutcome] = []
        self.run_started_at: float | None = None
        self.run_ended_at: float | None = None
        self.run_error: str | None = None

    # -- events ----------------------------------------------------------------------------------

    def handle(self, entry: dg.EventLogEntry) -> list[str]:
        """Record one event; return the lines to print now (often none)."""
        event = entry.dagster_event
        if event is None:
            # Plain log messages: the UI shows them; the terminal shows per-category progress.
            text = entry.user_message or ""
            return [f"      {text}"] if PROGRESS_LINE.match(text) else []
        kind = event.event_type
        key = event.step_key or ""
        at = entry.timestamp
        types = dg.DagsterEventType
        if kind == types.RUN_START:
            self.run_started_at = at
        elif kind in (types.RUN_SUCCESS, types.RUN_FAILURE, types.RUN_CANCELED):
            self.run_ended_at = at
            if kind == types.RUN_FAILURE:
                data = event.job_failure_data
                self.run_error = error_sentence(data.error) if data.error else None
            elif kind == types.RUN_CANCELED:
                self.run_error = "the run was canceled."
        elif kind == types.ASSET_MATERIALIZATION_PLANNED and event.asset_key is not None:
            self.planned.append(event.asset_key.to_user_string())
        elif kind in (types.STEP_START, types.STEP_RESTARTED):
            self.steps[key] = StepOutcome(key, "running", started_at=at)
            return [f"  {_STARTED} {key}"]
        elif kind == types.STEP_SUCCESS:
            step = self._step(key)
            step.status = "succeeded"
            step.seconds = event.step_success_data.duration_ms / 1000
            return [f"  {_OK} {self._name(key)}  {format_seconds(step.seconds)}"]
        elif kind in (types.STEP_FAILURE, types.STEP_UP_FOR_RETRY):
            return self._step_failed(event, key, at)
        elif kind == types.STEP_SKIPPED:
            self._step(key).status = "skipped"
            return [f"  {_SKIPPED} {self._name(key)}  skipped"]
        elif kind == types.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            asset = materialization.asset_key.to_user_string()
            self.materialized[asset] = materialized_from_metadata(asset, materialization.metadata)
        elif kind == types.ASSET_CHECK_EVALUATION:
            return self._check(event.asset_check_evaluation_data, event.step_key)
        return []

    def _step(self, key: str) -> StepOutcome:
        return self.steps.setdefault(key, StepOutcome(key, "running"))

    def _name(self, key: str) -> str:
        return key.ljust(self.width)

    def _step_failed(self, event: dg.DagsterEvent, key: str, at: float) -> list[str]:
        step = self._step(key)
        if step.started_at is not None:
            step.seconds = max(0.0, at - step.started_at)
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            error, user = data.error, data.user_failure_data
            step.status, glyph, verb = "failed", _FAILED, "failed"
        else:
            retry = event.step_retry_data
            error, user = retry.error, None
            step.status, glyph, verb = "retrying", _RETRY, "failed, will retry"
        if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
            # Dagster's own message only says "1 blocking asset check failed"; the checks'
            # descriptions (recorded just before) say why.
            step.error = self._blocking_checks_sentence(key) or error_sentence(error)
        else:
            step.error = error_sentence(error, user.description if user else None)
        took = f"  {format_seconds(step.seconds)}" if step.seconds is not None else ""
        return [f"  {glyph} {self._name(key)}{took}  {verb}: {step.error}"]

    def _blocking_checks_sentence(self, key: str) -> str | None:
        failed = [
            check
            for check in self.checks
            if not check.passed and check.severity == "ERROR" and check.step == key
        ]
        return "; ".join(_check_text(check) for check in failed) or None

    def _check(self, evaluation: dg.AssetCheckEvaluation, step: str | None) -> list[str]:
        outcome = CheckOutcome(
            asset=evaluation.asset_key.to_user_string(),
            check=evaluation.check_name,
            passed=evaluation.passed,
            severity=evaluation.severity.value,
            description=evaluation.description,
            step=step,
        )
        self.checks.append(outcome)
        if outcome.passed:
            return []
        return [f"  {_CHECK} {_check_text(outcome)} ({_severity_word(outcome)})"]

    # -- results ---------------------------------------------------------------------------------

    @property
    def failed_steps(self) -> list[StepOutcome]:
        """Steps whose last attempt failed, in the order they started."""
        return [step for step in self.steps.values() if step.status == "failed"]

    def duration(self) -> float | None:
        """Seconds from the run's start event to its end event, when both were seen."""
        if self.run_started_at is None or self.run_ended_at is None:
            return None
        return max(0.0, self.run_ended_at - self.run_started_at)

    def summary(self, run_id: str, status: str, elapsed: float | None = None) -> list[str]:
        """Closing lines: run id, status, duration, failures, what was written where.

        ``status`` is the run's final status as Dagster records it (``SUCCESS``, ``FAILURE``,
        ``CANCELED``); ``elapsed`` is used when the run's start or end event was not seen.
        """
        seconds = self.duration()
        if seconds is None:
            seconds = elapsed
        took = f" in {format_seconds(seconds)}" if seconds is not None else ""
        lines = ["", f"Run {run_id}: {status}{took}."]
        for step in self.failed_steps:
            lines.append(f"Step {step.key} failed: {step.error}")
        if status != "SUCCESS" and not self.failed_steps and self.run_error:
            lines.append(f"The run failed before any step did: {self.run_error}")
        highlights = [h for item in self.materialized.values() for h in item.highlights]
        if highlights:
            lines.append("Results:")
            lines.extend(f"  {line}" for line in highlights)
        lines.extend(self._written_lines(status))
        missing = sorted(set(self.planned) - set(self.materialized))
        if missing and status != "SUCCESS":
            lines.append(f"Not materialized: {', '.join(missing)}.")
        lines.extend(self._check_lines())
        return lines

    def _written_lines(self, status: str) -> list[str]:
        if not self.materialized:
            return ["Nothing was written."]
        heading = "Written:" if status == "SUCCESS" else "Written before the run stopped:"
        lines = [heading]
        tables: dict[str | None, list[Materialized]] = {}
        files: list[Materialized] = []
        elsewhere: list[str] = []
        for item in self.materialized.values():
            if item.table is not None:
                tables.setdefault(item.duckdb_file, []).append(item)
            elif item.path is not None:
                files.append(item)
            elif not item.exports:
                elsewhere.append(item.asset)
        for duckdb_file, items in tables.items():
            lines.append(f"  DuckDB {duckdb_file}" if duckdb_file else "  Tables")
            width = max(len(item.table or "") for item in items)
            for item in items:
                rows = f"  {item.rows:,} rows" if item.rows is not None else ""
                lines.append(f"    {(item.table or '').ljust(width)}{rows}")
        if files:
            lines.append("  Files")
            width = max(len(item.asset) for item in files)
            lines.extend(f"    {item.asset.ljust(width)}  {item.path}" for item in files)
        for item in self.materialized.values():
            if item.exports:
                lines.append(f"  Exports of {item.asset}")
                lines.extend(f"    {path}" for path in item.exports)
        if elsewhere:
            lines.append(f"  Materialized without a recorded location: {', '.join(elsewhere)}")
        return lines

    def _check_lines(self) -> list[str]:
        if not self.checks:
            return []
        failed = [c for c in self.checks if not c.passed]
        passed = len(self.checks) - len(failed)
        if not failed:
            return [f"Checks: {passed} passed."]
        return [
            f"Checks: {passed} passed, {len(failed)} did not pass:",
            *(f"  {_check_text(c)} ({_severity_word(c)})" for c in failed),
        ]


def _severity_word(check: CheckOutcome) -> str:
    return "warning" if check.severity == "WARN" else "error"


def _check_text(check: CheckOutcome) -> str:
    reason = f": {first_line(check.description)}" if check.description else ""
    return f"check {check.check} on {check.asset} did not pass{reason}"

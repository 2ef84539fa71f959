"""``python -m clustering run`` / ``jobs``: the run logic against small test definitions, the
pure event helpers, and the real command line through a subprocess."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from clustering.cli.main import main
from clustering.cli.run import jobs_command, parse_tags, resolve_job_name, run_job
from clustering.core.errors import ConfigError
from clustering.infra.instance import DEFAULT_HOME_DIRNAME
from clustering.infra.run_report import ErrorInfo, error_sentence, format_seconds

ROOT = Path(__file__).resolve().parents[1]
RUN_LINE = re.compile(r"^Run (?P<id>[0-9a-f-]{36}): (?P<status>[A-Z]+) in ")

# -- small test definitions -------------------------------------------------------------------

#: Output lines seen so far by the running test, and whether each asset body saw its own start
#: line printed while it ran: proves progress is printed while the run is going, not after it.
_LINES: list[str] = []
_SEEN_AT_BODY: dict[str, bool] = {}


def _printed_while_running(line: str, timeout_s: float = 10.0) -> bool:
    """Whether ``line`` is printed while the step calling this is still running."""
    deadline = time.monotonic() + timeout_s
    while line not in _LINES:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@dg.asset(group_name="demo")
def raw_numbers() -> list[int]:
    """A tiny upstream asset."""
    _SEEN_AT_BODY["raw_numbers"] = _printed_while_running("  ▸ raw_numbers")
    return [1, 2, 3]


@dg.asset(group_name="demo")
def doubled(raw_numbers: list[int]) -> dg.Output[list[int]]:
    """Records table metadata the way our IO manager does."""
    _SEEN_AT_BODY["doubled"] = _printed_while_running("  ▸ doubled")
    return dg.Output(
        [2 * n for n in raw_numbers],
        metadata={
            "dagster/table_name": "demo.doubled",
            "dagster/row_count": 3,
            "duckdb_file": dg.MetadataValue.path("/data/outputs/clustering_dev.duckdb"),
        },
    )


@dg.asset(group_name="demo")
def final_store_clusters(doubled: list[int]) -> dg.Output[int]:
    """Records a table plus the export files."""
    return dg.Output(
        len(doubled),
        metadata={
            "dagster/table_name": "demo.final_store_clusters",
            "dagster/row_count": 1234,
            "duckdb_file": dg.MetadataValue.path("/data/outputs/clustering_dev.duckdb"),
            "export_parquet": dg.MetadataValue.path("/data/outputs/dev/final.parquet"),
            "export_csv": dg.MetadataValue.path("/data/outputs/dev/final.csv"),
        },
    )


@dg.asset(group_name="demo")
def broken(raw_numbers: list[int]) -> int:
    """Fails the way our steps fail: one sentence in a dagster.Failure."""
    raise dg.Failure(description="bad thing happened.")


@dg.asset(group_name="demo")
def after_broken(broken: int) -> int:
    """Never runs."""
    return broken


@dg.asset(group_name="demo")
def crashing() -> int:
    """Fails with an ordinary exception."""
    raise ValueError("plain value error")


@dg.asset(group_name="demo")
def checked() -> int:
    """Has a blocking check that fails."""
    return 1


@dg.asset_check(asset=checked, blocking=True)
def checked_contract() -> dg.AssetCheckResult:
    """Blocking input contract."""
    return dg.AssetCheckResult(passed=False, description="column STORE_NBR is missing.")


def _definitions(env: str) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            raw_numbers,
            doubled,
            final_store_clusters,
            broken,
            after_broken,
            crashing,
            checked,
        ],
        asset_checks=[checked_contract],
        jobs=[
            dg.define_asset_job(
                "full_pipeline_job",
                selection=["raw_numbers", "doubled", "final_store_clusters"],
                description="Everything, end to end.\nSecond line not shown.",
            ),
            dg.define_asset_job("failing_job", selection=["raw_numbers", "broken", "after_broken"]),
            dg.define_asset_job("crashing_job", selection=["crashing"]),
            dg.define_asset_job("check_job", selection=dg.AssetSelection.assets("checked")),
            dg.define_asset_job("internal_clustering_job", selection=["raw_numbers"]),
        ],
    )


JOBS = "check_job, crashing_job, failing_job, full_pipeline_job, internal_clustering_job"


@dataclass
class Outcome:
    code: int
    out: list[str]
    err: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.out)

    @property
    def run_id(self) -> str:
        for line in self.out:
            match = RUN_LINE.match(line)
            if match:
                return match["id"]
        raise AssertionError(f"no run line in:\n{self.text}")


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway DAGSTER_HOME; the working directory is a temporary project root."""
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    yield home


def _run(job: str, tags: list[str] | None = None) -> Outcome:
    _LINES.clear()
    _SEEN_AT_BODY.clear()
    err: list[str] = []
    code = run_job(
        job, "dev", tags or [], definitions_factory=_definitions, out=_LINES.append, err=err.append
    )
    return Outcome(code, list(_LINES), err)


# -- running jobs -----------------------------------------------------------------------------


@pytest.mark.usefixtures("dagster_home")
def test_success_streams_steps_and_ends_with_a_summary() -> None:
    done = _run("full_pipeline_job")
    assert done.code == 0, done.text
    assert done.err == []
    for step in ["raw_numbers", "doubled", "final_store_clusters"]:
        started = done.out.index(f"  ▸ {step}")
        finished = next(
            i for i, line in enumerate(done.out) if re.match(rf"  ✓ {step}\s+\d+\.\d s$", line)
        )
        assert started < finished
    # Each step's start line was already printed when its body ran: progress is streamed.
    assert _SEEN_AT_BODY == {"raw_numbers": True, "doubled": True}
    assert done.out[0] == f"Running full_pipeline_job (env dev) as run {done.run_id}"

    summary = done.text[done.text.index("\nRun ") :]
    assert re.search(rf"Run {done.run_id}: SUCCESS in \d+\.\d s\.", summary)
    assert "DuckDB /data/outputs/clustering_dev.duckdb" in summary
    assert re.search(r"demo\.doubled\s+3 rows", summary)
    assert re.search(r"demo\.final_store_clusters\s+1,234 rows", summary)
    exports = summary.index("Exports of final_store_clusters")
    assert summary.index("/data/outputs/dev/final.parquet") > exports
    assert summary.index("/data/outputs/dev/final.csv") > exports
    assert "Run history: " in summary


@pytest.mark.usefixtures("dagster_home")
def test_progress_survives_a_read_of_the_run_storage_failing_while_the_run_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first read of the run's events by the progress thread fails as a busy SQLite does;
    # raw_numbers waits until its start line is shown, so the failure happens mid-run.
    real = dg.DagsterInstance.get_records_for_run
    failed: list[str] = []

    def busy_once(self: dg.DagsterInstance, *args: object, **kwargs: object) -> object:
        if threading.current_thread().name == "progress" and not failed:
            failed.append("once")
            raise sqlite3.OperationalError("database is locked")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dg.DagsterInstance, "get_records_for_run", busy_once)
    done = _run("full_pipeline_job")
    assert failed == ["once"]
    assert done.code == 0, done.text
    assert done.err == []  # a read tried again is no lost line: no warning
    for step in ["raw_numbers", "doubled", "final_store_clusters"]:
        assert done.out.count(f"  ▸ {step}") == 1
        assert len([line for line in done.out if line.startswith(f"  ✓ {step} ")]) == 1
    assert re.search(r"demo\.final_store_clusters\s+1,234 rows", done.text)


@pytest.mark.usefixtures("dagster_home")
def test_failure_names_the_step_and_the_sentence() -> None:
    done = _run("failing_job")
    assert done.code == 1
    assert re.search(r"^  ✗ broken\s+\d+\.\d s  failed: bad thing happened\.$", done.text, re.M)
    assert re.search(rf"Run {done.run_id}: FAILURE in ", done.text)
    assert "Step broken failed: bad thing happened." in done.out
    assert "Not materialized: after_broken, broken." in done.out
    assert "Traceback" not in done.text and not done.err


@pytest.mark.usefixtures("dagster_home")
def test_an_ordinary_exception_keeps_its_class_name() -> None:
    done = _run("crashing_job")
    assert done.code == 1
    assert "Step crashing failed: ValueError: plain value error" in done.out


@pytest.mark.usefixtures("dagster_home")
def test_a_failed_blocking_check_gives_the_checks_description() -> None:
    done = _run("check_job")
    assert done.code == 1
    assert (
        "Step checked_checked_contract failed: check checked_contract on checked did not pass: "
        "column STORE_NBR is missing." in done.out
    )


def test_unknown_job_lists_the_jobs_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", "placeholder")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.chdir(tmp_path)
    done = _run("nope_job")
    assert done.code == 2
    assert done.err == [f"error: unknown job 'nope_job'; expected one of: {JOBS}."]
    assert done.out == []
    assert not (tmp_path / DEFAULT_HOME_DIRNAME).exists()


def test_alias_runs_the_job_it_names(dagster_home: Path) -> None:
    done = _run("internal_ml_job")
    assert done.code == 0, done.text
    assert done.out[0] == "internal_ml_job is another name for internal_clustering_job."
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(done.run_id)
        assert run is not None and run.job_name == "internal_clustering_job"


def test_tags_are_recorded_on_the_run(dagster_home: Path) -> None:
    done = _run("internal_clustering_job", ["owner=ana", "ticket=CL-42", "note=a=b"])
    assert done.code == 0, done.text
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(done.run_id)
        assert run is not None
        assert run.tags["owner"] == "ana"
        assert run.tags["ticket"] == "CL-42"
        assert run.tags["note"] == "a=b"
        assert run.tags["clustering/env"] == "dev"


def test_run_is_recorded_in_the_dagster_home_instance(dagster_home: Path) -> None:
    done = _run("full_pipeline_job")
    assert done.code == 0, done.text
    assert os.environ["DAGSTER_HOME"] == str(dagster_home)
    # A fresh instance, as `dagster dev` would open it, sees the run and its materializations.
    with dg.DagsterInstance.get() as instance:
        assert Path(instance.root_directory) == dagster_home
        run = instance.get_run_by_id(done.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        record = instance.get_latest_materialization_event(dg.AssetKey("final_store_clusters"))
        assert record is not None and record.run_id == done.run_id


def test_default_home_under_the_project_is_used_without_dagster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", "placeholder")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.chdir(tmp_path)
    done = _run("internal_clustering_job")
    assert done.code == 0, done.text
    home = tmp_path / DEFAULT_HOME_DIRNAME
    assert (home / "dagster.yaml").is_file()
    with dg.DagsterInstance.get() as instance:
        assert Path(instance.root_directory) == home
        assert instance.get_run_by_id(done.run_id) is not None


@pytest.mark.parametrize(
    ("tags", "sentence"),
    [
        (["owner"], "error: --tag 'owner' must have the form key=value."),
        (["=x"], "error: --tag '=x' must have the form key=value."),
        (["a=1", "a=2"], "error: --tag a is given twice; give each key once."),
        (
            ["clustering/env=prod"],
            "error: the tag clustering/env comes from --env; use --env instead of --tag.",
        ),
        (
            ["clustering/invocation=x"],
            "error: the tag clustering/invocation is set by this command; use another key.",
        ),
    ],
)
@pytest.mark.usefixtures("dagster_home")
def test_bad_tags_are_one_sentence(tags: list[str], sentence: str) -> None:
    done = _run("full_pipeline_job", tags)
    assert done.code == 2
    assert done.err == [sentence]
    assert done.out == []


def test_jobs_lists_names_descriptions_and_aliases() -> None:
    out: list[str] = []
    assert jobs_command("dev", definitions_factory=_definitions, out=out.append) == 0
    assert out[0] == "Jobs (dev):"
    assert re.match(r"^  full_pipeline_job\s+Everything, end to end\.$", out[4])
    assert out[-1] == "Also accepted: internal_ml_job = internal_clustering_job."


# -- pure helpers -----------------------------------------------------------------------------


@dataclass
class FakeError:
    message: str
    cls_name: str | None
    cause: ErrorInfo | None = None
    context: ErrorInfo | None = None


def test_error_sentence() -> None:
    user = FakeError(
        "clustering.core.errors.InputContractError: no column 'SKU_NBR'.\n", "InputContractError"
    )
    wrapped = FakeError(
        'dagster._core.errors.DagsterExecutionStepExecutionError: Error in op "x":\n',
        "DagsterExecutionStepExecutionError",
        cause=user,
    )
    assert error_sentence(wrapped) == "no column 'SKU_NBR'."
    assert error_sentence(FakeError("KeyError: 'x'\n", "KeyError")) == "KeyError: 'x'"
    assert error_sentence(wrapped, "from the description.\nmore") == "from the description."
    assert error_sentence(None) == "no error message was recorded."
    assert error_sentence(FakeError("RuntimeError: \n", "RuntimeError")) == "RuntimeError"


def test_format_seconds() -> None:
    assert format_seconds(1.234) == "1.2 s"
    assert format_seconds(185.4) == "3 min 05 s"


def test_parse_tags_and_resolve_job_name() -> None:
    assert parse_tags(["a=1", "b="], "prod") == {"a": "1", "b": "", "clustering/env": "prod"}
    assert parse_tags({"a": "1"}, "dev") == {"a": "1", "clustering/env": "dev"}
    assert resolve_job_name("external_ml_job", ["external_clustering_job"]) == (
        "external_clustering_job"
    )
    with pytest.raises(ConfigError, match=r"expected one of: a_job, b_job\.$"):
        resolve_job_name("internal_ml_job", ["b_job", "a_job"])


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def stub_definitions_module(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``clustering.dagster.definitions`` replaced by a module whose factory builds the test
    definitions; returns the environments it was asked for."""
    asked: list[str] = []

    def create_definitions(env: str) -> dg.Definitions:
        asked.append(env)
        return _definitions(env)

    module = types.ModuleType("clustering.dagster.definitions")
    module.create_definitions = create_definitions  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "clustering.dagster.definitions", module)
    monkeypatch.setenv("CLUSTERING_ENV", "dev")
    return asked


def test_main_run_and_jobs_use_the_definitions_module(
    stub_definitions_module: list[str],
    dagster_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "nope_job", "--env", "staging"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: unknown job 'nope_job'; expected one of: {JOBS}."
    assert stub_definitions_module == ["staging"]
    assert os.environ["CLUSTERING_ENV"] == "staging"

    assert main(["run", "internal_ml_job", "--tag", "owner=ana"]) == 0
    captured = capsys.readouterr()
    assert "  ✓ raw_numbers" in captured.out
    assert captured.err == ""

    assert main(["jobs"]) == 0
    assert "full_pipeline_job" in capsys.readouterr().out


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clustering", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_help_lists_run_and_jobs(tmp_path: Path) -> None:
    done = _cli("--help", cwd=tmp_path, env={})
    assert done.returncode == 0
    assert re.search(r"^\s+run\s", done.stdout, re.M)
    assert re.search(r"^\s+jobs\s", done.stdout, re.M)


def test_cli_unknown_job_exits_2_with_the_job_list(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = _cli("run", "nope_job", cwd=tmp_path, env={"DAGSTER_HOME": str(home)})
    assert done.returncode == 2, done.stderr
    expected = (
        "error: unknown job 'nope_job'; expected one of: compare_runs_job, "
        "external_clustering_job, external_preprocessing_job, full_pipeline_job, "
        "internal_clustering_job, internal_preprocessing_job, merging_job."
    )
    assert done.stderr.strip().splitlines()[-1] == expected
    assert "Traceback" not in done.stderr
    assert not home.exists() and not (tmp_path / DEFAULT_HOME_DIRNAME).exists()

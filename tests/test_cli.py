"""The command line through a subprocess: what a user types and sees."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from shared_runs import ClusterRun

ROOT = Path(__file__).resolve().parents[1]


def _cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clustering", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_the_commands() -> None:
    done = _cli("--help")
    assert done.returncode == 0
    assert "generate-data" in done.stdout and "cluster" in done.stdout


def test_no_command_prints_help_and_exits_2() -> None:
    done = _cli()
    assert done.returncode == 2
    assert "usage:" in done.stdout


@pytest.mark.parametrize(
    ("outcome", "status"), [("return 3", 3), ("raise RuntimeError('boom')", 1)]
)
def test_the_command_exits_with_its_status_after_every_exit_handler(
    outcome: str, status: int
) -> None:
    # The entry point leaves without Python's module teardown: only once every other exit
    # handler has run (here one registered by the command), with the command's status.
    script = (
        "import atexit\n"
        "import clustering.__main__ as entry\n"
        "import clustering.cli.main as cli\n"
        "def fake_main():\n"
        "    atexit.register(lambda: print('later handler ran', flush=True))\n"
        f"    {outcome}\n"
        "cli.main = fake_main\n"
        "entry.run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == status
    assert done.stdout == "later handler ran\n"
    assert ("RuntimeError: boom" in done.stderr) is (status == 1)


def test_unknown_preset_is_one_sentence(tmp_path: Path) -> None:
    done = _cli("generate-data", "--preset", "huge", "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: unknown preset 'huge'; expected one of: small, medium, large, xlarge."
    )
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_cluster_writes_results_and_prints_a_summary(small_clustered: ClusterRun) -> None:
    # `cluster --raw-dir SMALL --out OUT --workers 2` through a subprocess (see conftest).
    out, done = small_clustered.out, small_clustered.done
    assert done.returncode == 0, done.stderr
    for name in [
        "final_store_clusters.parquet",
        "final_store_clusters.csv",
        "merging_summary.csv",
        "internal_models.csv",
        "internal_profiles.csv",
        "clustering_dev.duckdb",
    ]:
        assert (out / name).is_file(), name
        assert str(out / name) in done.stdout
    final = pd.read_parquet(out / "final_store_clusters.parquet")
    csv = pd.read_csv(out / "final_store_clusters.csv")
    assert len(final) == len(csv)
    assert list(final.columns) == [
        "STORE_NBR",
        "CATEGORY",
        "INTERNAL_CLUSTER",
        "EXTERNAL_CLUSTER",
        "DEMAND_CLUSTER",
        "REBALANCED_CLUSTER",
        "REASSIGNED",
        "DISTANCE",
        "OVERRIDDEN",
        "OVERRIDE_REASON",
    ]
    for category in final["CATEGORY"].unique():
        assert category in done.stdout
    assert "stores assigned" in done.stdout
    # Progress of the throwaway instance's run: its id first, each step started and finished
    # once, and a summary naming the same run.
    lines = done.stdout.splitlines()
    run_id = lines[0].rpartition(" as run ")[2]
    assert lines[0] == f"Running full_pipeline_job (env dev) as run {run_id}", lines[:3]
    for step in ["internal_clustering", "merge_clusters", "clustering_report"]:
        assert lines.count(f"  ▸ {step}") == 1
        assert len([line for line in lines if line.startswith(f"  ✓ {step} ")]) == 1
    assert f"Run {run_id}: SUCCESS in " in done.stdout
    assert "progress lines could not be shown" not in done.stderr


def _copy_inputs(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ["internal_sales.parquet", "need_state.csv", "external_sales.parquet"]:
        shutil.copy(source / name, target / name)
    return target


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("drop_column", "missing column TOTAL_SALES"),
        ("negative", "column TOTAL_SALES must be ≥ 0; 1 row is negative"),
        ("empty", "is empty (no rows)"),
    ],
)
def test_bad_sales_file_one_sentence_and_nothing_damaged(
    small_data: Path, tmp_path: Path, breakage: str, message: str
) -> None:
    raw = _copy_inputs(small_data, tmp_path / "raw")
    sales = pd.read_parquet(raw / "internal_sales.parquet")
    if breakage == "drop_column":
        sales = sales.drop(columns=["TOTAL_SALES"])
    elif breakage == "negative":
        sales.loc[sales.index[3], "TOTAL_SALES"] = -5.0
    else:
        sales = sales.iloc[0:0]
    sales.to_parquet(raw / "internal_sales.parquet", index=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "final_store_clusters.csv").write_text("earlier result\n")

    done = _cli("cluster", "--raw-dir", str(raw), "--out", str(out))
    assert done.returncode == 1
    failed = [line for line in done.stdout.splitlines() if line.startswith("Step ")]
    assert len(failed) == 1, done.stdout
    assert failed[0].startswith(
        f"Step internal_need_state_sales failed: internal sales '{raw / 'internal_sales.parquet'}'"
    )
    assert message in failed[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert (out / "final_store_clusters.csv").read_text() == "earlier result\n"


def test_wrong_type_in_need_state_map(small_data: Path, tmp_path: Path) -> None:
    raw = _copy_inputs(small_data, tmp_path / "raw")
    text = (raw / "need_state.csv").read_text().splitlines()
    header, first = text[0], text[1].split(",")
    first[header.split(",").index("PRODUCT_ID")] = "abc"
    (raw / "need_state.csv").write_text("\n".join([header, ",".join(first), *text[2:]]) + "\n")
    done = _cli("cluster", "--raw-dir", str(raw), "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert "Step need_state_map failed: need-state map" in done.stdout
    assert "column PRODUCT_ID must be an integer" in done.stdout
    assert "PRODUCT_ID='abc'" in done.stdout


def test_missing_input_file(tmp_path: Path) -> None:
    done = _cli("cluster", "--raw-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert (
        "Step need_state_map failed: need-state map: no file matches "
        f"'{tmp_path / 'need_state'}' (looked for need_state.parquet, need_state.csv and a "
        "folder need_state/)." in done.stdout
    )


def test_bad_parameters_file(small_data: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yml"
    params.write_text("internal_clustering:\n  max_kk: 6\n")
    done = _cli("cluster", "--raw-dir", str(small_data), "--params", str(params))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: parameters file '{params}': internal_clustering.max_kk: unknown key."
    )


def test_every_command_names_the_missing_variable_in_the_same_sentence(tmp_path: Path) -> None:
    """run, jobs, ui, dagster_app, sensor and schedule: one sentence and exit 2, no traceback,
    no half-started UI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env["DAGSTER_HOME"] = str(tmp_path)
    commands = [
        ["-m", "clustering", "run", "full_pipeline_job", "--env", "staging"],
        ["-m", "clustering", "jobs", "--env", "staging"],
        ["-m", "clustering", "ui", "--env", "staging", "--port", "3997"],
        ["-m", "clustering.dagster_app", "--env", "staging", "--port", "3996"],
        ["-m", "clustering", "sensor", "list", "--env", "staging"],
        ["-m", "clustering", "schedule", "start", "--env", "staging"],
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, *command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    expected = (
        "error: config for env 'staging': environment variable CLUSTERING_STAGING_RAW_DIR is "
        "not set (needed by paths.raw_dir)."
    )
    for command, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 2, (command, out, err)
        assert err.strip() == expected, command

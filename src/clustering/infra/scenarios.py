"""Where a run's results go: the current result, or a what-if scenario's own folder.

A run tagged ``clustering/scenario=NAME`` (``python -m clustering whatif --name NAME``, or the
tag set in the Launchpad) writes every table, export, its history and its report under
``<exports_dir>/scenarios/NAME/`` — its own DuckDB file included — so the current result is
never touched. Runs without the tag write the environment's warehouse and exports as always.
"""

from __future__ import annotations

import re
from pathlib import Path

from clustering.core.errors import ConfigError

#: Run tag naming the what-if scenario a run belongs to.
SCENARIO_TAG = "clustering/scenario"
#: Folder under the exports holding one folder per scenario.
SCENARIOS_DIRNAME = "scenarios"
#: The report of the run, under the exports (or the scenario's folder).
REPORT_RELATIVE = Path("report") / "index.html"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_scenario_name(name: str) -> str:
    """``name`` when it can name a scenario folder, else a :class:`ConfigError`."""
    if not _NAME.fullmatch(name) or name.endswith("."):
        raise ConfigError(
            f"scenario name {name!r} must be 1-64 letters, digits, '_', '-' or '.', starting "
            "with a letter or digit (it names a folder)."
        )
    return name


def result_paths(duckdb_path: Path, exports_dir: Path, scenario: str = "") -> tuple[Path, Path]:
    """``(DuckDB file, exports folder)`` of the current result or of scenario ``scenario``."""
    if not scenario:
        return Path(duckdb_path), Path(exports_dir)
    folder = Path(exports_dir) / SCENARIOS_DIRNAME / check_scenario_name(scenario)
    return folder / Path(duckdb_path).name, folder


def report_file(exports_dir: Path) -> Path:
    """The report's ``index.html`` under an exports folder (current result or scenario)."""
    return Path(exports_dir) / REPORT_RELATIVE


def list_scenarios(exports_dir: Path, duckdb_name: str) -> list[str]:
    """Names of the scenarios written so far (folders holding a DuckDB file), sorted."""
    folder = Path(exports_dir) / SCENARIOS_DIRNAME
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / duckdb_name).is_file())

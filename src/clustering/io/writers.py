"""Writers for results. Every file is written to a temporary name and renamed into place, so a
failed run never leaves a half-written file and never damages what an earlier run wrote."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    The temporary name carries the writing process's id. A process killed mid-write (SIGKILL
    runs no clean-up) leaves its temporary file behind; the next write of the same target
    removes those whose process is gone, never another live writer's.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file readable by its owner only; a result file gets the mode any
        # new file of this process would get (0666 less the umask), as `touch` would give it.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_orphans(target: Path) -> None:
    """Delete temporary files of ``target`` left by processes that no longer run."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        pid_text = leftover.name[len(target.name) + 2 :].split(".", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        with suppress(FileNotFoundError):
            leftover.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's process
    return True


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (os.umask can only be
    read by setting it, which would race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_frame(frame: pd.DataFrame, target: Path) -> Path:
    """Write ``frame`` as Parquet or CSV (by suffix), atomically."""
    if target.suffix not in (".parquet", ".csv"):
        raise ValueError(f"cannot write '{target}': expected a .parquet or .csv name")
    with atomic_path(target) as tmp:
        if target.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif len(frame) < _CSV_BY_DUCKDB_ROWS:
            frame.to_csv(tmp, index=False)
        else:
            # pandas' CSV writer took 5 s for a million-row final table; DuckDB's, 0.5 s.
            _write_csv_with_duckdb(frame, tmp)
    return target


_CSV_BY_DUCKDB_ROWS = 100_000


def _write_csv_with_duckdb(frame: pd.DataFrame, target: Path) -> None:
    """CSV as pandas writes it (header, comma, empty for missing, True/False) through DuckDB."""
    import duckdb

    from clustering.io.duckdb_store import WRITE_MEMORY_LIMIT

    # DuckDB's default limit is 80 % of the RAM; the frame is in memory already. Anything it
    # spills goes to the system's temporary folder, not the working directory.
    with duckdb.connect(
        config={"memory_limit": WRITE_MEMORY_LIMIT, "temp_directory": tempfile.gettempdir()}
    ) as con:
        con.register("frame", frame)
        columns = ", ".join(
            (
                f"CASE WHEN {_q(c)} IS NULL THEN NULL WHEN {_q(c)} THEN 'True' ELSE 'False' END"
                f" AS {_q(c)}"
            )
            if pd.api.types.is_bool_dtype(frame[c])
            else _q(c)
            for c in map(str, frame.columns)
        )
        path = str(target).replace("'", "''")
        con.execute(f"COPY (SELECT {columns} FROM frame) TO '{path}' (FORMAT csv, HEADER)")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_json(payload: object, target: Path) -> Path:
    """Write JSON (indented, UTF-8), atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return target

"""The pipeline's IO manager: data frames into DuckDB, everything else into safe files.

- A pandas DataFrame becomes the table ``"<group>"."<asset>"`` in the DuckDB file (one schema per
  asset group), written atomically through :class:`~clustering.io.duckdb_store.DuckDBStore`, whose
  file lock lets concurrent steps queue instead of failing on DuckDB's single-writer lock. Assets
  listed in ``export_assets`` are also exported to ``<exports_dir>/<asset>.parquet`` and ``.csv``.
- Any other value goes to ``<storage_dir>/<group>/``, never pickled:

  ========================================  ==============================================
  value                                     stored as
  ========================================  ==============================================
  ``dict[str, DataFrame]``                  folder ``<asset>/``: one Parquet file per key and
                                            ``index.json`` mapping each key to its file
  ``numpy.ndarray``, ``dict[str, ndarray]``  ``<asset>.npz`` (loaded with ``allow_pickle=False``)
  pydantic model, dataclass                 ``<asset>.json`` with the type's import name
  JSON-compatible value                     ``<asset>.json``
  ========================================  ==============================================

  Pydantic models and dataclasses are rebuilt on load only when their class lives in the
  ``clustering`` package (imported by name, never evaluated); others load as plain dicts.
  Plain JSON values come back as JSON gives them: tuples as lists, ``Path`` and dates as text,
  numpy scalars as Python numbers.

Loading an asset that was never materialized fails with one sentence naming the job to run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import importlib
import json
import logging
import re
import uuid
from pathlib import Path, PurePath
from typing import Any, cast

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import BaseModel, TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError

from clustering.core.errors import ClusteringError
from clustering.io.duckdb_store import (
    DuckDBStore,
    TableNotFoundError,
    qualified_name,
    storable_frame,
)
from clustering.io.writers import atomic_path, write_frame, write_json

logger = logging.getLogger(__name__)

#: Schema used when an output has no asset group (plain op outputs, hand-built contexts).
DEFAULT_SCHEMA = "public"

#: Only classes under these import prefixes are rebuilt from stored JSON.
RECONSTRUCTABLE_PREFIXES: tuple[str, ...] = ("clustering.",)

#: Name of the file, inside a dict-of-frames folder, mapping keys to Parquet files.
FRAMES_INDEX = "index.json"

_NPZ_KIND = "__kind__"
_NPZ_KEYS = "__keys__"
_SAFE_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class AssetNotMaterializedError(dg.Failure, ClusteringError):
    """An input asset has never been materialized.

    A :class:`dagster.Failure`, so Dagster shows the sentence itself as the step's error (no
    wrapping, no retries), and a :class:`ClusteringError`, so the CLI prints it as one sentence.
    """

    def __init__(self, sentence: str) -> None:
        super().__init__(description=sentence, allow_retries=False)


class UnsupportedOutputError(ClusteringError, TypeError):
    """An asset returned a value that cannot be stored without pickling."""


def _safe_stem(name: str) -> str:
    """``name`` when it is a safe file name; otherwise a readable slug plus a short hash."""
    if _SAFE_STEM.fullmatch(name):
        return name
    return f"{_slug(name)}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def _slug(text: str) -> str:
    """Letters, digits, ``_`` and ``-`` only, e.g. ``CANDY/SNACKS`` -> ``CANDY-SNACKS``."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-")[:40] or "item"


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(name: str) -> type | None:
    """The class called ``name`` (``package.module.Class``) if it may be rebuilt, else None."""
    if not name.startswith(RECONSTRUCTABLE_PREFIXES) or "<" in name:
        return None
    parts = name.split(".")
    # The split between module and class is unknown (classes can nest): try longest first.
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                found = getattr(found, attribute)
        except AttributeError:
            return None
        return found if isinstance(found, type) else None
    return None


def _json_default(value: object) -> object:
    """Values JSON has no type for, written the way a reader would expect to see them."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON-compatible")


def _check_json_keys(value: object, where: str) -> None:
    """json.dumps turns int keys into text silently; refuse so a dict round-trips as given."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r}; JSON keys must be text")
            _check_json_keys(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            _check_json_keys(item, f"{where}[{position}]")


def _encode_json(obj: object) -> dict[str, Any]:
    """The ``{"type": ..., "value": ...}`` envelope stored for JSON-like outputs."""
    if isinstance(obj, BaseModel):
        return {"type": f"pydantic:{_type_name(type(obj))}", "value": obj.model_dump(mode="json")}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # pydantic serialises nested dataclasses, Paths, dates and enums, and can rebuild them.
        adapter: TypeAdapter[Any] = TypeAdapter(type(obj))
        value = adapter.dump_python(obj, mode="json")
        return {"type": f"dataclass:{_type_name(type(obj))}", "value": value}
    _check_json_keys(obj, "the value")
    return {"type": "json", "value": obj}


def _decode_json(envelope: dict[str, Any]) -> object:
    """The object an envelope was written from (plain dict for classes that may not be rebuilt)."""
    kind = str(envelope.get("type", "json"))
    value = envelope.get("value")
    if kind == "json":
        return value
    family, _, name = kind.partition(":")
    cls = _import_class(name)
    if cls is None:
        logger.warning("%s is not rebuilt from storage (outside the clustering package)", name)
        return value
    if family == "pydantic" and issubclass(cls, BaseModel):
        return cls.model_validate(value)
    if family == "dataclass" and dataclasses.is_dataclass(cls):
        return TypeAdapter(cls).validate_python(value)
    return value


def _is_dict_of(obj: object, value_type: type) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(key, str) for key in obj)
        and all(isinstance(value, value_type) for value in obj.values())
    )


def _write_npz(arrays: np.ndarray | dict[str, np.ndarray], target: Path) -> None:
    """Arrays saved as ``a0, a1, ...`` with the original keys beside them, so any key text is
    safe (np.savez would otherwise use keys as archive member names and keyword arguments)."""
    if isinstance(arrays, np.ndarray):
        kind, keys, values = "ndarray", [], [arrays]
    else:
        kind, keys, values = "dict", list(arrays), list(arrays.values())
    members = {f"a{position}": value for position, value in enumerate(values)}
    members[_NPZ_KIND] = np.array(kind)
    members[_NPZ_KEYS] = np.array(keys, dtype=str)
    with atomic_path(target) as tmp, tmp.open("wb") as handle:
        # allow_pickle=False: object arrays fail here instead of being pickled.
        np.savez(handle, allow_pickle=False, **members)


def _read_npz(source: Path) -> np.ndarray | dict[str, np.ndarray]:
    with np.load(source, allow_pickle=False) as archive:
        kind = str(archive[_NPZ_KIND])
        keys = [str(key) for key in archive[_NPZ_KEYS]]
        if kind == "ndarray":
            array: np.ndarray = archive["a0"]
            return array
        return {key: archive[f"a{position}"] for position, key in enumerate(keys)}


def _write_frames(frames: dict[str, pd.DataFrame], folder: Path) -> None:
    """One Parquet file per key, then ``index.json`` replaced atomically as the commit point.

    New files get fresh names, so until the index is replaced readers see the previous set
    complete; files the new index no longer names are removed afterwards.
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_id = uuid.uuid4().hex[:8]
    entries: list[dict[str, str]] = []
    try:
        for position, (key, frame) in enumerate(frames.items()):
            file_name = f"{position:04d}_{_slug(key)}_{write_id}.parquet"
            entries.append({"key": key, "file": file_name})
            frame.to_parquet(folder / file_name)
        write_json({"type": "frames", "frames": entries}, folder / FRAMES_INDEX)
    except BaseException:
        for entry in entries:
            (folder / entry["file"]).unlink(missing_ok=True)
        raise
    current = {entry["file"] for entry in entries} | {FRAMES_INDEX}
    for leftover in folder.iterdir():
        if leftover.name not in current and leftover.is_file():
            leftover.unlink()


def _read_frames(folder: Path) -> dict[str, pd.DataFrame]:
    index = json.loads((folder / FRAMES_INDEX).read_text(encoding="utf-8"))
    frames: dict[str, pd.DataFrame] = {}
    for entry in index["frames"]:
        file_name = str(entry["file"])
        if Path(file_name).name != file_name:  # the index may only name files in its folder
            raise ValueError(f"{folder / FRAMES_INDEX} names a file outside its folder")
        frames[str(entry["key"])] = pd.read_parquet(folder / file_name)
    return frames


class ClusteringIOManager(dg.ConfigurableIOManager):
    """Stores data frames as DuckDB tables (schema = asset group) and other values as safe files.

    See the module docstring for the storage layout and what each type comes back as.
    """

    duckdb_path: str
    storage_dir: str
    exports_dir: str
    export_assets: list[str] = ["final_store_clusters"]  # noqa: RUF012 - pydantic copies it
    producing_jobs: dict[str, str] = {}  # noqa: RUF012 - pydantic copies it
    lock_timeout_s: float = 600

    # -- Dagster entry points ------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Write ``obj`` where its type belongs and record where it went as output metadata."""
        group, name = _location(context)
        if isinstance(obj, pd.DataFrame):
            metadata = self._write_table(group, name, obj)
            self._remove_files(group, name)
        else:
            path, metadata = self._write_file(group, name, obj)
            self._remove_files(group, name, keep=path)
            self._drop_stale_table(group, name)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> Any:
        """Read the upstream asset back as the type it was written as."""
        upstream = context.upstream_output
        if upstream is not None:
            group, name = _location(upstream)
        else:
            name = context.asset_key.path[-1] if context.has_asset_key else context.name
            group = DEFAULT_SCHEMA
        try:
            return self._store().read_table(group, name)
        except TableNotFoundError:
            pass
        json_path, npz_path, frames_dir = self._file_paths(group, name)
        if (frames_dir / FRAMES_INDEX).is_file():
            return _read_frames(frames_dir)
        if npz_path.is_file():
            return _read_npz(npz_path)
        if json_path.is_file():
            return _decode_json(json.loads(json_path.read_text(encoding="utf-8")))
        raise AssetNotMaterializedError(self._never_materialized(group, name))

    # -- helpers -------------------------------------------------------------------------------

    def _store(self) -> DuckDBStore:
        return DuckDBStore(Path(self.duckdb_path), lock_timeout_s=self.lock_timeout_s)

    def _never_materialized(self, group: str, name: str) -> str:
        job = self.producing_jobs.get(name)
        action = f"run {job} first" if job else "materialize it first"
        return (
            f"asset {name} has never been materialized (no table {qualified_name(group, name)} "
            f"in {self.duckdb_path}); {action}."
        )

    def _file_paths(self, group: str, name: str) -> tuple[Path, Path, Path]:
        """Where a non-frame value of this asset may live: ``.json``, ``.npz``, frames folder."""
        folder = Path(self.storage_dir) / _safe_stem(group)
        stem = _safe_stem(name)
        return folder / f"{stem}.json", folder / f"{stem}.npz", folder / stem

    def _write_table(self, group: str, name: str, frame: pd.DataFrame) -> dict[str, Any]:
        rows = self._store().write_table(group, name, frame)
        stored = storable_frame(frame)
        metadata: dict[str, Any] = {
            "dagster/table_name": qualified_name(group, name),
            "dagster/row_count": rows,
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(name=str(column), type=str(dtype))
                    for column, dtype in stored.dtypes.items()
                ]
            ),
            "columns": dg.MetadataValue.json([str(column) for column in stored.columns]),
            "duckdb_file": dg.MetadataValue.path(self.duckdb_path),
        }
        if name in self.export_assets:
            # Exports are written from the frame as stored, so they match the table exactly.
            exports_dir = Path(self.exports_dir)
            for suffix in ("parquet", "csv"):
                path = write_frame(stored, exports_dir / f"{_safe_stem(name)}.{suffix}")
                metadata[f"export_{suffix}"] = dg.MetadataValue.path(str(path))
        return metadata

    def _write_file(self, group: str, name: str, obj: object) -> tuple[Path, dict[str, Any]]:
        """Write a non-frame value; returns where it went and the output metadata."""
        json_path, npz_path, frames_dir = self._file_paths(group, name)
        metadata: dict[str, Any]
        try:
            if _is_dict_of(obj, pd.DataFrame):
                frames = cast("dict[str, pd.DataFrame]", obj)
                _write_frames(frames, frames_dir)
                path, metadata = frames_dir, {"stored_as": "parquet folder", "keys": list(frames)}
            elif isinstance(obj, np.ndarray):
                _write_npz(obj, npz_path)
                path, metadata = npz_path, {"stored_as": "npz", "shape": list(obj.shape)}
            elif _is_dict_of(obj, np.ndarray):
                arrays = cast("dict[str, np.ndarray]", obj)
                _write_npz(arrays, npz_path)
                path, metadata = npz_path, {"stored_as": "npz", "keys": list(arrays)}
            else:
                envelope = _encode_json(obj)
                with atomic_path(json_path) as tmp:
                    text = json.dumps(envelope, indent=2, ensure_ascii=False, default=_json_default)
                    tmp.write_text(text + "\n", encoding="utf-8")
                path, metadata = json_path, {"stored_as": "json", "type": envelope["type"]}
        except (TypeError, ValueError, PydanticSchemaGenerationError) as exc:
            raise UnsupportedOutputError(
                f"cannot store the output of asset {name} ({type(obj).__name__}) without "
                f"pickling: {exc}; return a DataFrame, a dict of DataFrames or of numpy arrays, "
                "a numpy array, a pydantic model, a dataclass or JSON-compatible values."
            ) from exc
        return path, {"path": dg.MetadataValue.path(str(path)), **metadata}

    def _remove_files(self, group: str, name: str, keep: Path | None = None) -> None:
        """Remove this asset's files in other formats, so a load never finds a stale value."""
        json_path, npz_path, frames_dir = self._file_paths(group, name)
        for path in (json_path, npz_path):
            if path != keep:
                path.unlink(missing_ok=True)
        if frames_dir != keep and (frames_dir / FRAMES_INDEX).is_file():
            for member in frames_dir.iterdir():
                member.unlink()
            frames_dir.rmdir()

    def _drop_stale_table(self, group: str, name: str) -> None:
        """An asset that used to return a frame must not keep loading from its old table."""
        self._store().drop_table(group, name)


def _location(context: dg.OutputContext) -> tuple[str, str]:
    """``(group, asset name)`` of an output: the DuckDB schema and table, and the storage folder.

    In dagster 1.13 ``OutputContext.asset_spec`` carries the resolved group (``"default"`` for
    assets without one), for a step's own output as well as for the upstream output context
    Dagster builds when loading an input, including assets outside the run's selection.
    """
    if not context.has_asset_key:
        return DEFAULT_SCHEMA, context.name
    name = context.asset_key.path[-1]
    try:
        group = context.asset_spec.group_name
    except dg.DagsterInvariantViolationError:  # contexts built by hand carry no spec
        group = None
    return group or DEFAULT_SCHEMA, name

"""Which input files changed since the last look: the Dagster-free half of the file sensors.

An input location is a file, a folder (its ``*.parquet`` and ``*.csv`` files) or a glob.
Each file found gets a *fingerprint*: size, modification time in nanoseconds and the SHA-256 of
its content. Files larger than :data:`HASH_LIMIT_BYTES` are not hashed (``sha256`` is ``None``);
for those, size and modification time stand in for the content, so a mere ``touch`` of such a
file does count as a change.

A file counts as *changed* when it is new or its content hash differs: touching a file
(new mtime, same bytes) is not a change. Files still being written are left for a later look:
hidden names (``.name``), temporary suffixes (``.tmp``, ``.part``, ``.crdownload``) and files
modified within the last ``settle_seconds``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clustering.io.readers import named_locations

HASH_LIMIT_BYTES = 64 * 1024 * 1024
"""Files up to this size are hashed; larger ones are fingerprinted by size and mtime only."""

DATA_SUFFIXES = (".parquet", ".csv")
"""What a folder given as an input location contributes."""

TEMPORARY_SUFFIXES = (".tmp", ".part", ".crdownload")
"""Names with these endings are files still being downloaded or written."""

_CHUNK = 1024 * 1024
_GLOB_CHARS = frozenset("*?[")

Fingerprint = dict[str, Any]
"""``{"size": int, "mtime_ns": int, "sha256": str | None}``."""


def _is_glob(spec: str) -> bool:
    return any(char in spec for char in _GLOB_CHARS)


def expand_inputs(specs: Sequence[str]) -> list[Path]:
    """The files the input locations ``specs`` currently point at, sorted and without repeats.

    A folder contributes its ``*.parquet`` and ``*.csv`` files (not recursively, hidden and
    temporary files included so :func:`scan` can report them); a glob its matching files; a
    file itself; a name without suffix whatever it names (``internal_sales`` →
    ``internal_sales.parquet``, ``.csv`` or the folder ``internal_sales/``). Locations that
    match nothing contribute nothing.
    """
    found: set[Path] = set()
    expanded: list[str] = []
    for spec in specs:
        named = named_locations(spec)
        path = Path(spec)
        if named and not path.is_file():
            expanded += [str(candidate) for candidate in named]
        else:
            expanded.append(spec)
    for spec in expanded:
        if _is_glob(spec):
            found.update(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            continue
        path = Path(spec)
        if path.is_dir():
            found.update(
                child
                for child in path.iterdir()
                if child.is_file() and _data_name(child.name) is not None
            )
        elif path.is_file():
            found.add(path)
        else:
            # A file being written under a temporary name next to its final one.
            found.update(
                sibling
                for suffix in TEMPORARY_SUFFIXES
                for sibling in (
                    path.with_name(path.name + suffix),
                    path.with_name("." + path.name + suffix),
                )
                if sibling.is_file()
            )
    return sorted(found)


def _data_name(name: str) -> str | None:
    """``name`` without temporary suffixes and leading dot if it is a data file, else None."""
    stem = name.lstrip(".")
    for suffix in TEMPORARY_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem if stem.endswith(DATA_SUFFIXES) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: Path, previous: Mapping[str, Any] | None = None) -> Fingerprint:
    """Size, mtime (ns) and SHA-256 of ``path``; ``sha256`` is None above the hash limit.

    When ``previous`` (an earlier fingerprint of the same file) has the same size and mtime, its
    hash is reused instead of reading the file again.
    """
    stat = path.stat()
    size, mtime_ns = stat.st_size, stat.st_mtime_ns
    if size > HASH_LIMIT_BYTES:
        digest: str | None = None
    elif (
        previous is not None
        and previous.get("size") == size
        and previous.get("mtime_ns") == mtime_ns
        and previous.get("sha256")
    ):
        digest = str(previous["sha256"])
    else:
        digest = _sha256(path)
    return {"size": size, "mtime_ns": mtime_ns, "sha256": digest}


@dataclass(frozen=True)
class ScanResult:
    """What one look at the input locations found.

    ``stable`` maps each settled file (as a string path) to its fingerprint; ``in_progress``
    lists files left for a later look, with the reason.
    """

    stable: dict[str, Fingerprint] = field(default_factory=dict)
    in_progress: dict[str, str] = field(default_factory=dict)


def unsettled_reason(path: Path, *, now: float, settle_seconds: float) -> str | None:
    """Why ``path`` looks like it is still being written, or None when it looks complete."""
    name = path.name
    if name.startswith("."):
        return "hidden name"
    if name.endswith(TEMPORARY_SUFFIXES):
        return "temporary name"
    age = now - path.stat().st_mtime
    if age < settle_seconds:
        return f"modified {max(age, 0.0):.1f} s ago"
    return None


def scan(
    specs: Sequence[str],
    *,
    now: float,
    settle_seconds: float = 5.0,
    previous: Mapping[str, Mapping[str, Any]] | None = None,
) -> ScanResult:
    """Fingerprint the settled files under ``specs``; list the ones still being written.

    ``now`` is the current time (seconds since the epoch, as :func:`time.time`); ``previous``
    (fingerprints from the last look, by path) lets unchanged files skip re-hashing. A file that
    vanishes during the scan is ignored.
    """
    previous = previous or {}
    stable: dict[str, Fingerprint] = {}
    in_progress: dict[str, str] = {}
    for path in expand_inputs(specs):
        key = str(path)
        try:
            reason = unsettled_reason(path, now=now, settle_seconds=settle_seconds)
            if reason is not None:
                in_progress[key] = reason
                continue
            stable[key] = fingerprint(path, previous.get(key))
        except FileNotFoundError:
            continue
    return ScanResult(stable=stable, in_progress=in_progress)


def _content_token(print_: Mapping[str, Any]) -> str:
    digest = print_.get("sha256")
    if digest:
        return f"sha256:{digest}"
    return f"stat:{print_.get('size')}:{print_.get('mtime_ns')}"


def changes(
    previous: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Paths in ``current`` that are new or whose content differs from ``previous``, sorted.

    Content is compared by hash; a file without one (above the hash limit) by size and mtime.
    Files that disappeared are not changes.
    """
    return sorted(
        path
        for path, print_ in current.items()
        if path not in previous or _content_token(previous[path]) != _content_token(print_)
    )


def run_key(name: str, fingerprints: Mapping[str, Mapping[str, Any]]) -> str:
    """A stable key for one state of the inputs: ``name`` plus a hash over paths and contents.

    Independent of the mapping's order and of modification times (for hashed files), so the
    same content always gives the same key.
    """
    payload = json.dumps(
        [[path, _content_token(fingerprints[path])] for path in sorted(fingerprints)],
        separators=(",", ":"),
    )
    return f"{name}:{hashlib.sha256(payload.encode()).hexdigest()[:32]}"


def dumps_cursor(fingerprints: Mapping[str, Mapping[str, Any]]) -> str:
    """The sensor cursor for ``fingerprints``: compact JSON with sorted keys."""
    return json.dumps(dict(fingerprints), sort_keys=True, separators=(",", ":"))


def loads_cursor(cursor: str | None) -> dict[str, Fingerprint]:
    """Fingerprints from a cursor written by :func:`dumps_cursor`; ``{}`` for none or garbage.

    A cursor that cannot be read is treated like a first tick rather than failing the sensor:
    the run key still prevents a second run for content already seen.
    """
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)}


def describe(specs: Sequence[str]) -> str:
    """The input locations as one phrase for messages, relative to the working directory."""
    shown = []
    for spec in specs:
        try:
            shown.append(os.path.relpath(spec))
        except ValueError:
            shown.append(spec)
    return ", ".join(shown)

"""Rows spilled to disk while a step works, read back once as a stream.

A step that produces a large table piece by piece (e.g. each category's features as the
category is clustered) appends the pieces here instead of holding them all in memory, then
hands the IO manager :meth:`ArrowSpill.reader`, which streams them back batch by batch. The
file lives beside the warehouse (not in a RAM-backed /tmp) and is removed on close, also when
the step fails. It is an Arrow IPC stream with LZ4-compressed buffers: written and read back
about ten times faster than Parquet (2 ms against 19 ms per 80,000-row category), for a file
of about 1.6 times the size that lives only while the step runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

import pyarrow as pa

from clustering.io.writers import remove_orphans

#: The name spill files are made from: ``.spill.arrows.<pid>.<random>.tmp`` (a writer killed
#: with SIGKILL leaves one behind; the next spill in the folder removes it).
SPILL_NAME = "spill.arrows"
_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


class ArrowSpill:
    """A temporary file of ``schema`` rows: :meth:`write` pieces, then :meth:`reader`."""

    def __init__(self, schema: pa.Schema, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        remove_orphans(directory / SPILL_NAME)
        fd, name = tempfile.mkstemp(
            prefix=f".{SPILL_NAME}.{os.getpid()}.", suffix=".tmp", dir=directory
        )
        os.close(fd)
        self.path = Path(name)
        self.schema = schema
        self.rows = 0
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(
            self._sink, schema, options=_OPTIONS
        )
        self._sources: list[pa.OSFile] = []  # files opened by reader(), closed by close()

    def write(self, table: pa.Table) -> None:
        """Append ``table`` (cast to the spill's schema)."""
        if self._writer is None:
            raise ValueError(f"spill {self.path.name} is already being read")
        self._writer.write_table(table.cast(self.schema))
        self.rows += len(table)

    def reader(self) -> pa.RecordBatchReader:
        """Everything written, as a stream of record batches (in the order written)."""
        self._finish()
        source = pa.OSFile(str(self.path), "rb")
        self._sources.append(source)
        return pa.ipc.open_stream(source)

    def close(self) -> None:
        """Close what :meth:`reader` opened and remove the file."""
        self._finish()
        for source in self._sources:
            source.close()
        self._sources.clear()
        self.path.unlink(missing_ok=True)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._sink.close()

    def __enter__(self) -> ArrowSpill:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

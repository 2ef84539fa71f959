"""Rows spilled to disk while a step works, read back once as a stream.

A step that produces a large table piece by piece (e.g. each category's features as the
category is clustered) appends the pieces here instead of holding them all in memory, then
hands the IO manager :meth:`ArrowSpill.reader`, which streams them back batch by batch. The
file lives beside the warehouse (not in a RAM-backed /tmp) and is removed on close, also when
the step fails.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from clustering.io.writers import remove_orphans

#: The name spill files are made from: ``.spill.parquet.<pid>.<random>.tmp`` (a writer killed
#: with SIGKILL leaves one behind; the next spill in the folder removes it).
SPILL_NAME = "spill.parquet"


class ArrowSpill:
    """A temporary Parquet file of ``schema`` rows: :meth:`write` pieces, then :meth:`reader`."""

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
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.path, schema)

    def write(self, table: pa.Table) -> None:
        """Append ``table`` (cast to the spill's schema)."""
        if self._writer is None:
            raise ValueError(f"spill {self.path.name} is already being read")
        self._writer.write_table(table.cast(self.schema))
        self.rows += len(table)

    def reader(self) -> pa.RecordBatchReader:
        """Everything written, as a stream of record batches (in the order written)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return pa.RecordBatchReader.from_batches(
            self.schema, pq.ParquetFile(self.path).iter_batches()
        )

    def close(self) -> None:
        """Remove the file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> ArrowSpill:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

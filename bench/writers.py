"""One Arrow table as each writer would store it: pyarrow, polars and DuckDB at their defaults, as bytes.

Small files for the backfill bench and for tests that need inputs from writers other than the app's own.
The large inputs of ``make bench`` are written by :mod:`bench.datagen` straight to disk instead.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WRITERS = ("pyarrow", "polars", "duckdb")


def written_by(writer: str, table: pa.Table) -> bytes:
    """``table`` as a Parquet file from ``writer`` (pyarrow: snappy, the others at their own defaults)."""
    if writer == "polars":
        import polars as pl

        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        return buffer.getvalue()
    if writer == "duckdb":
        import duckdb

        with tempfile.TemporaryDirectory() as folder, duckdb.connect() as connection:
            path = Path(folder) / "t.parquet"
            connection.register("t", table)
            connection.execute(f"COPY t TO '{path}' (FORMAT PARQUET)")
            return path.read_bytes()
    if writer != "pyarrow":
        raise ValueError(f"unknown writer {writer!r}; choose from {', '.join(WRITERS)}")
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()

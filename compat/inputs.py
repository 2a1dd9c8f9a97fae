"""The matrix's inputs: the bench's four tables (small), a float-heavy table, and files from other writers.

Every input is what some team already reads: the bench's generators written
by pyarrow with its defaults, the same mixed table from polars and DuckDB and
in pyarrow's v2 pages and DELTA encodings, the float table of issue 14, and
the real files of ``../shared/corpus`` (parquet-mr, Impala, fastparquet,
parquet-cpp ...) when that folder is there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import datagen
from compat import CORPUS

#: Rows of each generated table: small enough that Spark collects them in a second or two.
ROWS = {"mixed": 20_000, "wide": 1_000, "strings": 5_000, "nested": 5_000}


def floats_table(rows: int = 20_000) -> pa.Table:
    """Issue 14's table: doubles, floats, int64s and strings, which Spark read until BYTE_STREAM_SPLIT."""
    rng = np.random.default_rng(14)
    return pa.table({
        "price": np.round(rng.lognormal(3.0, 1.0, rows), 2),
        "sensor": rng.normal(20.0, 5.0, rows),
        "ratio": rng.random(rows).astype(np.float32),
        "temperature": rng.normal(15.0, 8.0, rows).astype(np.float32),
        "count": rng.integers(0, 1 << 40, rows, dtype=np.int64),
        "label": pa.array([f"sensor-{i % 500:03d}" for i in range(rows)]),
    })


def _pyarrow(table: pa.Table, path: Path, **options: object) -> None:
    pq.write_table(table, path, **options)


def _polars(table: pa.Table, path: Path) -> None:
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame.write_parquet(path)


def _duckdb(table: pa.Table, path: Path) -> None:
    import duckdb

    connection = duckdb.connect()
    connection.register("t", table)
    connection.execute(f"COPY t TO '{path}' (FORMAT parquet)")


def _delta(table: pa.Table, path: Path) -> None:
    """pyarrow with v2 pages and the DELTA encodings, as a writer tuned for size would leave it."""
    encodings = {f.name: "DELTA_BINARY_PACKED" for f in table.schema
                 if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)}
    encodings |= {f.name: "DELTA_BYTE_ARRAY" for f in table.schema if pa.types.is_string(f.type)}
    pq.write_table(table, path, use_dictionary=False, column_encoding=encodings, data_page_version="2.0")


def build(folder: Path) -> list[Path]:
    """Write every generated input into ``folder``; add the corpus files. Returns the inputs in matrix order."""
    folder.mkdir(parents=True, exist_ok=True)
    tables: dict[str, pa.Table] = {
        name: datagen.SPECS[name].make(0, rows) for name, rows in ROWS.items()}
    tables["floats"] = floats_table()
    writers: list[tuple[str, str, Callable[[pa.Table, Path], None]]] = [
        *[(name, name, _pyarrow) for name in ("mixed", "wide", "strings", "nested", "floats")],
        ("mixed-v2", "mixed", lambda t, p: _pyarrow(t, p, data_page_version="2.0")),
        ("mixed-delta", "mixed", _delta),
        ("mixed-polars", "mixed", _polars),
        ("mixed-duckdb", "mixed", _duckdb),
    ]
    paths = []
    for name, table_name, write in writers:
        path = folder / f"{name}.parquet"
        write(tables[table_name], path)
        paths.append(path)
    return paths + corpus_files()


def sizes_input(folder: Path, rows: int = 1_000_000) -> Path:
    """The bench's mixed table at one million rows, pyarrow's defaults: the README's sizes are measured on it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mixed-1M.parquet"
    pq.write_table(datagen.SPECS["mixed"].make(0, rows), path)
    return path


def corpus_files() -> list[Path]:
    """The single-file inputs of the shared corpus (folders of partitions are datasets, not files)."""
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix in (".parquet", ".parq"))

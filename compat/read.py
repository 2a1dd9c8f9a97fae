"""One reader of the matrix: read every file it is given in full, and fingerprint what it read.

Run as ``python compat/read.py READER JOBS.json RESULTS.json`` by that reader's own Python
(Spark and fastparquet live in venvs of their own), so it imports nothing of
the app and only the reader's own library. It writes one JSON object mapping
each path to ``{"digest": ..., "rows": n}`` or ``{"error": "first line"}``.
A digest covers every value as this reader returns them (``repr`` keeps NaN
equal to NaN and -0.0 apart from 0.0), so the input and the output read by
the same reader hold equal values exactly when their digests are equal; the
column types it reported are fingerprinted apart, since a reader may choose
them from statistics rather than from the schema (fastparquet does).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

Reader = Callable[[str], tuple[str, Iterable[Any]]]


def digest(rows: Iterable[Any]) -> tuple[str, int]:
    """A fingerprint of a table's rows, and how many rows there were."""
    hasher = hashlib.sha256()
    count = 0
    for row in rows:
        hasher.update(repr(row).encode())
        count += 1
    return hasher.hexdigest(), count


def short(exc: BaseException) -> str:
    """The line of an error that says what failed: a Java cause when there is one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("Caused by:")]
    text = causes[-1].removeprefix("Caused by:").strip() if causes else (lines[0] if lines else type(exc).__name__)
    return f"{type(exc).__name__}: {text}"[:240] if not causes else text[:240]


def pyarrow_reader() -> Reader:
    import pyarrow.parquet as pq

    def read(path: str) -> tuple[str, Iterable[Any]]:
        table = pq.read_table(path)
        return str(table.schema.types), (tuple(row.values()) for row in table.to_pylist())

    return read


def polars_reader() -> Reader:
    import polars as pl

    def read(path: str) -> tuple[str, Iterable[Any]]:
        frame = pl.read_parquet(path)
        return str(frame.schema), frame.iter_rows()

    return read


def duckdb_reader() -> Reader:
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET threads = 1")

    def read(path: str) -> tuple[str, Iterable[Any]]:
        relation = connection.sql("SELECT * FROM read_parquet(?)", params=[path])
        return str(relation.types), relation.fetchall()

    return read


def fastparquet_reader() -> Reader:
    import fastparquet

    def read(path: str) -> tuple[str, Iterable[Any]]:
        frame = fastparquet.ParquetFile(path).to_pandas()
        return str(list(frame.dtypes)), frame.astype(object).itertuples(index=False, name=None)

    return read


def spark_reader() -> Reader:
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("compat")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.parquet.enableVectorizedReader", "true")
             .config("spark.sql.parquet.enableNestedColumnVectorizedReader", "true")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.parquet.datetimeRebaseModeInRead", "CORRECTED")
             .config("spark.sql.parquet.int96RebaseModeInRead", "CORRECTED")
             .getOrCreate())
    spark.sparkContext.setLogLevel("OFF")

    def read(path: str) -> tuple[str, Iterable[Any]]:
        frame = spark.read.parquet("file://" + path)
        return str(frame.schema), frame.collect()

    return read


MAKERS: dict[str, Callable[[], Reader]] = {
    "pyarrow": pyarrow_reader, "polars": polars_reader, "duckdb": duckdb_reader,
    "fastparquet": fastparquet_reader, "spark3.4": spark_reader, "spark3.5": spark_reader,
}


def main(argv: list[str]) -> int:
    reader_name, jobs, out = argv[1], argv[2], argv[3]
    with open(jobs, encoding="utf-8") as handle:
        paths: list[str] = json.load(handle)
    read = MAKERS[reader_name]()
    results: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            types, rows = read(path)
            fingerprint, count = digest(rows)
            results[path] = {"digest": fingerprint, "rows": count,
                             "types": hashlib.sha256(types.encode()).hexdigest()}
        except Exception as exc:  # a reader failing on a file is the measurement
            results[path] = {"error": short(exc)}
    with open(out, "w", encoding="utf-8") as handle:  # not stdout: a JVM may print there
        json.dump(results, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

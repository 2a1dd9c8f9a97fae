"""DuckDB's COPY: streams SELECT * into a zstd Parquet file with its own writer."""

from __future__ import annotations

import sys

import duckdb


def main(src: str, dst: str) -> None:
    quoted_src, quoted_dst = (path.replace("'", "''") for path in (src, dst))
    with duckdb.connect() as con:
        # Paths come from the benchmark itself and are quoted above; COPY takes no bound parameters.
        con.execute(f"COPY (SELECT * FROM '{quoted_src}') TO '{quoted_dst}' (FORMAT PARQUET, COMPRESSION ZSTD)")  # noqa: S608


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

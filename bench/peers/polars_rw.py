"""polars' one-liner: read_parquet, then write_parquet with zstd (polars' default level)."""

from __future__ import annotations

import sys

import polars as pl


def main(src: str, dst: str) -> None:
    pl.read_parquet(src).write_parquet(dst, compression="zstd")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

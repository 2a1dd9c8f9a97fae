"""pyarrow's one-liner: read the whole table, write it with zstd (Arrow's default level)."""

from __future__ import annotations

import sys

import pyarrow.parquet as pq


def main(src: str, dst: str) -> None:
    pq.write_table(pq.read_table(src), dst, compression="zstd")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

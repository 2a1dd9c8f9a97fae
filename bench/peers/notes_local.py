"""The way the project's notes recompress a file: whole file in memory, through pandas.

BytesIO -> pandas.read_parquet -> pa.Table.from_pandas -> pq.write_table(zstd)
into a BufferOutputStream, then the bytes to the output file. It is the
baseline the app replaces; zstd at Arrow's default level.
"""

from __future__ import annotations

import io
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def main(src: str, dst: str) -> None:
    with open(src, "rb") as file:
        data = io.BytesIO(file.read())
    frame = pd.read_parquet(data)
    table = pa.Table.from_pandas(frame)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    with open(dst, "wb") as out:
        out.write(sink.getvalue())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

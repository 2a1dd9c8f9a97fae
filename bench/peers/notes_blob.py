"""The notes' way between blobs: download into BytesIO, pandas, BufferOutputStream, upload.

Usage: ``notes_blob.py container/in container/out`` with the storage connection
string in ``ParquetStorage``, as the app's CLI takes it.
"""

from __future__ import annotations

import io
import os
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from azure.storage.blob import BlobServiceClient

#: The app's connection setting; a constant so linters don't "fix" its case (names are case-sensitive).
CONNECTION = "ParquetStorage"


def main(src: str, dst: str) -> None:
    service = BlobServiceClient.from_connection_string(os.environ[CONNECTION])
    source = service.get_blob_client(*src.split("/", 1))
    data = io.BytesIO()
    source.download_blob().readinto(data)
    data.seek(0)
    frame = pd.read_parquet(data)
    table = pa.Table.from_pandas(frame)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    target = service.get_blob_client(*dst.split("/", 1))
    target.upload_blob(sink.getvalue().to_pybytes(), overwrite=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

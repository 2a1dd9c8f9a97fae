"""Where the shared corpus of real Parquet files lives, and helpers to build and edit test files."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shared.parquet import footer as ft
from shared.parquet import thrift

CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus" / "fastparquet-test-data"


def corpus_files() -> list[Path]:
    """Every Parquet file of the corpus (files inside dataset folders included), by content."""
    if not CORPUS.is_dir():
        return []
    found = []
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and path.stat().st_size >= 12:
            data = path.read_bytes()
            if data[:4] == b"PAR1" and data[-4:] == b"PAR1":
                found.append(path)
    return found


def footer_raw(data: bytes) -> bytes:
    length = struct.unpack("<I", data[-8:-4])[0]
    return data[-8 - length:-8]


def edit_footer(data: bytes, edit: Callable[[thrift.Struct], None]) -> bytes:
    """The same file with its footer tree edited (the footer sits at the end, so no offset moves)."""
    parsed = ft.footer_from_bytes(data, "test")
    edit(parsed.tree)
    raw = thrift.dumps(parsed.tree)
    return data[:parsed.start] + raw + struct.pack("<I", len(raw)) + b"PAR1"


def write(table: pa.Table, **options: object) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def chunk_meta(tree: thrift.Struct, group: int = 0, column: int = 0) -> thrift.Struct:
    meta = ft.FileMeta(tree).row_groups[group].columns[column].meta_data
    assert meta is not None
    return meta.tree

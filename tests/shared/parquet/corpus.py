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


def ipc(table: pa.Table) -> bytes:
    """A table's bytes, so values compare bitwise (NaN equal to NaN)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    data: bytes = sink.getvalue().to_pybytes()
    return data


def assert_same_file(before: bytes, after: bytes, *, same_writer: bool = True) -> None:
    """Schema, raw schema elements, key-values, row counts and values identical; every chunk ZSTD.

    ``same_writer``: the pages are the input's, so ``created_by`` and the row
    groups must be too (exact mode). A re-encode may coalesce row groups, and
    names the writer that really wrote its pages, as readers apply
    writer-specific workarounds by that name.
    """
    old, new = pq.ParquetFile(pa.BufferReader(before)), pq.ParquetFile(pa.BufferReader(after))
    assert new.schema.equals(old.schema)
    old_meta, new_meta = ft.footer_from_bytes(before, "in").meta, ft.footer_from_bytes(after, "out").meta
    assert [thrift.dumps(e.tree) for e in new_meta.schema] == [thrift.dumps(e.tree) for e in old_meta.schema]
    assert new_meta.key_value_metadata == old_meta.key_value_metadata
    assert _raw_field(new_meta.tree, ft.FMD_KEY_VALUES) == _raw_field(old_meta.tree, ft.FMD_KEY_VALUES)
    if same_writer:  # the same pages, so the same row groups too
        assert new_meta.created_by == old_meta.created_by
        assert [g.num_rows for g in new_meta.row_groups] == [g.num_rows for g in old_meta.row_groups]
    assert sum(g.num_rows for g in new_meta.row_groups) == sum(g.num_rows for g in old_meta.row_groups)
    for group in new_meta.row_groups:
        for chunk in group.columns:
            assert chunk.meta_data is not None
            assert chunk.meta_data.codec == ft.ZSTD
    assert ipc(pq.read_table(pa.BufferReader(after))) == ipc(pq.read_table(pa.BufferReader(before)))


def _raw_field(tree: thrift.Struct, field_id: int) -> bytes | None:
    found = tree.find(field_id)
    return None if found is None else thrift.dumps(thrift.Struct([found]))


ARROW = {ft.SNAPPY: "snappy", ft.GZIP: "gzip", ft.BROTLI: "brotli", ft.ZSTD: "zstd", ft.LZ4_RAW: "lz4_raw"}


def pack(codec: int, data: bytes) -> bytes:
    return bytes(pa.Codec(ARROW[codec]).compress(data, asbytes=True))


def hadoop_lz4(data: bytes, block: int = 1000) -> bytes:
    """parquet-mr's framing: per block, big-endian decompressed and compressed sizes, then an LZ4 block."""
    out = b""
    for start in range(0, len(data), block):
        piece = data[start:start + block]
        packed = pack(ft.LZ4_RAW, piece)
        out += struct.pack(">II", len(piece), len(packed)) + packed
    return out

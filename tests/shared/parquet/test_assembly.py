"""The assembler joins in-memory parts into one file whose offsets all point where they should."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.errors import VerificationError
from shared.parquet import footer as ft
from shared.parquet.assembly import Assembler
from tests.shared.parquet.corpus import write

OPTIONS: dict[str, object] = {"compression": "zstd", "write_page_index": True, "write_page_checksum": True,
                              "bloom_filter_options": {"a": {"ndv": 100, "fpp": 0.1}}, "row_group_size": 40}


def _part(start: int, rows: int = 100) -> tuple[pa.Table, bytes]:
    table = pa.table({"a": pa.array(range(start, start + rows), pa.int64()),
                      "l": [[i, None] if i % 4 else None for i in range(rows)]})
    return table, write(table, **OPTIONS)


def test_parts_are_joined_with_every_offset_shifted() -> None:
    tables, sink = [], io.BytesIO()
    assembler = Assembler(sink)
    assert assembler.position == 4
    for start in (0, 100, 200):
        table, part = _part(start)
        tables.append(table)
        assembler.append_part(pa.py_buffer(part) if start else part)
    summary = assembler.finish(key_values=[("k", "v"), ("k", None), ("e", "")])
    data = sink.getvalue()
    assert summary.num_rows == 300
    assert summary.num_row_groups == 9
    assert assembler.position == len(data)
    parquet = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
    assert parquet.read().equals(pa.concat_tables(tables))
    meta = ft.footer_from_bytes(data, "out").meta
    assert meta.key_value_metadata == [("k", "v"), ("k", None), ("e", "")]
    for number in range(9):
        pyarrow_chunk = parquet.metadata.row_group(number).column(0)
        assert pyarrow_chunk.bloom_filter_offset is not None
        # the page index each chunk points at reads back: pyarrow's reader follows it
        assert parquet.metadata.row_group(number).column(0).has_offset_index
    for group in meta.row_groups:
        for chunk in group.columns:
            column = chunk.meta_data
            assert column is not None
            assert data[column.chunk_start():column.chunk_start() + 1] != b""
    rows = pq.read_table(pa.BufferReader(data), filters=[("a", "==", 250)])
    assert rows.column("a").to_pylist() == [250]


def test_key_values_of_the_first_part_are_kept_by_default() -> None:
    sink = io.BytesIO()
    assembler = Assembler(sink)
    assembler.append_part(_part(0)[1])
    assembler.finish()
    assert pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema_arrow.equals(_part(0)[0].schema)


def test_a_part_with_another_schema_is_refused() -> None:
    assembler = Assembler(io.BytesIO())
    assembler.append_part(_part(0)[1])
    with pytest.raises(VerificationError, match="schema"):
        assembler.append_part(write(pa.table({"b": [1]})))


def test_empty_parts_and_no_parts() -> None:
    sink = io.BytesIO()
    assembler = Assembler(sink)
    assembler.append_part(write(pa.table({"a": pa.array([], pa.int64())})))
    summary = assembler.finish()
    assert summary.num_rows == 0
    assert pq.read_table(pa.BufferReader(sink.getvalue())).num_rows == 0
    with pytest.raises(VerificationError, match="no part"):
        Assembler(io.BytesIO()).finish()

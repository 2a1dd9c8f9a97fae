"""Footer reading: magics, lengths, encryption, and the typed views the engines rely on."""

from __future__ import annotations

import struct

import pyarrow as pa
import pytest

from shared.errors import NotParquetError, UnsupportedError
from shared.parquet import footer as ft
from shared.parquet import thrift
from tests.damaged import I32_OVERFLOW, LONG_FIELD_ID
from tests.shared.parquet.corpus import footer_raw, write


def _table() -> pa.Table:
    return pa.table({"a": [1, 2, 3], "s": pa.array([{"x": [1], "y": "q"}] * 3),
                     "m": pa.array([[("k", 1)]] * 3, pa.map_(pa.string(), pa.int64()))})


def test_views_read_what_pyarrow_wrote() -> None:
    data = write(_table(), compression="snappy", write_page_index=True, row_group_size=2)
    footer = ft.read_footer(pa.BufferReader(data), "x")
    meta = footer.meta
    assert meta.num_rows == 3
    assert len(meta.row_groups) == 2
    assert meta.created_by is not None
    assert meta.created_by.startswith("parquet-cpp-arrow")
    assert any(key == "ARROW:schema" for key, _ in meta.key_value_metadata)
    group = meta.row_groups[0]
    assert group.num_rows == 2
    assert group.ordinal in (None, 0)
    chunk = group.columns[0]
    assert chunk.file_path is None
    assert chunk.offset_index_offset is not None
    assert not chunk.is_encrypted
    column = chunk.meta_data
    assert column is not None
    assert column.codec == ft.SNAPPY
    assert column.path_in_schema == ["a"]
    assert column.num_values == 2
    assert column.chunk_start() == column.dictionary_page_offset
    leaves, depth = ft.leaves(meta.schema)
    assert [leaf.path for leaf in leaves] == [("a",), ("s", "x", "list", "element"), ("s", "y"),
                                              ("m", "key_value", "key"), ("m", "key_value", "value")]
    assert [leaf.max_repetition for leaf in leaves] == [0, 1, 0, 1, 1]
    assert [leaf.top_level for leaf in leaves] == [0, 1, 1, 2, 2]
    assert depth == 3  # struct<x: list<int>>, as Arrow counts it


def test_key_values_are_replaced_exactly() -> None:
    footer = ft.footer_from_bytes(write(pa.table({"a": [1]})), "x")
    footer.meta.set_key_value_metadata([("k", "1"), ("k", None), ("", "")])
    assert footer.meta.key_value_metadata == [("k", "1"), ("k", None), ("", "")]


@pytest.mark.parametrize(("data", "error", "match"), [
    (b"PAR1", NotParquetError, "too short"),
    (b"PAR1" + b"\0" * 20 + b"PAR2", NotParquetError, "magic"),
    (b"PAR1" + b"\0" * 20 + b"\xff\xff\x00\x00PAR1", NotParquetError, "footer length"),
    (b"PAR1" + b"\0" * 20 + b"\x04\x00\x00\x00PARE", UnsupportedError, "encrypted Parquet is not supported"),
    (b"PAR1" + b"\x19\xf5\x80\x80\x80\x04" + b"\x06\x00\x00\x00PAR1", NotParquetError, "not valid Thrift"),
])
def test_bad_files_are_refused(data: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ft.read_footer(pa.BufferReader(data), "x")


def test_truncated_file_is_refused() -> None:
    data = write(pa.table({"a": list(range(100))}))
    for cut in (1, 5, len(data) // 2):
        with pytest.raises(NotParquetError):
            ft.read_footer(pa.BufferReader(data[:-cut]), "x")


def test_large_footer_needs_a_second_read() -> None:
    table = pa.table({f"c{i}": [i] for i in range(2000)})
    data = write(table)
    footer = ft.read_footer(pa.BufferReader(data), "x")
    assert len(footer.raw) > ft.TAIL_GUESS
    assert len(footer.meta.row_groups[0].columns) == 2000


def _with_extra_field(data: bytes, field: bytes) -> bytes:
    raw = footer_raw(data)
    new = raw[:-1] + field + b"\x00"
    return data[:len(data) - 8 - len(raw)] + new + struct.pack("<I", len(new)) + b"PAR1"


@pytest.mark.parametrize(("field", "match"), [
    (LONG_FIELD_ID, r"footer is not valid Thrift: field id 40000 .*16 bits \(check: footer\)"),
    (I32_OVERFLOW, r"footer is not valid Thrift: integer 1099511627776 .*i32 \(check: footer\)"),
    (bytes([0x09]) + b"\xc8\x01" + bytes([0x19]) * 199 + bytes([0x05]),  # field 100: lists nested 200 deep
     r"footer is not valid Thrift: structs, lists and maps nested deeper than 64 .*\(check: footer\)"),
])
def test_footers_the_writer_could_not_write_back_are_refused(field: bytes, match: str) -> None:
    with pytest.raises(NotParquetError, match=match):
        ft.read_footer(pa.BufferReader(_with_extra_field(write(pa.table({"a": [1]})), field)), "x")


def test_a_footer_past_the_element_budget_is_too_complex(monkeypatch: pytest.MonkeyPatch) -> None:
    data = write(pa.table({f"c{i}": [i] for i in range(50)}))
    ft.read_footer(pa.BufferReader(data), "x")
    monkeypatch.setattr(thrift, "MAX_NODES", 100)
    with pytest.raises(NotParquetError, match=r"footer too complex: \d+ bytes holding more than 100 Thrift "
                                              r"elements \(check: footer size\)"):
        ft.read_footer(pa.BufferReader(data), "x")


def test_the_budget_fits_a_real_footer_per_column_chunk() -> None:
    """MAX_NODES allows 10,000 columns x 100 row groups of what pyarrow writes per chunk, page indexes included."""
    table = pa.table({f"c{i}": pa.array([f"s{j}" for j in range(30)]) for i in range(20)})
    data = write(table, row_group_size=10, write_page_index=True, write_statistics=True)
    chunks = 20 * 3
    budget = 0
    for low in range(0, 10**6, 100):
        try:
            thrift.loads(footer_raw(data), max_nodes=low)
        except thrift.ThriftTooComplex:
            continue
        budget = low
        break
    assert budget / chunks * 10_000 * 100 < thrift.MAX_NODES

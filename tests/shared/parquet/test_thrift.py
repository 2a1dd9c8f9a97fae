"""The generic Thrift tree must give back every footer byte for byte and refuse hostile bytes cleanly."""

from __future__ import annotations

import copy

import pyarrow as pa
import pytest

from shared.parquet import thrift
from shared.parquet.thrift import Struct, ThriftError, ThriftList
from tests.helpers import zigzag_bytes
from tests.shared.parquet.corpus import CORPUS, corpus_files, footer_raw, write


def test_every_corpus_footer_round_trips_byte_for_byte() -> None:
    files = corpus_files()
    if not files:
        pytest.skip(f"corpus not found at {CORPUS}")
    for path in files:
        raw = footer_raw(path.read_bytes())
        assert thrift.dumps(thrift.loads(raw)) == raw, path.name


@pytest.mark.parametrize("options", [
    {"write_page_index": True, "write_statistics": True},
    {"write_page_index": True, "data_page_version": "2.0", "write_page_checksum": True},
    {"bloom_filter_options": {"a": {}}, "sorting_columns": None},
])
def test_pyarrow_footers_round_trip(options: dict[str, object]) -> None:
    table = pa.table({"a": [1, 2, None], "s": ["x", "y", "z"], "l": [[1.5], [], None]})
    raw = footer_raw(write(table, **options))
    assert thrift.dumps(thrift.loads(raw)) == raw


def test_get_set_and_unknown_fields() -> None:
    tree = Struct()
    tree.set(4, 7, thrift.I32)
    tree.set(1, b"x", thrift.BINARY)
    tree.set(200, b"future", thrift.BINARY)  # long-form field header
    tree.set(3, True, thrift.BOOL_TRUE)
    tree.set(5, ThriftList(thrift.I64, [1, -2, 2**40]), thrift.LIST)
    again = thrift.loads(thrift.dumps(tree))
    assert [f.id for f in again.fields] == [1, 3, 4, 5, 200]
    assert again.get(4) == 7
    assert again.get(200) == b"future"
    assert again.get(3) is True
    list_value = again.get_list(5)
    assert list_value is not None
    assert list_value.items == [1, -2, 2**40]
    again.set(3, False)
    assert thrift.loads(thrift.dumps(again)).get(3) is False
    with pytest.raises(ThriftError, match="wire type"):
        again.set(9, 1)


def test_every_truncation_raises() -> None:
    raw = footer_raw(write(pa.table({"a": [1, 2, 3]}), write_page_index=True))
    for end in range(len(raw)):
        with pytest.raises(ThriftError):
            thrift.loads(raw[:end])


def test_claimed_sizes_beyond_the_data_are_refused() -> None:
    # field 1, type binary, length 2**40
    with pytest.raises(ThriftError, match="truncated"):
        thrift.loads(bytes([0x18]) + b"\x80\x80\x80\x80\x80\x80\x80\x80\x01")
    # field 1, a list of 2**30 i32 in a few bytes
    with pytest.raises(ThriftError, match="truncated"):
        thrift.loads(bytes([0x19, 0xF5, 0x80, 0x80, 0x80, 0x80, 0x04]))
    with pytest.raises(ThriftError, match="varint"):
        thrift.loads(bytes([0x15]) + b"\xff" * 20)


def test_deep_nesting_is_bounded() -> None:
    deep = bytes([0x1C]) * 10_000 + b"\x00" * 10_001  # struct in struct in struct ...
    with pytest.raises(ThriftError, match="nested"):
        thrift.loads(deep)


def test_trailing_bytes_and_unknown_types() -> None:
    with pytest.raises(ThriftError, match="unexpected"):
        thrift.loads(b"\x00\x00")
    with pytest.raises(ThriftError, match="unknown compact type"):
        thrift.loads(bytes([0x1D, 0x00]))


@pytest.mark.parametrize(("raw", "match"), [
    (bytes([0x05]) + zigzag_bytes(40000) + zigzag_bytes(1) + b"\x00", "field id 40000 .*does not fit 16 bits"),
    (bytes([0x05]) + zigzag_bytes(-40000) + zigzag_bytes(1) + b"\x00", "field id -40000 .*does not fit 16 bits"),
    # long-form id 32767, then a short header whose delta carries the next id past 16 bits
    (bytes([0x05]) + zigzag_bytes(32767) + zigzag_bytes(1) + bytes([0x15]) + zigzag_bytes(1) + b"\x00",
     "field id 32768"),
    (bytes([0x14]) + zigzag_bytes(1 << 15) + b"\x00", "integer 32768 .*does not fit its type i16"),
    (bytes([0x15]) + zigzag_bytes(2**40) + b"\x00", "integer 1099511627776 .*does not fit its type i32"),
    (bytes([0x16]) + b"\xff" * 9 + b"\x7f" + b"\x00", "does not fit its type i64"),
    (bytes([0x19, 0x15]) + zigzag_bytes(-(2**31) - 1) + b"\x00", "does not fit its type i32"),  # inside a list
])
def test_what_the_writer_cannot_write_back_is_refused_on_reading(raw: bytes, match: str) -> None:
    with pytest.raises(ThriftError, match=match):
        thrift.loads(raw)


def test_the_writer_refuses_out_of_range_ids_and_values() -> None:
    with pytest.raises(ThriftError, match="16 bits"):
        thrift.dumps(Struct([thrift.Field(40000, thrift.I32, 1)]))
    with pytest.raises(ThriftError, match="i32"):
        thrift.dumps(Struct([thrift.Field(1, thrift.I32, 2**40)]))


def test_the_extremes_of_each_type_round_trip() -> None:
    tree = Struct([thrift.Field(-32768, thrift.I16, -(2**15)), thrift.Field(-1, thrift.I32, 2**31 - 1),
                   thrift.Field(32767, thrift.I64, -(2**63))])
    raw = thrift.dumps(tree)
    assert [(f.id, f.value) for f in thrift.loads(raw).fields] == [(f.id, f.value) for f in tree.fields]
    assert thrift.dumps(thrift.loads(raw)) == raw


def test_nested_lists_are_bounded_like_structs() -> None:
    def lists(depth: int) -> bytes:  # field 1: list<list<...<i32>>>, each of one element, the innermost empty
        return bytes([0x19]) + bytes([0x19]) * (depth - 1) + bytes([0x05]) + b"\x00"

    thrift.loads(lists(thrift.MAX_DEPTH - 1))
    with pytest.raises(ThriftError, match="nested deeper than 64"):
        thrift.loads(lists(200))
    maps = bytes([0x1B]) + b"\x01\x5b\x00" * 200 + b"\x00\x00"  # map<i32, map<i32, ...>>, one entry each
    with pytest.raises(ThriftError, match="nested deeper than 64"):
        thrift.loads(maps)


def test_the_element_budget_refuses_too_complex_bytes() -> None:
    raw = bytes([0x19, 0xFC, 0xE8, 0x07]) + b"\x00" * 1000 + b"\x00"  # 1000 structs
    tree = thrift.loads(raw)
    assert len(tree.get_structs(1)) == 1000
    with pytest.raises(thrift.ThriftTooComplex, match="too complex: more than 500 elements"):
        thrift.loads(raw, max_nodes=500)


def test_fields_never_looked_into_are_kept_as_bytes_and_written_back_as_read() -> None:
    count = 200_000
    structs = bytes([0x19, 0xFC, 0xC0, 0x9A, 0x0C]) + b"\x00" * count  # field 1: list of 200,000 empty structs
    non_canonical = bytes([0x1C, 0x15, 0x80, 0x00, 0x00])  # field 2: struct {1: i32 0 as 0x80 0x00}
    false_as_zero = bytes([0x19, 0x21, 0x00, 0x01])  # field 3: list<bool> [false written as 0, true]
    raw = structs + non_canonical + false_as_zero + b"\x00"
    tree = thrift.loads(raw)
    assert all(item.is_raw for item in tree.fields)
    assert thrift.dumps(tree) == raw  # byte for byte, non-canonical forms included
    copied = copy.deepcopy(tree)
    assert all(item.is_raw for item in copied.fields)
    assert thrift.dumps(copied) == raw
    assert copied == tree
    # Looked into, a field is written in canonical form: the same values.
    inner = tree.get_struct(2)
    assert inner is not None
    assert inner.get(1) == 0
    bools = tree.get_list(3)
    assert bools is not None
    assert bools.items == [False, True]
    again = thrift.dumps(tree)
    assert again != raw
    assert thrift.loads(again) == thrift.loads(raw)
    assert len(tree.get_structs(1)) == count

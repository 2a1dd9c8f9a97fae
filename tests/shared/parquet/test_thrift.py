"""The generic Thrift tree must give back every footer byte for byte and refuse hostile bytes cleanly."""

from __future__ import annotations

import pyarrow as pa
import pytest

from shared.parquet import thrift
from shared.parquet.thrift import Struct, ThriftError, ThriftList
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

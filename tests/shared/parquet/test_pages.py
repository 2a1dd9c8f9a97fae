"""The page walk finds every page of a chunk and refuses headers and sizes that do not fit."""

from __future__ import annotations

import pyarrow as pa
import pytest

from shared.parquet import footer as ft
from shared.parquet import pages, thrift
from tests.shared.parquet.corpus import write


def _chunk(**options: object) -> tuple[bytes, ft.ColumnMeta]:
    data = write(pa.table({"a": [i % 7 if i % 3 else None for i in range(5000)]}), data_page_size=1000,
                 **options)
    meta = ft.footer_from_bytes(data, "x").meta.row_groups[0].columns[0].meta_data
    assert meta is not None
    start = meta.chunk_start()
    return data[start:start + meta.total_compressed_size], meta


def test_walk_finds_dictionary_and_data_pages() -> None:
    chunk, meta = _chunk(write_page_checksum=True)
    walked = pages.walk(chunk)
    assert walked[0].type == pages.DICTIONARY_PAGE
    assert len(walked) > 2
    assert sum(page.num_values for page in walked) == meta.num_values
    for page in walked:
        assert page.crc == pages.crc32(page.payload)
        assert pages.serialize_header(page.header) == chunk[page.offset:page.offset + page.header_length]


def test_v2_pages_carry_levels_and_rows() -> None:
    chunk, _ = _chunk(data_page_version="2.0", compression="snappy")
    data_pages = [page for page in pages.walk(chunk) if page.is_data]
    assert all(page.type == pages.DATA_PAGE_V2 for page in data_pages)
    assert sum(page.num_rows or 0 for page in data_pages) == 5000
    assert all(page.levels_length > 0 and page.values_compressed for page in data_pages)


def test_truncated_header() -> None:
    chunk, _ = _chunk()
    with pytest.raises(pages.PageError, match=r"page 0 header is truncated \(check: page header\)"):
        pages.walk(chunk[:3])


def test_page_past_the_chunk() -> None:
    chunk, _ = _chunk()
    first = pages.walk(chunk)[0]
    cut = chunk[: first.offset + first.header_length + 1]
    with pytest.raises(pages.PageError, match=r"check: column chunk size"):
        pages.walk(cut)


def test_garbage_header_and_unknown_type() -> None:
    with pytest.raises(pages.PageError, match="page header"):
        pages.walk(b"\xff" * 40)
    header = thrift.Struct()
    header.set(pages.PH_TYPE, 9, thrift.I32)
    header.set(pages.PH_UNCOMPRESSED, 0, thrift.I32)
    header.set(pages.PH_COMPRESSED, 0, thrift.I32)
    with pytest.raises(pages.PageError, match="unknown page type 9"):
        pages.walk(thrift.dumps(header))


def test_crc_is_signed_like_thrift_i32() -> None:
    assert pages.crc32(b"") == 0
    assert -(2**31) <= pages.crc32(b"\xff" * 100) < 2**31
    assert pages.crc32(b"123456789") == 0xCBF43926 - 2**32

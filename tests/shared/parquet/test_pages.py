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


# ---------------------------------------------------------------- the fast path agrees with the generic one


def _generic(data: bytes, pos: int = 0) -> pages.Page:
    header, end = pages.parse_header(data, pos, 0)
    return pages.Page(0, header, pos, end - pos, memoryview(data)[end:end])


def _fields(page: pages.Page) -> tuple[object, ...]:
    """Everything the engine reads of a page, or the exception the generic path raises for it."""
    try:
        return (page.type, page.uncompressed_size, page.compressed_size, page.crc, page.is_data, page.num_values,
                page.num_rows, page.levels_length, page.values_compressed)
    except (pages.PageError, thrift.ThriftError) as exc:
        return (type(exc),)


def _rewrites(page: pages.Page) -> list[bytes | type]:
    out: list[bytes | type] = []
    for size, crc in ((0, 0), (1, -1), (300, 2**31 - 1), (2**31 - 1, -(2**31)), (2**31, None)):
        try:
            if page.type == pages.DATA_PAGE_V2:
                page.set_v2_compressed()
            out.append(pages.new_header(page, size, crc if page.crc is not None else None))
        except (pages.PageError, thrift.ThriftError) as exc:
            out.append(type(exc))
    return out


def _agree(header: bytes) -> bool:
    """The fast path either declines ``header`` or reads and rewrites it exactly as the generic path; True if taken."""
    try:
        fast, end = pages._fast_header(header, 0, len(header))
    except pages._Slow:
        return False
    generic = _generic(header)
    assert end == generic.header_length
    page = pages.Page(0, None, 0, end, memoryview(header)[end:end], fast=fast)
    assert _fields(page) == _fields(generic)
    assert len(_fields(page)) > 1, "the fast path took a header whose fields the generic path refuses"
    assert _rewrites(page) == _rewrites(_generic(header))
    return True


def _headers(**options: object) -> list[bytes]:
    chunk, _ = _chunk(**options)
    return [chunk[p.offset:p.offset + p.header_length] for p in pages.walk(chunk)]


@pytest.mark.parametrize("options", [
    {}, {"write_page_checksum": True}, {"data_page_version": "2.0"},
    {"data_page_version": "2.0", "write_page_checksum": True, "compression": "none"},
    {"write_statistics": False, "use_dictionary": False},
])
def test_fast_path_takes_writers_headers_and_agrees(options: dict[str, object]) -> None:
    headers = _headers(**options)
    assert all(_agree(header) for header in headers)
    chunk, _ = _chunk(**options)
    walked = pages.walk(chunk)
    assert all(page._fast is not None for page in walked)
    assert pages.stored_size(headers[1]) == walked[1].compressed_size


def test_fast_path_agrees_on_damaged_and_unusual_headers() -> None:
    """Every header one byte or one cut away from a real one: the fast path declines it or agrees exactly."""
    seeds = _headers(write_page_checksum=True) + _headers(data_page_version="2.0", write_page_checksum=True)
    seen = set()
    for header in seeds[:3] + seeds[-3:]:
        for at in range(len(header)):
            for value in (0x00, 0x01, 0x02, 0x05, 0x0C, 0x15, 0x19, 0x1C, 0x26, 0x80, 0xFF, header[at] ^ 0x10):
                seen.add(header[:at] + bytes([value]) + header[at + 1:])
            seen.add(header[:at])
            seen.add(header[:at] + b"\x80" + header[at:])
    taken = sum(_agree(header) for header in seen if _generic_ok(header))
    assert taken > 100
    for header in seen:
        if not _generic_ok(header):
            with pytest.raises(pages._Slow):
                pages._fast_header(header, 0, len(header))


def _generic_ok(header: bytes) -> bool:
    try:
        _generic(header)
    except pages.PageError:
        return False
    return True


def test_fast_path_declines_what_the_writer_would_change() -> None:
    base = thrift.Struct()
    base.set(pages.PH_TYPE, pages.DATA_PAGE, thrift.I32)
    base.set(pages.PH_UNCOMPRESSED, 10, thrift.I32)
    base.set(pages.PH_COMPRESSED, 10, thrift.I32)
    sub = thrift.Struct()
    sub.set(pages.DP_NUM_VALUES, 3, thrift.I32)
    base.set(pages.PH_DATA, sub, thrift.STRUCT)
    plain = thrift.dumps(base)
    assert _agree(plain)
    # 0x80 0x00: 0 in a non-canonical varint; the generic writer writes it back as 0x00.
    long_zero = plain.replace(b"\x15\x14", b"\x15\x80\x00", 1)
    assert _generic_ok(long_zero)
    assert not _agree(long_zero)
    assert pages.walk(long_zero + bytes(10))[0].header.get_int(pages.PH_TYPE) == 0
    # An unknown field kept as bytes, nested lists, maps and a long-form id inside it, goes fast and survives.
    odd = thrift.Struct()
    odd.set(1, thrift.ThriftList(thrift.STRUCT, [thrift.Struct([thrift.Field(300, thrift.BINARY, b"x", False)])]),
            thrift.LIST)
    odd.set(2, thrift.ThriftMap(thrift.I64, thrift.BOOL_TRUE, [(2**40, True)]), thrift.MAP)
    odd.set(3, thrift.ThriftList(thrift.DOUBLE, [1.5, float("nan")]), thrift.SET)
    base.set(20, odd, thrift.STRUCT)
    assert _agree(thrift.dumps(base))

"""Exact mode: real and generated files come out zstd, identical in schema, metadata and values."""

from __future__ import annotations

import datetime
import decimal
import io
import struct
import tracemalloc
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.errors import DamagedError, LimitError, NotParquetError, UnsupportedError
from shared.exact import ExactOptions, recompress
from shared.limits import Limits
from shared.parquet import footer as ft
from shared.parquet import pages, thrift
from shared.parquet.assembly import FileBuilder
from shared.proof import Outcome, ProofKind
from tests.damaged import BOMB_PAGE_BYTES, page_header_with_long_field_id, understated_bomb
from tests.shared.parquet.corpus import (
    CORPUS,
    assert_same_file,
    chunk_meta,
    corpus_files,
    edit_footer,
    footer_raw,
    hadoop_lz4,
    write,
)


def run(data: bytes, verify: ProofKind = "full", **options: Any) -> tuple[bytes, Outcome]:
    sink = pa.BufferOutputStream()
    outcome = recompress(pa.BufferReader(data), sink, ExactOptions(level=3, verify=verify, **options), name="x.parquet")
    out: bytes = sink.getvalue().to_pybytes()
    return out, outcome


@pytest.mark.parametrize("path", corpus_files() or [None], ids=lambda p: p.name if p else "absent")
def test_corpus_file(path: Any) -> None:
    if path is None:
        pytest.skip(f"corpus not found at {CORPUS}")
    data = path.read_bytes()
    verifies: tuple[ProofKind, ...] = ("full", "pages")
    for verify in verifies:
        out, outcome = run(data, verify)
        assert_same_file(data, out)
        assert outcome.rows_read == outcome.rows_written == sum(
            g.num_rows for g in ft.footer_from_bytes(data, "x").meta.row_groups)


def mixed_table(rows: int = 2000) -> pa.Table:
    return pa.table({
        "i": pa.array([i if i % 5 else None for i in range(rows)], pa.int64()),
        "s": [f"v{i % 13}" for i in range(rows)],
        "l": [[i, i + 1] if i % 3 else None for i in range(rows)],
        "m": pa.array([[("k", i)] for i in range(rows)], pa.map_(pa.string(), pa.int64())),
        "st": [{"x": i, "y": str(i)} for i in range(rows)],
        "d4": pa.array([decimal.Decimal(i) / 100 for i in range(rows)], pa.decimal128(9, 2)),
        "d8": pa.array([decimal.Decimal(i) / 100 for i in range(rows)], pa.decimal128(18, 2)),
        "ts": pa.array([datetime.datetime(1 + i % 9998, 1, 1, 0, 0, 0, 123457) for i in range(rows)],
                       pa.timestamp("us")),
        "f": [float("nan") if i % 7 == 0 else i / 3 for i in range(rows)],
        "req": pa.array(range(rows), pa.int32()),
    }, schema=None)


@pytest.mark.parametrize("codec", ["snappy", "gzip", "brotli", "zstd", "lz4", "none"])
@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_every_codec_and_page_version(codec: str, version: str) -> None:
    data = write(mixed_table(), compression=codec, data_page_version=version, row_group_size=700,
                 data_page_size=2000)
    out, _ = run(data)
    assert_same_file(data, out)


def test_checksums_page_index_bloom_filters_and_encodings() -> None:
    data = write(mixed_table(), compression="snappy", write_page_index=True, write_page_checksum=True,
                 bloom_filter_options={"i": {}}, store_decimal_as_integer=True, use_compliant_nested_type=False,
                 use_dictionary=["s"], column_encoding={"i": "DELTA_BINARY_PACKED", "req": "BYTE_STREAM_SPLIT",
                                                        "st.y": "DELTA_BYTE_ARRAY"},
                 row_group_size=500, data_page_size=1000)
    out, _ = run(data)
    assert_same_file(data, out)
    parquet = pq.ParquetFile(pa.BufferReader(out), page_checksum_verification=True)
    assert parquet.read().num_rows == 2000
    column = parquet.metadata.row_group(1).column(0)
    assert column.has_offset_index
    assert column.has_column_index
    assert column.bloom_filter_offset is not None
    physical = {parquet.schema.column(i).path: parquet.schema.column(i).physical_type
                for i in range(len(parquet.schema))}
    assert physical["d4"] == "INT32"
    assert physical["d8"] == "INT64"
    # The offset index lists the new pages: a filtered read by page follows it.
    assert pq.read_table(pa.BufferReader(out), filters=[("req", "==", 1234)]).column("req").to_pylist() == [1234]
    for page_crc in _page_crcs(out):
        assert page_crc is not None


def _page_crcs(data: bytes) -> list[int | None]:
    meta = ft.footer_from_bytes(data, "x").meta
    crcs: list[int | None] = []
    for group in meta.row_groups:
        for chunk in group.columns:
            column = chunk.meta_data
            assert column is not None
            start = column.chunk_start()
            for page in pages.walk(data[start:start + column.total_compressed_size]):
                assert page.crc == pages.crc32(page.payload)
                crcs.append(page.crc)
    return crcs


def test_int96_outside_the_nanosecond_range() -> None:
    table = pa.table({"t": pa.array([datetime.datetime(1, 1, 1, 0, 0, 0, 1), datetime.datetime(9999, 12, 31),
                                     datetime.datetime(2020, 5, 5, 1, 2, 3, 456789)], pa.timestamp("us"))})
    data = write(table, use_deprecated_int96_timestamps=True)
    out, _ = run(data)
    assert_same_file(data, out)
    read = pq.ParquetFile(pa.BufferReader(out), coerce_int96_timestamp_unit="us").read()
    assert read.column("t").to_pylist() == table.column("t").to_pylist()


@pytest.mark.parametrize("table", [
    pa.table({"a": pa.array([], pa.int64())}),
    pa.table({}),
    pa.table({"a": [1, 2, 3]}).slice(0, 0),
])
def test_empty_files(table: pa.Table) -> None:
    data = write(table)
    out, outcome = run(data)
    assert outcome.rows_written == 0
    assert pq.read_table(pa.BufferReader(out)).schema.equals(pq.read_table(pa.BufferReader(data)).schema)


def test_zero_row_row_groups() -> None:
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, pa.schema([("a", pa.int64())])) as writer:
        writer.write_table(pa.table({"a": pa.array([], pa.int64())}))
        writer.write_table(pa.table({"a": [1, 2]}))
        writer.write_table(pa.table({"a": pa.array([], pa.int64())}))
    data = sink.getvalue().to_pybytes()
    out, outcome = run(data)
    assert_same_file(data, out)
    assert outcome.row_groups_written == 3
    assert outcome.rows_written == 2


def test_hadoop_framed_lz4_input() -> None:
    data = write(pa.table({"a": list(range(3000))}), compression="none", use_dictionary=False, write_statistics=False)
    legacy = _transcode(data, hadoop_lz4, ft.LZ4)
    assert pq.read_table(pa.BufferReader(legacy)).column("a").to_pylist() == list(range(3000))
    out, _ = run(legacy)
    assert_same_file(legacy, out)


def _transcode(data: bytes, pack: Any, codec: int) -> bytes:
    """Rewrite a one-column, one-group, uncompressed file's pages with another compressor (test input only)."""
    parsed = ft.footer_from_bytes(data, "x")
    meta = chunk_meta(parsed.tree)
    column = ft.ColumnMeta(meta)
    start = column.chunk_start()
    body = b""
    for page in pages.walk(data[start:start + column.total_compressed_size]):
        packed = pack(bytes(page.payload))
        page.header.set(pages.PH_COMPRESSED, len(packed))
        body += thrift.dumps(page.header) + packed
    meta.set(ft.CM_CODEC, codec)
    meta.set(ft.CM_TOTAL_COMPRESSED, len(body))
    meta.set(ft.CM_DATA_PAGE_OFFSET, 4)
    chunk = ft.FileMeta(parsed.tree).row_groups[0].columns[0].tree
    chunk.set(ft.CC_FILE_OFFSET, 4)
    raw = thrift.dumps(parsed.tree)
    return b"PAR1" + body + raw + struct.pack("<I", len(raw)) + b"PAR1"


def test_unknown_thrift_fields_survive() -> None:
    data = write(mixed_table(100), row_group_size=40)

    def inject(tree: thrift.Struct) -> None:
        tree.set(200, b"\x00future\xff", thrift.BINARY)
        chunk_meta(tree, 1, 2).set(200, b"column field", thrift.BINARY)

    edited = edit_footer(data, inject)
    out, _ = run(edited)
    tree = ft.footer_from_bytes(out, "out").tree
    assert tree.get(200) == b"\x00future\xff"
    assert chunk_meta(tree, 1, 2).get(200) == b"column field"
    assert_same_file(edited, out)


def test_a_source_read_one_chunk_at_a_time() -> None:
    data = write(mixed_table(), write_page_index=True, row_group_size=1000)

    class Counting(io.BytesIO):
        reads = 0

        def read(self, size: int | None = -1, /) -> bytes:
            Counting.reads += 1
            return super().read(size)

    out, _ = (lambda sink: (sink, recompress(pa.PythonFile(Counting(data), mode="r"), sink,
                                            ExactOptions(level=1, threads=3), name="blob")))(pa.BufferOutputStream())
    assert_same_file(data, out.getvalue().to_pybytes())
    chunks = sum(len(g.columns) for g in ft.footer_from_bytes(data, "x").meta.row_groups)
    assert Counting.reads <= chunks + 2 + 2  # footer tail, one read per chunk, page indexes per row group


def test_progress_reports_each_row_group() -> None:
    seen: list[int] = []
    sink = pa.BufferOutputStream()
    recompress(pa.BufferReader(write(mixed_table(100), row_group_size=30)), sink, ExactOptions(level=1),
               name="x", progress=seen.append)
    assert seen == [30, 30, 30, 10]


@pytest.mark.parametrize("verify", ["full", "pages"])
def test_file_num_rows_disagreeing_with_row_groups_is_kept(verify: ProofKind) -> None:
    """Old writers did this: the row groups' truth is counted, the input's footer field is published as it was."""
    data = edit_footer(write(mixed_table(100), row_group_size=60), lambda t: t.set(ft.FMD_NUM_ROWS, 7))
    out, outcome = run(data, verify)
    assert outcome.rows_declared == outcome.rows_read == outcome.rows_written == 100
    assert ft.footer_from_bytes(out, "out").meta.num_rows == 7
    found = ft.footer_from_bytes(out, "out").tree.find(ft.FMD_NUM_ROWS)
    assert found is not None
    assert (found.type, found.value) == (thrift.I64, 7)


# ---------------------------------------------------------------- refusals


def _two_groups_one_empty_chunk() -> bytes:
    """2 row groups of 3 and 2 rows; in the first, column b's chunk holds no values at all."""
    sink = pa.BufferOutputStream()
    schema = pa.schema([("a", pa.int64()), ("b", pa.int64())])
    with pq.ParquetWriter(sink, schema, compression="snappy") as writer:
        writer.write_table(pa.table({"a": [1, 2, 3], "b": [4, 5, 6]}, schema=schema))
        writer.write_table(pa.table({"a": [7, 8], "b": [9, 10]}, schema=schema))
    data: bytes = sink.getvalue().to_pybytes()
    empty = write(pa.table({"b": pa.array([], pa.int64())}), compression="snappy")
    empty_meta = ft.ColumnMeta(chunk_meta(ft.footer_from_bytes(empty, "e").tree))
    empty_chunk = empty[empty_meta.chunk_start():empty_meta.chunk_start() + empty_meta.total_compressed_size]
    parsed = ft.footer_from_bytes(data, "x")
    meta = chunk_meta(parsed.tree, 0, 1)
    meta.set(ft.CM_NUM_VALUES, 0)
    meta.set(ft.CM_TOTAL_COMPRESSED, len(empty_chunk))
    meta.set(ft.CM_DICT_PAGE_OFFSET, parsed.start)
    meta.set(ft.CM_DATA_PAGE_OFFSET, parsed.start + len(empty_chunk))
    raw = thrift.dumps(parsed.tree)
    return data[:parsed.start] + empty_chunk + raw + struct.pack("<I", len(raw)) + b"PAR1"


@pytest.mark.parametrize("verify", ["full", "pages"])
def test_a_row_group_with_an_empty_column_is_refused(verify: ProofKind) -> None:
    with pytest.raises(DamagedError, match=r"row group 0 declares 3 rows but column 'b' holds 0 "
                                           r"\(check: row-group row count\)"):
        run(_two_groups_one_empty_chunk(), verify)


def _simple(**options: Any) -> bytes:
    table = pa.table({"a": pa.array(range(2000), pa.int64()), "b": pa.array([i % 3 for i in range(2000)])},
                     schema=pa.schema([pa.field("a", pa.int64(), nullable=False), ("b", pa.int64())]))
    return write(table, **options)


def _edit_meta(data: bytes, column: int, edit: Any) -> bytes:
    return edit_footer(data, lambda tree: edit(chunk_meta(tree, 0, column)))


def _page_range(data: bytes, column: int = 0, page: int = 0) -> tuple[int, pages.Page]:
    meta = ft.ColumnMeta(chunk_meta(ft.footer_from_bytes(data, "x").tree, 0, column))
    start = meta.chunk_start()
    return start, pages.walk(data[start:start + meta.total_compressed_size])[page]


def _poke(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


def _bad_page_header(data: bytes) -> bytes:
    start, page = _page_range(data)
    return _poke(data, start + page.offset, b"\xff\xff\xff")


def _undecodable_page(data: bytes) -> bytes:
    start, page = _page_range(data)
    at = start + page.offset + page.header_length + len(page.payload) // 2
    return _poke(data, at, bytes(b ^ 0x55 for b in data[at:at + 8]))


def _bad_bit_width(data: bytes) -> bytes:
    start, page = _page_range(data, column=1, page=1)  # first data page of the dictionary column
    # v1 data page of an optional column: a 4-byte definition-level length, the levels, then the bit width.
    levels = struct.unpack("<I", bytes(page.payload[:4]))[0]
    return _poke(data, start + page.offset + page.header_length + 4 + levels, b"\x7f")


@pytest.mark.parametrize(("name", "damage", "error", "check"), [
    ("truncated file", lambda d: d[: len(d) // 2], NotParquetError, "magic"),
    ("bad magic", lambda d: b"PAR0" + d[4:], NotParquetError, "magic"),
    ("encrypted", lambda d: d[:-4] + b"PARE", UnsupportedError, "encrypted Parquet is not supported"),
    ("LZO", lambda d: _edit_meta(d, 0, lambda m: m.set(ft.CM_CODEC, ft.LZO)), UnsupportedError,
     "column 'a' is compressed with LZO"),
    ("file path", lambda d: edit_footer(d, lambda t: ft.FileMeta(t).row_groups[0].columns[1].tree.set(
        ft.CC_FILE_PATH, b"other.parquet", thrift.BINARY)), UnsupportedError, "another file"),
    ("short column chunk", lambda d: _edit_meta(d, 0, lambda m: m.set(
        ft.CM_TOTAL_COMPRESSED, (m.get_int(ft.CM_TOTAL_COMPRESSED) or 0) - 10)), DamagedError,
     "check: column chunk size"),
    ("truncated chunk", lambda d: _edit_meta(d, 1, lambda m: m.set(
        ft.CM_TOTAL_COMPRESSED, (m.get_int(ft.CM_TOTAL_COMPRESSED) or 0) + 10**6)), DamagedError,
     "check: column chunk size"),
    ("inconsistent counts", lambda d: _edit_meta(d, 1, lambda m: m.set(ft.CM_NUM_VALUES, 1999)), DamagedError,
     "check: value count"),
    ("bad page header", _bad_page_header, DamagedError, "check: page header"),
])
def test_damaged_inputs_are_refused(name: str, damage: Any, error: type[Exception], check: str) -> None:
    data = damage(_simple(compression="snappy"))
    with pytest.raises(error, match=check) as caught:
        run(data)
    assert "\n" not in str(caught.value), name


def test_undecodable_page_is_refused() -> None:
    with pytest.raises(DamagedError, match=r"row group 0, column 'a': page 0 does not decompress.*check: decompress"):
        run(_undecodable_page(_simple(compression="gzip", use_dictionary=False)))


def test_bad_crc_is_refused() -> None:
    with pytest.raises(DamagedError, match="check: page crc"):
        run(_undecodable_page(_simple(compression="none", use_dictionary=False, write_page_checksum=True)))


def test_undecodable_values_are_refused_by_the_full_proof() -> None:
    data = _bad_bit_width(_simple(compression="none"))
    with pytest.raises(DamagedError, match=r"row group 0, column 'b': values do not decode .*\(check: decode\)"):
        run(data, "full")


def test_limits_are_checked_before_page_work() -> None:
    data = _simple()
    with pytest.raises(LimitError, match="RECOMPRESS_MAX_COLUMNS"):
        run(data, limits=Limits(max_columns=1))
    with pytest.raises(LimitError, match="RECOMPRESS_MAX_ROWS"):
        run(data, limits=Limits(max_rows=10))


def test_errors_keep_their_cause() -> None:
    with pytest.raises(DamagedError) as caught:
        run(_bad_page_header(_simple()))
    assert caught.value.__cause__ is not None


# ---------------------------------------------------------------- property


TABLES = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
              st.one_of(st.none(), st.text(max_size=8)),
              st.floats(allow_nan=True),
              st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=3)),
    max_size=300)
WRITER = st.fixed_dictionaries({
    "compression": st.sampled_from(["snappy", "gzip", "brotli", "zstd", "lz4", "none"]),
    "data_page_version": st.sampled_from(["1.0", "2.0"]),
    "use_dictionary": st.booleans(),
    "write_page_index": st.booleans(),
    "write_page_checksum": st.booleans(),
    "row_group_size": st.integers(1, 400),
    "data_page_size": st.sampled_from([64, 1024, 1 << 20]),
})


# No target phase: its optimiser module is missing from the shared venv's hypothesis install.
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=[HealthCheck.too_slow])
@given(rows=TABLES, writer=WRITER, verify=st.sampled_from(["full", "pages"]))
def test_random_tables(rows: list[tuple[Any, ...]], writer: dict[str, Any], verify: ProofKind) -> None:
    table = pa.table({
        "i": pa.array([r[0] for r in rows], pa.int64()),
        "s": pa.array([r[1] for r in rows], pa.string()),
        "f": pa.array([r[2] for r in rows], pa.float64()),
        "l": pa.array([r[3] for r in rows], pa.list_(pa.int32())),
    })
    data = write(table, **writer)
    out, outcome = run(data, verify)
    assert_same_file(data, out)
    assert outcome.rows_written == len(rows)
    if writer["write_page_checksum"]:
        pq.ParquetFile(pa.BufferReader(out), page_checksum_verification=True).read()


# ---------------------------------------------------------------- hostile footers, page headers and bombs


def test_a_page_header_the_writer_could_not_write_back_is_damaged() -> None:
    with pytest.raises(DamagedError, match=r"row group 0, column 'x': page 0 header is not valid Thrift "
                                           r"\(field id 40000 .*\) \(check: page header\)"):
        run(page_header_with_long_field_id())


def test_a_thrift_error_on_writing_is_an_app_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backstop: the reader refuses what the writer cannot write, but a writer failure never escapes bare."""
    def refuse(page: pages.Page, size: int, crc: int | None) -> bytes:
        raise thrift.ThriftError("99999 does not fit in i16")

    monkeypatch.setattr(pages, "new_header", refuse)
    with pytest.raises(DamagedError, match=r"row group 0, column 'a': page 0 header cannot be written back "
                                           r"\(99999 does not fit in i16\) \(check: page header write\)"):
        run(_simple())
    monkeypatch.undo()
    builder = FileBuilder(pa.BufferOutputStream(), name="x.parquet")
    with pytest.raises(UnsupportedError, match=r"^x.parquet: the footer cannot be written back: .*i32 "
                                               r"\(check: footer write\)$"):
        builder.finish(thrift.Struct([thrift.Field(100, thrift.I32, 2**40)]))


def test_a_footer_of_millions_of_unknown_elements_stays_bytes() -> None:
    data = write(mixed_table(100), row_group_size=40)
    count = 1_000_000
    unknown = bytes([0x09]) + b"\xc8\x01" + bytes([0xFC]) + b"\xc0\x84\x3d" + b"\x00" * count  # 100: 1M structs
    raw = footer_raw(data)
    edited = data[:len(data) - 8 - len(raw)] + raw[:-1] + unknown + b"\x00" + struct.pack(
        "<I", len(raw) + len(unknown)) + b"PAR1"
    tracemalloc.start()
    try:
        out, _ = run(edited)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 1024**2  # one Python object per element was >100 bytes each: 100+ MB
    assert unknown in footer_raw(out)
    assert_same_file(edited, out)


def test_pages_declaring_more_than_the_row_group_limit_are_refused_before_decompressing() -> None:
    with pytest.raises(LimitError, match=rf"row group 0, column 'x': page 0 decompresses to {BOMB_PAGE_BYTES} "
                                         r"bytes, over the limit of 1000000 \(RECOMPRESS_MAX_ROW_GROUP_BYTES\)"):
        run(understated_bomb(), "pages", limits=Limits(max_row_group_bytes=1_000_000))
    # Every page under the limit, the row group over it, its footer's total_byte_size understated.
    table = pa.table({"a": pa.array(range(100_000), pa.int64()), "b": pa.array(range(100_000), pa.int64())})
    data = edit_footer(write(table, use_dictionary=False, data_page_size=100_000),
                       lambda t: ft.FileMeta(t).row_groups[0].tree.set(ft.RG_TOTAL_BYTE_SIZE, 1000))
    with pytest.raises(LimitError, match=r"row group 0 decompresses to more than \d+ bytes \(its page headers so "
                                         r"far\), over the limit of 1000000 \(RECOMPRESS_MAX_ROW_GROUP_BYTES\)"):
        run(data, "pages", limits=Limits(max_row_group_bytes=1_000_000))
    run(data, "pages", limits=Limits(max_row_group_bytes=2_000_000))


@pytest.mark.parametrize("verify", ["full", "pages"])
def test_a_zero_row_group_beside_a_dictionary_only_chunk(verify: ProofKind) -> None:
    """pyarrow writes a 0-byte chunk (data_page_offset 0) beside a dictionary-only one for an empty write."""
    table = pa.table({"i": pa.array(range(10)), "b": pa.array([True, False] * 5)})
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema) as writer:
        writer.write_table(table)
        writer.write_table(table.slice(0, 0))
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    empty = ft.footer_from_bytes(data, "x").meta.row_groups[1].columns
    assert [c.meta_data.data_page_offset for c in empty if c.meta_data] == [0, 0]
    out, outcome = run(data, verify)
    assert_same_file(data, out)
    assert outcome.rows_written == 20

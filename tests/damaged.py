"""The one corpus of damaged and hostile Parquet files the tests feed the app.

``CASES`` are bad inputs with a known verdict: the error class quarantine
reports and a regex for the one-line message. ``FLIPS`` are valid files with
bytes flipped, judged against pyarrow: a flip pyarrow notices must be refused,
a flip it does not notice may be rewritten with the rows pyarrow reads.
Limits are settings, so each case carries the ``RECOMPRESS_*`` values it needs.

``test_hostile`` runs every entry through the blob pipeline and the command
line; ``test_fuzz`` pins the inputs that once crashed pyarrow.
"""

from __future__ import annotations

import functools
import random
import re
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from shared.limits import nesting_depth
from tests.helpers import parquet_bytes, sample_table, zigzag_bytes

NOT_PARQUET = r"not a readable Parquet file \(.+\)"
#: A file that is Parquet but contradicts itself: the message names the row group and the check that failed.
DAMAGED = r"row group \d+.* \(check: [a-z -]+\)"
UNREADABLE = rf"({NOT_PARQUET}|{DAMAGED})"
#: The error kinds an unreadable file may be refused with: not Parquet at all, or damaged inside.
UNREADABLE_KINDS = ("NotParquetError", "DamagedError")

BOMB_ROWS = 20_000_000
BOMB_VALUE_BYTES = 60  # 20M x (4-byte length + 60 bytes) = 1.28 GB once decoded
BOMB_LIMIT = "16MiB"
BOMB_PEAK_RSS_MIB = 300

DEADLINE_SLEEP_SECONDS = 0.6
DEADLINE_ROW_GROUPS = 8


# --------------------------------------------------------------------------- building bad files


@functools.cache
def valid() -> bytes:
    """A small valid snappy file with four row groups, the base that truncation and flips damage."""
    return parquet_bytes(sample_table(1000), row_group_size=250)


@functools.cache
def valid_as(compression: str) -> bytes:
    """The same rows in another codec: uncompressed, a flipped value byte decodes to another value, unnoticed;
    gzip's CRC notices any flip."""
    return parquet_bytes(sample_table(1000), row_group_size=250, compression=compression)


@functools.cache
def one_group(compression: str = "snappy") -> bytes:
    """The same rows in a single row group (the base of the damaged files test_cli once kept)."""
    return parquet_bytes(sample_table(1000), compression=compression)


def footer_span(data: bytes) -> tuple[int, int]:
    """Where the Thrift footer starts and how long it is, from the length before the closing magic."""
    (length,) = struct.unpack("<I", data[-8:-4])
    return len(data) - 8 - length, length


def in_footer(data: bytes, start: int, stop: int) -> range:
    """Offsets ``start`` to ``stop`` counted from where the footer starts."""
    return range(footer_span(data)[0] + start, footer_span(data)[0] + stop)


def random_bytes() -> bytes:
    return random.Random(7).randbytes(64 * 1024)


def random_between_magic() -> bytes:
    """Right magic at both ends, noise between: the footer length is whatever the noise says."""
    return b"PAR1" + random.Random(8).randbytes(4096) + b"PAR1"


def csv_renamed() -> bytes:
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(sample_table(200), sink)
    return bytes(sink.getvalue().to_pybytes())


def truncated(where: Callable[[int, int, int], int]) -> Callable[[], bytes]:
    """``valid()`` cut at ``where(size, footer_start, footer_length)``."""

    def build() -> bytes:
        data = valid()
        start, length = footer_span(data)
        return data[: where(len(data), start, length)]

    return build


TRUNCATIONS: list[tuple[str, Callable[[int, int, int], int]]] = [
    ("to-one-byte", lambda n, s, f: 1),
    ("to-the-leading-magic", lambda n, s, f: 4),
    ("to-twelve-bytes", lambda n, s, f: 12),
    ("inside-the-first-page", lambda n, s, f: 100),
    ("at-a-quarter", lambda n, s, f: n // 4),
    ("at-half", lambda n, s, f: n // 2),
    ("just-before-the-footer", lambda n, s, f: s - 1),
    ("inside-the-footer", lambda n, s, f: s + f // 2),
    ("before-the-footer-length", lambda n, s, f: n - 8),
    ("inside-the-footer-length", lambda n, s, f: n - 6),
    ("before-the-closing-magic", lambda n, s, f: n - 4),
    ("by-the-last-byte", lambda n, s, f: n - 1),
]


def flipped(base: Callable[[], bytes], where: Callable[[bytes], range]) -> Callable[[], bytes]:
    """``base()`` with every byte in ``where(base())`` inverted: damage with a known verdict."""

    def build() -> bytes:
        data = bytearray(base())
        for offset in where(bytes(data)):
            data[offset] ^= 0xFF
        return bytes(data)

    return build


def absurd_footer_length(length: int) -> Callable[[], bytes]:
    """``valid()`` whose little-endian footer length (before the closing PAR1) says ``length``."""

    def build() -> bytes:
        data = valid()
        return data[:-8] + struct.pack("<I", length) + b"PAR1"

    return build


def deeply_nested(depth: int = 8) -> bytes:
    type_: pa.DataType = pa.int32()
    value: object = 1
    for _ in range(depth - 1):
        type_ = pa.struct([("inner", type_)])
        value = {"inner": value}
    table = pa.table({"deep": pa.array([value, value], type_)})
    assert nesting_depth(table.schema) == depth
    return parquet_bytes(table)


@functools.cache
def thousands_of_columns(count: int = 3000) -> bytes:
    return parquet_bytes(pa.table({f"c{i}": pa.array([i % 100], pa.int8()) for i in range(count)}))


_BOMB_SCRIPT = """
import sys
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
rows, width = int(sys.argv[1]), int(sys.argv[2])
same = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int8)), pa.array(["x" * width]))
sink = pa.BufferOutputStream()
pq.write_table(pa.table({"same": same}), sink, compression="zstd", use_dictionary=False, row_group_size=rows,
               data_page_size=8 << 20, write_statistics=False)
sys.stdout.buffer.write(sink.getvalue().to_pybytes())
"""


@functools.cache
def decompression_bomb() -> bytes:
    """20 million identical strings in one row group: about 1.28 GB decoded, under 200 KB on disk.

    Written by a child process, so building it does not raise this process's peak memory.
    """
    done = subprocess.run([sys.executable, "-c", _BOMB_SCRIPT, str(BOMB_ROWS), str(BOMB_VALUE_BYTES)],
                          capture_output=True, check=True, timeout=120)
    return done.stdout


def deadline_file() -> bytes:
    return parquet_bytes(sample_table(800), row_group_size=800 // DEADLINE_ROW_GROUPS)


def required_column_with_optional_statistics() -> bytes:
    """``valid()`` with column ``id`` declared REQUIRED in the footer's schema.

    Its chunks still carry the size statistics of an OPTIONAL column (a
    definition-level histogram of two entries where REQUIRED expects one).
    In Thrift compact form the schema element holds ``25 02`` (field 3,
    repetition_type = OPTIONAL) followed by the name ``18 02 'id'``; ``25 00``
    makes it REQUIRED.
    """
    data = valid()
    start, length = footer_span(data)
    footer = data[start:start + length]
    optional_id = b"\x25\x02\x18\x02id"
    assert footer.count(optional_id) == 1, "the footer layout changed; find the schema element for 'id' anew"
    return data[:start] + footer.replace(optional_id, b"\x25\x00\x18\x02id") + data[start + length:]


def int96_with_corrupt_page_header() -> bytes:
    """A legacy INT96 timestamp column whose data page header is damaged (one byte flipped)."""
    table = pa.table({"t": pa.array(range(0, 50 * 10**9, 10**9), pa.timestamp("ns"))})
    data = bytearray(parquet_bytes(table, use_deprecated_int96_timestamps=True))
    assert pq.ParquetFile(pa.BufferReader(bytes(data))).schema.column(0).physical_type == "INT96"
    data[pq.ParquetFile(pa.BufferReader(bytes(data))).metadata.row_group(0).column(0).data_page_offset] ^= 0xFF
    return bytes(data)


def dictionary_indices_past_the_end(row_group: int, at: int, patch: bytes) -> Callable[[], bytes]:
    """A dictionary column (six values, three row groups) with bit-packed indices overwritten.

    Each data page of column ``d`` holds its definition levels (one RLE run
    of 1s, ending ``01``), the index bit width ``03`` and a bit-packed run of
    five groups of eight (``0b``): 15 bytes of 3-bit indices. Indices 6 and 7
    point past the six-entry dictionary; pyarrow decodes them unchecked.
    """

    def build() -> bytes:
        rows = 120
        table = pa.table({
            "d": pa.array([f"cat-{i % 6}" for i in range(rows)]).dictionary_encode(),
            "n": pa.array([i % 7 if i % 4 else None for i in range(rows)], pa.int8()),
        })
        data = parquet_bytes(table, compression="none", row_group_size=40)
        runs = [m.end() for m in re.finditer(re.escape(b"\x01\x03\x0b"), data)]
        assert len(runs) == 3, "the page layout changed; find the bit-packed indices anew"
        start = runs[row_group] + at
        return data[:start] + patch + data[start + len(patch):]

    return build


def footer_with_extra_field(field: bytes) -> Callable[[], bytes]:
    """``valid()`` with raw Thrift ``field`` (header and value) added at the end of its FileMetaData."""

    def build() -> bytes:
        data = valid()
        start, length = footer_span(data)
        footer = data[start:start + length]
        assert footer[-1] == 0, "a struct ends with its stop byte"
        new = footer[:-1] + field + b"\x00"
        return data[:start] + new + struct.pack("<I", len(new)) + b"PAR1"

    return build


#: An i32 field in long form whose id, 40000, does not fit Thrift's 16-bit field ids (pyarrow skips it).
LONG_FIELD_ID = bytes([0x05]) + zigzag_bytes(40000) + zigzag_bytes(1)
#: Field 100, an i32 holding 2**40 (pyarrow skips the unknown field).
I32_OVERFLOW = bytes([0x05]) + zigzag_bytes(100) + zigzag_bytes(2**40)


def one_page_file(page_header: bytes, payload: bytes, rows: int, codec: int, total_byte_size: int) -> bytes:
    """A one-column (required int64 ``x``), one-row-group, one-page file built by hand around a page header."""
    from shared.parquet import thrift
    from shared.parquet.thrift import Struct, ThriftList

    def st(*fields: tuple[int, object, int]) -> Struct:
        tree = Struct()
        for field_id, value, type_ in fields:
            tree.set(field_id, value, type_)  # type: ignore[arg-type]
        return tree

    meta = st((1, 2, thrift.I32), (2, ThriftList(thrift.I32, [0, 3]), thrift.LIST),
              (3, ThriftList(thrift.BINARY, [b"x"]), thrift.LIST), (4, codec, thrift.I32), (5, rows, thrift.I64),
              (6, len(page_header) + rows * 8, thrift.I64), (7, len(page_header) + len(payload), thrift.I64),
              (9, 4, thrift.I64))
    group = st((1, ThriftList(thrift.STRUCT, [st((2, 4, thrift.I64), (3, meta, thrift.STRUCT))]), thrift.LIST),
               (2, total_byte_size, thrift.I64), (3, rows, thrift.I64))
    schema = ThriftList(thrift.STRUCT, [st((4, b"schema", thrift.BINARY), (5, 1, thrift.I32)),
                                        st((1, 2, thrift.I32), (3, 0, thrift.I32), (4, b"x", thrift.BINARY))])
    footer = thrift.dumps(st((1, 1, thrift.I32), (2, schema, thrift.LIST), (3, rows, thrift.I64),
                             (4, ThriftList(thrift.STRUCT, [group]), thrift.LIST)))
    return b"PAR1" + page_header + payload + footer + struct.pack("<I", len(footer)) + b"PAR1"


def data_page_header(rows: int, uncompressed: int, compressed: int, extra: bytes = b"") -> bytes:
    """A v1 data page header (PLAIN values, no levels), with raw Thrift ``extra`` fields before its stop byte."""
    from shared.parquet import thrift
    from shared.parquet.thrift import Struct

    sub = Struct()
    for field_id, value in ((1, rows), (2, 0), (3, 3), (4, 3)):
        sub.set(field_id, value, thrift.I32)
    header = Struct()
    for field_id, value in ((1, 0), (2, uncompressed), (3, compressed)):
        header.set(field_id, value, thrift.I32)
    header.set(5, sub, thrift.STRUCT)
    return thrift.dumps(header)[:-1] + extra + b"\x00"


def page_header_with_long_field_id() -> bytes:
    """Ten zero int64s, uncompressed, whose page header carries field id 40000 (pyarrow skips it)."""
    payload = bytes(80)
    return one_page_file(data_page_header(10, 80, 80, LONG_FIELD_ID), payload, 10, 0, 80)


BOMB_PAGE_BYTES = 4_000_000


def understated_bomb() -> bytes:
    """One zstd page inflating to 4 MB of zeros in a row group whose footer declares 1,000 bytes."""
    payload = pa.Codec("zstd").compress(bytes(BOMB_PAGE_BYTES), asbytes=True)
    rows = BOMB_PAGE_BYTES // 8
    return one_page_file(data_page_header(rows, BOMB_PAGE_BYTES, len(payload)), payload, rows, 6, 1000)


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Bad:
    """One bad input and what refusing it must say."""

    id: str
    build: Callable[[], bytes]
    kind: str  # the error class quarantine reports
    problem: str  # a regex the one-line message must hold after "<source>: "
    env: dict[str, str] = field(default_factory=dict)  # RECOMPRESS_* settings for the case
    slow_transform: bool = False


CASES: list[Bad] = [
    Bad("random-bytes", random_bytes, "NotParquetError", NOT_PARQUET),
    Bad("random-bytes-between-magic", random_between_magic, "NotParquetError", NOT_PARQUET),
    Bad("empty", lambda: b"", "NotParquetError", NOT_PARQUET),
    Bad("csv-renamed-parquet", csv_renamed, "NotParquetError", NOT_PARQUET),
    *(Bad(f"truncated-{name}", truncated(where), "NotParquetError", NOT_PARQUET) for name, where in TRUNCATIONS),
    Bad("footer-length-4GiB", absurd_footer_length(0xFFFF_FFF0), "NotParquetError", NOT_PARQUET),
    Bad("footer-length-2GiB", absurd_footer_length(2**31 - 1), "NotParquetError", NOT_PARQUET),
    Bad("footer-length-zero", absurd_footer_length(0), "NotParquetError", NOT_PARQUET),
    Bad("footer-length-high-byte-flipped", flipped(one_group, lambda d: range(len(d) - 5, len(d) - 4)),
        "NotParquetError", NOT_PARQUET),
    Bad("footer-first-four-bytes-flipped", flipped(one_group, lambda d: in_footer(d, 0, 4)),
        "NotParquetError", NOT_PARQUET),
    Bad("footer-32-bytes-flipped", flipped(one_group, lambda d: in_footer(d, 40, 72)), "NotParquetError", NOT_PARQUET),
    Bad("closing-magic-flipped", flipped(one_group, lambda d: range(len(d) - 1, len(d))), "NotParquetError",
        NOT_PARQUET),
    Bad("first-page-header-flipped", flipped(lambda: one_group("none"), lambda d: range(4, 5)), "DamagedError",
        DAMAGED),
    Bad("nested-8-deep-limit-5", deeply_nested, "LimitError",
        r"nests 8 levels deep, over the limit of 5 \(RECOMPRESS_MAX_NESTING_DEPTH\)",
        {"RECOMPRESS_MAX_NESTING_DEPTH": "5"}),
    Bad("3000-columns-limit-2000", thousands_of_columns, "LimitError",
        r"has 3000 columns, over the limit of 2000 \(RECOMPRESS_MAX_COLUMNS\)", {"RECOMPRESS_MAX_COLUMNS": "2000"}),
    Bad("1000-rows-limit-999", valid, "LimitError",
        r"declares 1000 rows, over the limit of 999 \(RECOMPRESS_MAX_ROWS\)", {"RECOMPRESS_MAX_ROWS": "999"}),
    Bad("decompression-bomb", decompression_bomb, "LimitError",
        r"row group 0 decompresses to \d{10} bytes, over the limit of 16777216 \(RECOMPRESS_MAX_ROW_GROUP_BYTES\)",
        {"RECOMPRESS_MAX_ROW_GROUP_BYTES": BOMB_LIMIT}),
    Bad("over-max-blob-size", valid, "LimitError",
        r"is \d+ bytes, over the limit of 4096 \(RECOMPRESS_MAX_BLOB_SIZE\)", {"RECOMPRESS_MAX_BLOB_SIZE": "4KiB"}),
    Bad("over-deadline", deadline_file, "LimitError", r"took longer than 1 s \(RECOMPRESS_DEADLINE_SECONDS\)",
        {"RECOMPRESS_DEADLINE_SECONDS": "1"}, slow_transform=True),
    # Inputs on which pyarrow throws C++ exceptions, raises bare errors or decodes invalid data unchecked.
    Bad("required-column-with-optional-statistics", required_column_with_optional_statistics,
        "DamagedError", DAMAGED),
    Bad("int96-with-corrupt-page-header", int96_with_corrupt_page_header, "DamagedError",
        r"row group 0, column 't': page 1 header .+ \(check: page header\)"),
    Bad("dictionary-indices-past-the-end", dictionary_indices_past_the_end(1, 0, b"\xff" * 15),
        "DamagedError", DAMAGED),
    Bad("dictionary-indices-past-the-end-crash", dictionary_indices_past_the_end(2, 1, bytes([22, 246, 178])),
        "DamagedError", DAMAGED),
    # Thrift the writer could not write back: refused on reading, in one line, never a bare ThriftError.
    Bad("footer-field-id-beyond-16-bits", footer_with_extra_field(LONG_FIELD_ID), "NotParquetError",
        r"not a readable Parquet file \(footer is not valid Thrift: field id 40000 at offset \d+ does not fit "
        r"16 bits \(check: footer\)\)"),
    Bad("footer-i32-holding-2-to-the-40", footer_with_extra_field(I32_OVERFLOW), "NotParquetError",
        r"not a readable Parquet file \(footer is not valid Thrift: integer 1099511627776 at offset \d+ does not "
        r"fit its type i32 \(check: footer\)\)"),
    # Exact mode writes page headers back, so it must refuse one it could not write; a re-encode writes new ones.
    Bad("page-header-field-id-beyond-16-bits", page_header_with_long_field_id, "DamagedError",
        r"row group 0, column 'x': page 0 header is not valid Thrift \(field id 40000 .+\) \(check: page header\)",
        {"RECOMPRESS_MODE": "exact"}),
    Bad("bomb-with-understated-row-group-size", understated_bomb, "LimitError",
        rf"row group 0, column 'x': page 0 decompresses to {BOMB_PAGE_BYTES} bytes, over the limit of 1048576 "
        r"\(RECOMPRESS_MAX_ROW_GROUP_BYTES\)", {"RECOMPRESS_MAX_ROW_GROUP_BYTES": "1MiB", "RECOMPRESS_MODE": "exact"}),
]

@dataclass(frozen=True)
class Flip:
    """XOR ``mask`` into ``count`` bytes of ``base()`` from ``where(base)``."""

    id: str
    base: Callable[[], bytes]
    where: Callable[[bytes], int]
    mask: int = 0xFF
    count: int = 1

    def build(self) -> bytes:
        data = bytearray(self.base())
        start = self.where(bytes(data))
        for offset in range(start, start + self.count):
            data[offset] ^= self.mask
        return bytes(data)


def chunk(data: bytes, row_group: int, column: int) -> tuple[int, int, int]:
    """(chunk start, first data page, chunk end) of one column chunk."""
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(row_group).column(column)
    start = meta.dictionary_page_offset if meta.has_dictionary_page else meta.data_page_offset
    return start, meta.data_page_offset, start + meta.total_compressed_size


FLIPS: list[Flip] = [
    Flip("footer-first-byte", valid, lambda d: footer_span(d)[0]),
    Flip("footer-second-byte-low-bit", valid, lambda d: footer_span(d)[0] + 1, mask=0x01),
    Flip("footer-middle", valid, lambda d: footer_span(d)[0] + footer_span(d)[1] // 2),
    Flip("footer-eight-bytes-at-a-third", valid, lambda d: footer_span(d)[0] + footer_span(d)[1] // 3, count=8),
    Flip("footer-last-byte", valid, lambda d: len(d) - 9),
    Flip("data-page-header", valid, lambda d: chunk(d, 1, 0)[1] + 1),
    Flip("data-page-header-low-bit", valid, lambda d: chunk(d, 1, 0)[1] + 3, mask=0x01),
    Flip("snappy-page-middle", valid, lambda d: sum(chunk(d, 1, 0)[1:]) // 2),
    Flip("snappy-page-tail", valid, lambda d: chunk(d, 1, 0)[2] - 2),
    Flip("snappy-float-page", valid, lambda d: sum(chunk(d, 2, 4)[1:]) // 2),
    Flip("plain-int-values", lambda: valid_as("none"), lambda d: sum(chunk(d, 1, 0)[1:]) // 2),
    Flip("plain-float-values", lambda: valid_as("none"), lambda d: sum(chunk(d, 2, 4)[1:]) // 2, count=4),
    Flip("gzip-page-middle", lambda: valid_as("gzip"), lambda d: sum(chunk(d, 1, 0)[1:]) // 2),
    Flip("zstd-string-page-middle", lambda: valid_as("zstd"), lambda d: sum(chunk(d, 1, 2)[1:]) // 2),
]


def case(case_id: str) -> Bad:
    return next(c for c in CASES if c.id == case_id)


_IDS = [c.id for c in CASES] + [f.id for f in FLIPS]
assert len(set(_IDS)) == len(_IDS), "every case needs its own id: it names blobs and files"


def readable_rows(data: bytes) -> int | None:
    """The rows pyarrow reads from ``data``, or None when it refuses it."""
    try:
        return int(pq.read_table(pa.BufferReader(data)).num_rows)
    except (pa.ArrowException, OSError, ValueError):
        return None


def slow_transform(folder: Path) -> str:
    """Write a transform that sleeps per batch into ``folder``; return its RECOMPRESS_TRANSFORM spec.

    ``folder`` must be on ``sys.path`` (``PYTHONPATH`` for a child process) for the app to import it.
    """
    module = f"slow_batches_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(
        "import time\n\n\n"
        "def slow(batch):\n"
        f"    time.sleep({DEADLINE_SLEEP_SECONDS})\n"
        "    return batch\n"
    )
    return f"{module}:slow"


def case_env(bad: Bad, folder: Path) -> dict[str, str]:
    """The settings ``bad`` runs with; a slow transform is written into ``folder`` when it needs one."""
    return {**bad.env, "RECOMPRESS_TRANSFORM": slow_transform(folder)} if bad.slow_transform else bad.env

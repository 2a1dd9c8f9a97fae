"""Re-encode mode: decode a Parquet file with Arrow and write it again as zstd, proving every part.

Re-encode is for what only decoding can do: keep some ``columns``, run the
operator's transform, coalesce small row groups, choose encodings per column.
Each output row group is written as a complete Parquet file in memory (a
"part"), decoded again and compared with the rows it came from before
:class:`~shared.parquet.assembly.Assembler` copies its column chunks into the
sink; the footer's key-value pairs are then set to exactly the input's.

It must never let a byte reach the sink that was not proven to decode to the
input's rows, never hold more than one output row group (plus its part and a
bounded decode-ahead) in memory, and never know about storage: publishing the
sink is the caller's job, after :func:`recompress` returned.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shared import encodings, readers
from shared.budget import Ledger, Shares, cost_factor
from shared.errors import (
    DamagedError,
    NotParquetError,
    OptionError,
    PartMismatchError,
    TransformError,
    UnsupportedError,
    first_line,
)
from shared.limits import Deadline, Limits, check_footer
from shared.parquet import footer, pages, thrift
from shared.parquet.assembly import Assembler
from shared.parquet.thrift import Struct, ThriftList
from shared.proof import Outcome, check_group_rows, check_totals
from shared.report import CODEC
from shared.transform import BatchTransform

ARROW_SCHEMA_KEY = "ARROW:schema"

Progress = Callable[[int], None]


#: zstd level 1 is re-encode's default. With per-column encodings chosen first, the
#: level hardly moves the size: on the 5M-row reference table levels 1, 3, 6
#: and 9 wrote 57.85, 58.01, 57.72 and 57.68 MB, while wall time rose 1.30x,
#: 1.44x and 1.82x over level 1 (bench/results.md, `make bench`).
DEFAULT_LEVEL = 1


@dataclass(frozen=True)
class Options:
    """How one file is rewritten."""

    level: int
    row_group_size: int = 1024 * 1024
    columns: tuple[str, ...] | None = None
    transform: BatchTransform | None = None
    limits: Limits | None = None
    tune_encodings: bool = True
    #: The reader policy (see :mod:`shared.readers`): which encodings and page versions the output may use.
    readers: str = readers.INPUT
    #: Threads encoding and proving parts at once. The output's bytes never depend on it.
    workers: int = 1
    #: Bytes this file's run may hold in decoded batches, gathering rows, parts in flight and the sink's
    #: staged blocks (:mod:`shared.budget`); it also sets the output row groups' size in bytes.
    memory_budget: int = 512 * 1024**2
    #: Of the budget, what the sink holds beside the engine (a blob sink's blocks): counted as held throughout,
    #: so it leaves less room for parts in flight but never changes the row groups (the output's bytes).
    staged_bytes: int = 0


#: How long jemalloc keeps freed pages before handing them back to the OS. At 0, every part's buffers were
#: faulted in afresh: a re-encode of the bench's mixed table spent 1.25 s of system time (of 5.2 s CPU); at
#: 50 ms, 0.43 s, for 11 MB more peak RSS (513 against 502 MB); exact mode's RSS and time did not move.
DECAY_MS = 50


def release_memory_promptly() -> None:
    """Use jemalloc and hand freed memory back to the OS soon (after DECAY_MS).

    Arrow's default allocator keeps freed pages for reuse, so a process that
    recompressed one big file stays big; with jemalloc and a short decay the
    peak RSS of a run measured about 80 MB lower (bench/results.md). Process
    wide, so the CLI and the function app call it once at start-up.
    """
    with contextlib.suppress(NotImplementedError, pa.ArrowException):  # builds without jemalloc
        pool = pa.jemalloc_memory_pool()
        pa.set_memory_pool(pool)
        pa.jemalloc_set_decay_ms(DECAY_MS)


def describe(exc: BaseException) -> str:
    """The first line of an Arrow error, short enough for a one-line message."""
    return first_line(exc)


# --------------------------------------------------------------------------- writer layout


@dataclass(frozen=True)
class Layout:
    """Writer options that decide the output's Parquet schema; the same for every part of a file.

    ``compliant_nested`` and ``decimal_as_integer`` are picked so the schema
    pyarrow writes is the input's whenever some combination reproduces it
    (see :func:`layout_for`).
    """

    store_schema: bool = False
    int96: bool = False
    compliant_nested: bool = True
    decimal_as_integer: bool = False

    def writer_options(self) -> dict[str, Any]:
        return {
            "store_schema": self.store_schema,
            "use_deprecated_int96_timestamps": self.int96,
            "use_compliant_nested_type": self.compliant_nested,
            "store_decimal_as_integer": self.decimal_as_integer,
        }


def layouts(parquet: pq.ParquetFile) -> list[Layout]:
    """Every layout worth trying for a file, the writer's defaults first."""
    keep = ARROW_SCHEMA_KEY.encode() in (parquet.metadata.metadata or {})
    int96 = any(parquet.schema.column(i).physical_type == "INT96" for i in range(len(parquet.schema)))
    return [Layout(keep, int96, compliant, as_int) for compliant in (True, False) for as_int in (False, True)]


def written_schema(schema: pa.Schema, layout: Layout) -> pq.ParquetSchema:
    """The Parquet schema pyarrow writes for ``schema`` under ``layout``: an empty file's footer says it."""
    sink = pa.BufferOutputStream()
    pq.ParquetWriter(sink, schema, **layout.writer_options()).close()
    return pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema


def layout_for(parquet: pq.ParquetFile, schema: pa.Schema | None = None) -> tuple[Layout, bool]:
    """The first layout that writes the input's own Parquet schema, and whether one did.

    Without a match the defaults are returned: the output is still proven to
    decode to the same values, only its Parquet schema differs.
    """
    candidates = layouts(parquet)
    arrow = parquet.schema_arrow if schema is None else schema
    for layout in candidates:
        if written_schema(arrow, layout).equals(parquet.schema):
            return layout, True
    return candidates[0], False


# --------------------------------------------------------------------------- entry point


def recompress(
    source: Any,
    sink: Any,
    options: Options,
    *,
    name: str = "input",
    progress: Progress | None = None,
    input_footer: footer.FileMeta | None = None,
    metadata: pq.FileMetaData | None = None,
) -> Outcome:
    """Re-encode the Parquet file ``source`` into ``sink`` with zstd, proving each part before it is written.

    ``name`` only labels errors. ``progress`` is told how many rows each input
    row group held, as it is consumed. ``input_footer`` (the app's own parse)
    and ``metadata`` (pyarrow's) spare reading the footer again when the
    caller already did. Raises :class:`DamagedError` when a row group holds
    fewer rows than it declares, :class:`TransformError` when the transform
    raises, and :class:`PartMismatchError` (a VerificationError) when a part
    does not decode to its input rows.
    """
    parquet = open_parquet(source, name, metadata=metadata)
    deadline = _check_limits(parquet, options.limits, name)
    refuse_unsupported(parquet, name)
    read_options = _read_options(source, parquet, name)
    if read_options:
        parquet = open_parquet(source, name, metadata=parquet.metadata, **read_options)
    columns = _select_columns(parquet.schema_arrow, options.columns, name)
    changed = columns is not None or options.transform is not None
    layout, matched = layout_for(parquet, _output_schema(parquet.schema_arrow, columns))
    declared = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    assembler = Assembler(sink)
    if input_footer is None:
        input_footer = footer.read_footer(_random_access(source), name).meta
    ledger = Ledger(Shares.of(options.memory_budget))
    ledger.take("staged", options.staged_bytes)
    input_bytes = decode_bytes(input_footer, columns)
    with ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="reencode") as pool:
        writer = _PartWriter(assembler, options, layout,
                             readers.allowed(options.readers, _input_encodings(input_footer)),
                             read_options, name, prove_values=options.transform is None,
                             page_version=readers.page_version(options.readers,
                                                               _page_versions(input_footer, source, name)),
                             input_schema=parquet.schema, pool=pool, ledger=ledger,
                             largest_input=max(input_bytes, default=0))
        try:
            rows_read = _feed(writer, parquet, columns, declared, options, deadline, progress, name, input_bytes)
            writer.close()
        finally:
            writer.cancel()
    # A schema proven equal to the input's is written as the input's own elements, byte for byte: pyarrow
    # would add what the input's writer left out (a root repetition, a STRING next to UTF8).
    same_schema = input_footer.tree.get_list(footer.FMD_SCHEMA) if matched and not changed else None
    summary = assembler.finish(key_value_list=_key_values(input_footer, writer.arrow_schema_value if changed else None),
                               schema=same_schema)
    _account(name, sum(declared), rows_read, writer.rows_written, int(summary.num_rows),
              transformed=options.transform is not None)
    return Outcome("reencode", "full", sum(declared), rows_read, int(summary.num_rows), int(summary.num_row_groups),
                   memory_peak=ledger.peak, memory_budget=options.memory_budget)


def _feed(writer: _PartWriter, parquet: pq.ParquetFile, columns: list[str] | None, declared: list[int],
          options: Options, deadline: Deadline | None, progress: Progress | None, name: str,
          input_bytes: list[int]) -> int:
    """Hand every decoded (and transformed) row to the writer, in order; return the rows read."""
    rows_read = 0
    for table in _checked_groups(parquet, columns, declared, name, writer.ledger, input_bytes):
        if deadline is not None:
            deadline.check()
        rows_read += table.num_rows
        if progress is not None and table.num_rows:
            progress(table.num_rows)
        for piece in _transformed(table, options.transform, name):
            writer.add(piece)
    if writer.schema is None:
        writer.start(_empty_schema(_output_schema(parquet.schema_arrow, columns), options.transform, name))
    return rows_read


def _account(name: str, declared: int, read: int, written: int, in_footer: int, *, transformed: bool) -> None:
    """Rows declared, read, written and in the output footer must agree; a transform may change the count."""
    if in_footer != written:
        check_totals(name, declared, read, read)
        raise PartMismatchError(name, f"appended {written} rows but the output footer holds {in_footer} "
                                      "(check: output footer rows)")
    check_totals(name, declared, read, read if transformed else written)


def open_parquet(source: Any, name: str, **options: Any) -> pq.ParquetFile:
    """Open the footer; any failure to do so means the bytes are not usable Parquet."""
    if isinstance(source, bytes | bytearray | memoryview):
        source = pa.BufferReader(source)
    try:
        return pq.ParquetFile(source, pre_buffer=True, **options)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NotParquetError(name, f"not a readable Parquet file ({describe(exc)})") from exc


def _check_limits(parquet: pq.ParquetFile, limits: Limits | None, name: str) -> Deadline | None:
    """Limits come before any decoding, the INT96 scan included."""
    if limits is None:
        return None
    check_footer(parquet, limits, name)
    return Deadline(limits.deadline_seconds, name)


def refuse_unsupported(parquet: pq.ParquetFile, name: str) -> None:
    """Refuse columns Arrow cannot write back as they were, rather than change them silently.

    Arrow reads a Parquet INTERVAL as plain 12-byte binary, and GEOMETRY /
    GEOGRAPHY as binary (without geoarrow's extension types registered), and
    writes neither annotation back. Exact mode keeps them.
    """
    if parquet.metadata.num_columns == 0 and any(
            parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)):
        raise UnsupportedError(name, "has rows but no columns, which Arrow writes as no rows (use exact mode)")
    twice = duplicate_names(parquet.schema_arrow)
    if twice:
        raise UnsupportedError(name, f"has more than one column named {twice!r}, which re-encode cannot tell "
                                     "apart (use exact mode)")
    schema = parquet.schema
    for index in range(len(schema)):
        column = schema.column(index)
        if column.converted_type == "INTERVAL":
            raise UnsupportedError(name, f"column {column.path!r} is a Parquet INTERVAL, which re-encode cannot "
                                         "rewrite without losing its type (use exact mode)")
        logical = str(column.logical_type.type)
        if logical in ("GEOMETRY", "GEOGRAPHY"):
            raise UnsupportedError(name, f"column {column.path!r} has the {logical} logical type, which re-encode "
                                         "cannot rewrite without losing it (use exact mode)")


def duplicate_names(schema: pa.Schema) -> str | None:
    """The first top-level name that occurs twice (valid Parquet; Arrow selects columns by name)."""
    names = schema.names
    return next((n for i, n in enumerate(names) if n in names[:i]), None)


#: The microsecond range a nanosecond timestamp can hold (about 1677 to 2262).
_NS_RANGE_US = (-(2**63) // 1000 + 1, (2**63 - 1) // 1000)


def _read_options(source: Any, parquet: pq.ParquetFile, name: str) -> dict[str, Any]:
    """How to open the file so INT96 values read without loss; nothing for files without INT96."""
    schema = parquet.schema
    paths = [schema.column(i).path for i in range(len(schema)) if schema.column(i).physical_type == "INT96"]
    if not paths:
        return {}
    return {"coerce_int96_timestamp_unit": int96_unit(source, parquet, paths, name)}


def int96_unit(source: Any, parquet: pq.ParquetFile, paths: list[str], name: str) -> str:
    """Pick the unit that reads a file's INT96 timestamps without loss.

    Arrow converts INT96 to one unit for the whole file. Nanoseconds keep
    Impala's sub-microsecond digits but wrap around outside 1677-2262, where
    warehouses keep their 0001-01-01 and 9999-12-31 sentinels; microseconds
    (Spark's precision) hold every year. Only the INT96 columns are scanned.
    Auto mode sends INT96 files to exact mode; this is for re-encode on request.
    """
    columns = sorted({path.split(".")[0] for path in paths})
    # Reuse the footer already read: on a blob, every open would fetch it again.
    as_us = open_parquet(source, name, coerce_int96_timestamp_unit="us", metadata=parquet.metadata)
    as_ns = open_parquet(source, name, coerce_int96_timestamp_unit="ns", metadata=parquet.metadata)
    out_of_range = sub_micro = False
    for index in range(parquet.metadata.num_row_groups):
        for column in columns:
            us = _int64s(_read_group(as_us, index, [column], name).column(0))
            if us is None:
                continue  # nested: leave it to the nanosecond default below
            in_range = (us >= _NS_RANGE_US[0]) & (us <= _NS_RANGE_US[1])
            out_of_range |= bool((~in_range).any())
            ns = _int64s(_read_group(as_ns, index, [column], name).column(0))
            sub_micro |= ns is not None and bool(((ns[in_range] % 1000) != 0).any())
    if out_of_range and sub_micro:
        raise UnsupportedError(name, "holds INT96 timestamps both outside 1677-2262 and with nanosecond digits; "
                                     "Arrow can keep one or the other, not both (use exact mode)")
    return "us" if out_of_range else "ns"


def _read_group(parquet: pq.ParquetFile, index: int, columns: list[str], name: str) -> pa.Table:
    try:
        return parquet.read_row_group(index, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NotParquetError(name, f"row group {index} is unreadable ({describe(exc)})") from exc


def _int64s(column: pa.ChunkedArray) -> Any:
    """The non-null values of a flat timestamp column as int64 numbers, or None for other shapes."""
    if not pa.types.is_timestamp(column.type):
        return None
    return column.drop_null().cast(pa.int64()).to_numpy()


#: Parquet's Encoding enum, by the names pyarrow's writer options use.
ENCODING_NAMES = {0: "PLAIN", 2: "PLAIN_DICTIONARY", 3: "RLE", 4: "BIT_PACKED", 5: "DELTA_BINARY_PACKED",
                  6: "DELTA_LENGTH_BYTE_ARRAY", 7: "DELTA_BYTE_ARRAY", 8: "RLE_DICTIONARY", 9: "BYTE_STREAM_SPLIT"}


def _input_encodings(meta: footer.FileMeta) -> dict[str, frozenset[str]]:
    """Each leaf column's encodings as the input's footer lists them, over all row groups.

    The ``input`` reader policy lets the output use these, plus PLAIN and
    dictionary, so a reader that could read the input can read the output.
    Read from the app's own footer parse: pyarrow's ``RowGroupMetaData.column``
    aborts the process on some crafted footers instead of raising.
    """
    allowed: dict[str, set[str]] = {}
    for group in meta.row_groups:
        for chunk in group.columns:
            column = chunk.meta_data
            if column is not None:
                found = allowed.setdefault(".".join(column.path_in_schema), set())
                found.update(ENCODING_NAMES.get(code, str(code)) for code in column.encodings)
    return {path: frozenset(found) for path, found in allowed.items()}


#: The writer's ``data_page_version`` each data page type is written by.
_PAGE_VERSIONS = {pages.DATA_PAGE: readers.V1, pages.DATA_PAGE_V2: readers.V2}
#: Bytes read to find one data page header.
_HEADER_PEEK = 64 * 1024


def _page_versions(meta: footer.FileMeta, source: Any, name: str) -> frozenset[str]:
    """The data page version the input used, from the header of its first data page.

    Not from ColumnMetaData.encoding_stats: pyarrow records its v2 pages there
    as DATA_PAGE. Writers choose the version for a whole file (pyarrow's
    ``data_page_version``, parquet-mr's ``parquet.writer.version``), so one
    header, a few bytes however large the file, says it. Nothing known (no
    rows, an unreadable header) means v1 is written, which every reader reads.
    """
    for group in meta.row_groups:
        for chunk in group.columns:
            column = chunk.meta_data
            if column is not None and column.num_values:
                return frozenset(_first_page_version(source, column, name))
    return frozenset()


def _first_page_version(source: Any, column: footer.ColumnMeta, name: str) -> set[str]:
    """The version of a chunk's first data page, read from its header; empty when it cannot be read."""
    try:
        offset, end = column.data_page_offset, column.chunk_start() + column.total_compressed_size
    except (thrift.ThriftError, ValueError):
        return set()
    return _page_version_at(source, offset, end, name)


def _page_version_at(source: Any, offset: int, end: int, name: str) -> set[str]:
    """The version of the data page whose header is at ``offset`` (its chunk ends at ``end``); empty if unreadable."""
    try:
        reader = _random_access(source)
        length = max(0, min(_HEADER_PEEK, end - offset, int(reader.size()) - offset))
        header, _ = pages.parse_header(footer.read_exactly(reader, offset, length, name, "a page header"), 0, 0)
    except (pages.PageError, thrift.ThriftError, ValueError, OSError, pa.ArrowException, DamagedError,
            NotParquetError):
        return set()
    page_type = header.get_int(pages.PH_TYPE)  # DATA_PAGE is 0: no `or` default here
    version = _PAGE_VERSIONS.get(page_type) if page_type is not None else None
    return {version} if version else set()


def policy_problem(part: pa.Buffer, allowed: readers.Allowed, page_version: str) -> str | None:
    """What in a written part the reader policy forbids, or None: the writer's choices, checked, not trusted.

    The footer lists every encoding each chunk used (the writer may fall back
    from dictionary to PLAIN, or write RLE booleans in v2 pages), and each
    chunk's first data page header says its version. The part is pyarrow's
    own output, never a crafted file, so pyarrow's footer parse (C++, a few
    microseconds a chunk) reads it; the app's Thrift reader took 1.7 ms a
    chunk, most of a 500-column part's time.
    """
    source = pa.BufferReader(part)
    meta = pq.ParquetFile(source).metadata
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for index in range(row_group.num_columns):
            problem = _chunk_problem(source, row_group.column(index), allowed, page_version)
            if problem is not None:
                return problem
    return None


def _chunk_problem(source: pa.BufferReader, column: pq.ColumnChunkMetaData, allowed: readers.Allowed,
                   page_version: str) -> str | None:
    """What the policy forbids in one chunk of a part: an encoding it lists, or its first data page's version."""
    path = column.path_in_schema
    extra = sorted(set(column.encodings) - allowed.written_ok(path))
    if extra:
        return f"column {path!r} was written with {', '.join(extra)}"
    if not column.num_values:
        return None
    start = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
    versions = _page_version_at(source, column.data_page_offset, start + column.total_compressed_size, "part")
    if versions != {page_version}:
        return f"column {path!r} has data pages of version {sorted(versions) or 'unknown'}, expected {page_version}"
    return None


def _random_access(source: Any) -> Any:
    """What the footer reader needs (``size`` and ``read_at``) from any source pyarrow opens."""
    return pa.BufferReader(source) if isinstance(source, bytes | bytearray | memoryview | pa.Buffer) else source


def _key_values(input_footer: footer.FileMeta, arrow_schema: str | None) -> ThriftList | None:
    """The output footer's key-value list: the input's own, entry for entry and byte for byte.

    Copied as Thrift, never through text, so values that are not UTF-8 or not
    strings (old fastparquet wrote integers) survive. When columns or a
    transform changed the schema, the input's ARROW:schema (if it had one) no
    longer describes the output, so only its value is replaced by the parts'.
    """
    found = input_footer.tree.get_list(footer.FMD_KEY_VALUES)
    if found is None:
        return None
    pairs = copy.deepcopy(found)
    if arrow_schema is not None:
        for entry in pairs.items:
            if isinstance(entry, Struct) and entry.get_binary(footer.KV_KEY) == ARROW_SCHEMA_KEY.encode():
                entry.set(footer.KV_VALUE, arrow_schema.encode(), thrift.BINARY)
    return pairs


def _select_columns(schema: pa.Schema, wanted: tuple[str, ...] | None, name: str) -> list[str] | None:
    if wanted is None:
        return None
    missing = [c for c in wanted if schema.get_field_index(c) < 0]
    if missing:
        have = ", ".join(schema.names[:20]) + (", ..." if len(schema.names) > 20 else "")
        raise OptionError(name, f"has no column {', '.join(map(repr, missing))} (it has: {have})")
    return list(wanted)


def _output_schema(schema: pa.Schema, columns: list[str] | None) -> pa.Schema:
    if columns is None:
        return schema
    return pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)


# --------------------------------------------------------------------------- decoding, with row accounting

#: Decoded size at which an output row group ends even short of its row count.
ROW_GROUP_BYTES = 128 * 1024**2
#: Rows per decoded batch, at most; fewer for wide rows, so a batch holds about BATCH_BYTES.
BATCH_ROWS = 65_536
BATCH_BYTES = 4 * 1024**2
_DONE = object()


def group_bytes(memory_budget: int, input_group: int = 0) -> int:
    """Decoded bytes at which an output row group ends short of its row count.

    A function of the budget and the input's largest row group (what
    decoding it holds, :func:`decode_bytes`) only, never of the worker count
    or the destination, so neither are the bytes written.
    """
    return min(ROW_GROUP_BYTES, Shares.of(memory_budget).group_bytes(input_group))


@dataclass(frozen=True)
class _GroupEnd:
    """Sent by the decoder after each input row group, with the rows it decoded."""

    index: int
    rows: int


def decode_bytes(meta: footer.FileMeta, columns: list[str] | None = None) -> list[int]:
    """What decoding each input row group holds, from its footer: its stored bytes and their decompressed size.

    ``pre_buffer`` holds the group's stored column chunks, and each column's
    reader its current page decompressed; writers cut pages at about 1 MB, so
    a 100,000-row group of 200 columns is one page per column, all of them
    decompressed at once: decoding the bench's wide table alone took 210 MB
    of RSS for groups of 60 MB stored, 67 MB decompressed. From the app's own
    footer parse (pyarrow's column metadata aborts on some crafted footers);
    a negative size, which the decoder refuses anyway, counts as nothing.
    """
    wanted = None if columns is None else {name.encode() for name in columns}
    sizes = []
    for group in meta.row_groups:
        total = 0
        for chunk in group.columns:
            column = chunk.meta_data
            if column is not None and (wanted is None or _top_name(column) in wanted):
                total += _stored_and_plain(column)
        sizes.append(total)
    return sizes


def _stored_and_plain(column: footer.ColumnMeta) -> int:
    """A chunk's stored plus decompressed size; nothing when the footer lacks either (pyarrow refuses it)."""
    try:
        return max(column.total_compressed_size, 0) + max(column.total_uncompressed_size, 0)
    except thrift.ThriftError:
        return 0


def _top_name(column: footer.ColumnMeta) -> bytes:
    path = column.tree.get_list(footer.CM_PATH)
    first = path.items[0] if path is not None and path.items else b""
    return first if isinstance(first, bytes) else b""


def _checked_groups(parquet: pq.ParquetFile, columns: list[str] | None, declared: list[int],
                    name: str, ledger: Ledger, input_bytes: list[int]) -> Iterator[pa.Table]:
    """The file's rows in order, each input row group's decoded rows checked against its declared count."""
    seen = 0
    for item in _decoded(parquet, columns, name, ledger, input_bytes):
        if isinstance(item, _GroupEnd):
            check_group_rows(name, item.index, declared[item.index], item.rows)
            seen += 1
            continue
        yield item
    if seen != len(declared):  # the decoder stops early only by raising, so this is our bug
        raise DamagedError(name, f"decoded {seen} of {len(declared)} row groups (check: row groups read)")


def _decoded(parquet: pq.ParquetFile, columns: list[str] | None, name: str,
             ledger: Ledger, input_bytes: list[int]) -> Iterator[pa.Table | _GroupEnd]:
    """Yield the file's rows in order, in batches decoded by a helper thread.

    Decoding and encoding both release the GIL, so the decoder runs ahead of
    the encoder, by at most the budget's look-ahead share in bytes (a wide
    row's batches count for what they hold, not for their number). Row groups
    are read one at a time (``pre_buffer`` then fetches one group's ranges,
    from a blob as from a file, on this thread, ahead of the encoder), and
    what decoding the group holds (:func:`decode_bytes`) counts as "input"
    while it is decoded.
    """
    if parquet.metadata.num_row_groups == 0:
        return
    batch_rows = _batch_rows(parquet.metadata)
    ahead: queue.SimpleQueue[object] = queue.SimpleQueue()
    limit = ledger.shares.ahead

    def put(batch: pa.RecordBatch) -> bool:
        size = batch.nbytes
        if not ledger.wait_for_room("ahead", size, limit):
            return False
        ledger.take("ahead", size)
        ahead.put(batch)
        return True

    def decode() -> None:
        try:
            for index in range(parquet.metadata.num_row_groups):
                rows = 0
                ledger.take("input", input_bytes[index])
                try:
                    for batch in _group_batches(parquet, index, columns, name, batch_rows):
                        rows += batch.num_rows
                        if not put(batch):
                            return
                finally:
                    ledger.give_back("input", input_bytes[index])
                ahead.put(_GroupEnd(index, rows))
            ahead.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            ahead.put(exc)

    worker = threading.Thread(target=decode, name="decode", daemon=True)
    worker.start()
    try:
        while (item := ahead.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, _GroupEnd):
                yield item
                continue
            assert isinstance(item, pa.RecordBatch)
            ledger.give_back("ahead", item.nbytes)
            yield pa.Table.from_batches([item])
    finally:
        ledger.stop()
        worker.join()


def _check_dictionaries(batch: pa.RecordBatch) -> None:
    """Dictionary indices come straight from the file; one past the end would crash the writer.

    Only dictionary columns are checked in full: other columns are copied as
    they are (invalid UTF-8 included), which is what lossless means.
    """
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            column.validate(full=True)


def _batch_rows(metadata: pq.FileMetaData) -> int:
    """Rows per batch so a batch holds about BATCH_BYTES: wide rows get short batches."""
    if metadata.num_rows == 0 or metadata.num_row_groups == 0:
        return BATCH_ROWS
    group = metadata.row_group(0)
    per_row = max(group.total_byte_size, 1) / max(group.num_rows, 1)
    return int(min(BATCH_ROWS, max(1024, BATCH_BYTES // per_row)))


def _group_batches(parquet: pq.ParquetFile, index: int, columns: list[str] | None,
                   name: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[index], columns=columns,
                                          use_threads=True):
            _check_dictionaries(batch)
            yield batch
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DamagedError(name, f"row group {index} is unreadable ({describe(exc)}) (check: decode)") from exc


# --------------------------------------------------------------------------- transform


def _transformed(table: pa.Table, transform: BatchTransform | None, name: str) -> Iterator[pa.Table]:
    if transform is None:
        yield table
        return
    for batch in table.to_batches():
        yield _apply(transform, batch, name)


def _apply(transform: BatchTransform, batch: pa.RecordBatch, name: str) -> pa.Table:
    """Run the operator's code; whatever it raises is theirs to fix, not the input's."""
    try:
        result = transform(batch)
    except Exception as exc:
        raise TransformError(name, f"transform failed: {type(exc).__name__}: {describe(exc)}") from exc
    return pa.Table.from_batches([result]) if isinstance(result, pa.RecordBatch) else result


def _empty_schema(schema: pa.Schema, transform: BatchTransform | None, name: str) -> pa.Schema:
    """The output schema of a file with no rows: ask the transform, if any, with an empty batch."""
    if transform is None:
        return schema
    empty_batch = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)
    return _apply(transform, empty_batch, name).schema


# --------------------------------------------------------------------------- proven parts


@dataclass
class _InFlight:
    """A part on the pool: its future, the rows it holds and what the ledger charged for it."""

    future: Future[pa.Buffer]
    rows: int
    cost: int


@dataclass
class _PartWriter:
    """Gathers decoded rows into output row groups; each is encoded and proven on the pool, then appended in order.

    ``ParquetWriter.write_table`` ends a row group on every call, so pieces are
    held until a full group is ready: ``row_group_size`` rows, or the budget's
    row-group share in bytes, whichever comes first (never the worker count,
    so the bytes written do not depend on it). Every part uses the same Arrow
    schema, layout and encoding plan, decided from the first group, so the
    stitched file has one Parquet schema. Parts are appended in the order
    their rows came, whatever order the threads finish in.
    """

    assembler: Any
    options: Options
    layout: Layout
    allowed: readers.Allowed
    read_options: dict[str, Any]
    name: str
    prove_values: bool
    page_version: str = readers.V1
    input_schema: pq.ParquetSchema | None = None
    pool: ThreadPoolExecutor | None = None
    ledger: Ledger = field(default_factory=lambda: Ledger(Shares.of(Options.memory_budget)))
    #: What decoding the input's largest row group holds (:func:`decode_bytes`): groups are sized around it.
    largest_input: int = 0
    schema: pa.Schema | None = None
    plan: encodings.Plan | None = None
    rows_written: int = 0
    parts: int = 0
    appended: int = 0
    arrow_schema_value: str | None = None
    _pending: list[pa.Table] = field(default_factory=list)
    _pending_rows: int = 0
    _pending_bytes: int = 0
    _in_flight: deque[_InFlight] = field(default_factory=deque)

    def start(self, schema: pa.Schema) -> None:
        self.schema = schema

    @property
    def group_bytes(self) -> int:
        """Decoded bytes at which an output row group ends even short of its row count."""
        return group_bytes(self.options.memory_budget, self.largest_input)

    def add(self, table: pa.Table) -> None:
        if self.schema is None:
            self.start(table.schema)
        assert self.schema is not None
        if table.schema != self.schema:
            if not table.schema.equals(self.schema, check_metadata=False):
                raise TransformError(self.name, f"transform changed the schema between batches: {table.schema}")
            table = table.replace_schema_metadata(self.schema.metadata)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._set_pending_bytes(self._pending_bytes + table.nbytes)
        while self._pending_rows >= self.options.row_group_size:
            self._flush(self.options.row_group_size)
        if self._pending_bytes >= self.group_bytes:
            # Wide or string-heavy rows: end the group by size, or it would hold the whole file.
            self._flush(self._pending_rows)

    def close(self) -> None:
        """Write what is left and wait for every part; a file with no rows still gets one part (the schema)."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self.parts == 0:
            assert self.schema is not None
            self._submit(encodings.empty(self.schema), rows=0)
        while self._in_flight:
            self._append_oldest()

    def cancel(self) -> None:
        """Drop parts not yet started (after a failure; harmless after :meth:`close`)."""
        while self._in_flight:
            self._in_flight.popleft().future.cancel()

    def _set_pending_bytes(self, count: int) -> None:
        self.ledger.take("pending", count - self._pending_bytes)
        self._pending_bytes = count

    def _flush(self, rows: int) -> None:
        combined = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
        head, rest = combined.slice(0, rows), combined.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        self._set_pending_bytes(rest.nbytes if rest.num_rows else 0)
        self._submit(head, rows)

    def _submit(self, table: pa.Table, rows: int) -> None:
        """Encode and prove a part on the pool, once the budget and the worker count leave room for it."""
        if self.plan is None:
            self.plan = self._choose_plan(table)
        shares = self.ledger.shares
        cost = shares.part_cost(table.nbytes, cost_factor(table.schema))
        room = (shares.total - shares.ahead - self.group_bytes - self.ledger.stage("staged")
                - self.ledger.stage("input"))
        while self._in_flight and (len(self._in_flight) >= max(1, self.options.workers)
                                   or self.ledger.stage("parts") + cost > room):
            self._append_oldest()
        self.ledger.take("parts", cost)
        assert self.pool is not None, "recompress gives every writer its pool"
        future = self.pool.submit(self._make_part, table, self.parts, self.plan)
        self._in_flight.append(_InFlight(future, rows, cost))
        self.parts += 1

    def _make_part(self, table: pa.Table, index: int, plan: encodings.Plan) -> pa.Buffer:
        """Encode, prove and check one part against the reader policy (on a pool thread)."""
        part = encode_part(table, self.options.level, self.layout, plan, self.page_version)
        prove_part(part, table, self.read_options, self.prove_values, index, self.name)
        self._check_policy(part, index)
        return part

    def _append_oldest(self) -> None:
        """Wait for the oldest part and copy it into the output; its error, if any, is raised here."""
        oldest = self._in_flight.popleft()
        try:
            part = oldest.future.result()
            if self.appended == 0:
                self._check_first(part)
            self.assembler.append_part(part)
        finally:
            self.ledger.give_back("parts", oldest.cost)
        self.rows_written += oldest.rows
        self.appended += 1

    def _check_first(self, part: pa.Buffer) -> None:
        """What only the first part needs: no annotation the input lacked, and the Arrow schema it carries."""
        self.arrow_schema_value = _arrow_schema_value(part)
        if self.input_schema is None:
            return
        written = pq.ParquetFile(pa.BufferReader(part)).schema
        problem = readers.new_annotation(self.input_schema, written)
        if problem is not None:
            raise UnsupportedError(self.name, f"{problem}; a reader of the input might not read it "
                                              "(use exact mode)")

    def _check_policy(self, part: pa.Buffer, index: int) -> None:
        """Refuse a part whose encodings or page version the reader policy forbids.

        A forbidden encoding or page version is the writer doing what it was
        not told, so it fails as a proof would (auto then falls back to exact).
        """
        problem = policy_problem(part, self.allowed, self.page_version)
        if problem is not None:
            raise PartMismatchError(self.name, f"output row group {index} breaks the reader policy "
                                               f"{self.options.readers!r}: {problem} (check: reader policy)")

    def _choose_plan(self, sample: pa.Table) -> encodings.Plan:
        """Encodings from the first output row group, under the reader policy; then fixed for the file."""
        if not self.options.tune_encodings or sample.num_rows == 0:
            return encodings.Plan()
        return encodings.choose(sample, self.options.level, int96=self.layout.int96, allowed=self.allowed,
                                page_version=self.page_version)


def part_options(level: int, layout: Layout, plan: encodings.Plan, page_version: str = readers.V1) -> dict[str, Any]:
    """The ``ParquetWriter`` options of every part of a file: one shape, decided once, whatever the part."""
    return {"compression": CODEC, "compression_level": level, "data_page_version": page_version,
            "write_statistics": True, **layout.writer_options(), **plan.writer_options()}


def encode_part(table: pa.Table, level: int, layout: Layout, plan: encodings.Plan,
                page_version: str = readers.V1) -> pa.Buffer:
    """One output row group as a complete Parquet file in memory (no row group at all for no rows)."""
    stream = pa.BufferOutputStream()
    writer = pq.ParquetWriter(stream, table.schema, **part_options(level, layout, plan, page_version))
    try:
        if table.num_rows:
            writer.write_table(table, row_group_size=table.num_rows)
    finally:
        writer.close()
    return stream.getvalue()


def _arrow_schema_value(part: pa.Buffer) -> str | None:
    value = (pq.ParquetFile(pa.BufferReader(part)).metadata.metadata or {}).get(ARROW_SCHEMA_KEY.encode())
    return None if value is None else value.decode("utf-8", "surrogateescape")


def prove_part(part: pa.Buffer, expected: pa.Table, read_options: dict[str, Any], values: bool,
               index: int, name: str) -> None:
    """Decode a part and compare it with the rows it came from: row count always; types and values unless asked not to.

    Values are compared bitwise: floats as same-width integers (so NaN
    payloads and -0.0 count), dictionaries by the values they stand for,
    nested values through their offsets and validity. The part is decoded a
    batch at a time, so the proof holds one batch of decoded rows, not a
    second copy of the whole row group.
    """
    try:
        parquet = pq.ParquetFile(pa.BufferReader(part), **read_options)
        if parquet.metadata.num_rows != expected.num_rows:  # said first: a missing row shifts every value after it
            raise PartMismatchError(name, f"output row group {index} decodes to {parquet.metadata.num_rows} rows, "
                                          f"expected {expected.num_rows} (check: part rows)")
        if values and _fields(parquet.schema_arrow) != _fields(expected.schema):
            raise PartMismatchError(name, f"output row group {index} decodes with schema "
                                          f"{_fields(parquet.schema_arrow)}, expected {_fields(expected.schema)} "
                                          "(check: part types)")
        offset = 0
        for batch in parquet.iter_batches(batch_size=_proof_batch_rows(expected), use_threads=False):
            if values:
                _compare_batch(batch, expected.slice(offset, batch.num_rows), index, name)
            offset += batch.num_rows
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise PartMismatchError(name, f"output row group {index} does not decode ({describe(exc)}) "
                                      "(check: part decodes)") from exc
    if offset != expected.num_rows:
        raise PartMismatchError(name, f"output row group {index} decodes to {offset} rows, "
                                      f"expected {expected.num_rows} (check: part rows)")


#: Decoded bytes per proof batch. Each batch costs a call per column to compare; on the bench's wide table
#: (200 columns) proving a 14,000-row part took 0.108 s of CPU in 4 MiB batches and 0.083 s in 16 MiB ones,
#: of which decoding alone 0.065 s. A part's cost in the budget (budget.FLAT_COST) covers a batch this size.
PROOF_BATCH_BYTES = 16 * 1024**2


def _proof_batch_rows(expected: pa.Table) -> int:
    """Rows per proof batch, so one holds about PROOF_BATCH_BYTES of decoded values."""
    per_row = expected.nbytes / max(expected.num_rows, 1)
    return int(max(1024, PROOF_BATCH_BYTES // max(per_row, 1)))


def _compare_batch(got: pa.RecordBatch, want: pa.Table, index: int, name: str) -> None:
    if got.num_rows != want.num_rows:
        raise PartMismatchError(name, f"output row group {index} decodes to more rows than it was given "
                                      "(check: part rows)")
    for position, column in enumerate(want.column_names):
        if not same_values(pa.chunked_array([got.column(position)]), want.column(position)):
            raise PartMismatchError(name, f"column {column!r} of output row group {index} decodes to other values "
                                          "than the input's (check: part values)")


def _fields(schema: pa.Schema) -> list[tuple[str, str, bool, dict[bytes, bytes] | None]]:
    """Names, types (nested field names included, which ``DataType ==`` ignores), nullability, metadata."""
    return [(f.name, str(f.type), f.nullable, f.metadata) for f in schema]


def same_values(got: pa.ChunkedArray, want: pa.ChunkedArray) -> bool:
    """Bitwise equality of two columns of the same type, whatever their chunking."""
    if got.type != want.type or len(got) != len(want):
        return False
    left, right = _canonical(_combined(got)), _canonical(_combined(want))
    return bool(left.equals(right))


def _combined(column: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_dictionary(column.type):  # chunks may each have their own dictionary
        column = column.cast(column.type.value_type)
    if column.num_chunks == 0:
        return pa.array([], column.type)
    return column.combine_chunks()


_FLOAT_VIEWS = {16: pa.int16(), 32: pa.int32(), 64: pa.int64()}


def _canonical(array: pa.Array) -> pa.Array:
    """The same values in a form whose ``equals`` is bitwise: floats as ints, dictionaries decoded."""
    type_ = array.type
    if pa.types.is_floating(type_):
        return array.view(_FLOAT_VIEWS[type_.bit_width])
    if pa.types.is_dictionary(type_):
        return _canonical(array.cast(type_.value_type))
    if isinstance(type_, pa.ExtensionType):
        return _canonical(array.storage)
    if not _needs_canonical(type_):
        return array
    mask = array.is_null()
    if pa.types.is_struct(type_):
        children = [_canonical(child) for child in array.flatten()]
        return pa.StructArray.from_arrays(children, names=[type_.field(i).name for i in range(type_.num_fields)],
                                          mask=mask)
    if pa.types.is_map(type_):  # as the list of key/value structs it is
        entries = pa.struct([type_.key_field, type_.item_field])
        return _canonical_list(array.cast(pa.list_(pa.field("entries", entries, nullable=False))), mask)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
        return _canonical_list(array, mask)
    return array  # other nested shapes: plain equality (strict on NaN, which can only fail safe)


def _canonical_list(array: pa.Array, mask: pa.Array) -> pa.Array:
    """A list array rebuilt from its logical contents, so offsets of null slots do not matter."""
    lengths = array.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int64())
    values = _canonical(array.flatten())
    return pa.LargeListArray.from_arrays(offsets, values, mask=mask)


def _needs_canonical(type_: pa.DataType) -> bool:
    if pa.types.is_floating(type_) or pa.types.is_dictionary(type_) or isinstance(type_, pa.ExtensionType):
        return True
    return any(_needs_canonical(type_.field(i).type) for i in range(type_.num_fields))

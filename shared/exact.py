"""Exact mode: recompress a Parquet file page by page with zstd, keeping everything else as it was.

Each page's payload is decompressed and compressed again with zstd; the page
header gets its new size (and CRC, where it had one) and every other field,
known or not, is kept. Encodings, dictionaries, statistics, the schema and the
footer's key-values stay byte for byte, so the output reads back exactly as
the input. Data page v2 keeps its levels uncompressed; a v2 page whose values
were stored uncompressed (``is_compressed=false``) gets them compressed like any
other page, and the flag set to true: the file's point is to be smaller.

This module never decodes a value except in the ``full`` proof, and nothing
it writes may be used before :func:`recompress` returns: the proof runs as the
output is written and raises on any mismatch.

Memory is bounded, whatever the file's size, by the stored bytes read ahead
(:data:`READ_AHEAD_BYTES`, or one column chunk when that is bigger) and their
rewrites waiting to be written, plus, for ``verify="full"``, the rewritten chunks
of a few top-level columns of one row group (:data:`DECODES_BEHIND` + 1 sets of
about :data:`DECODE_UNIT_BYTES`, or one whole top-level column when that is
bigger), each decoded from memory as a small Parquet file of its own.

Default level, measured (this 2-core machine, shared, load ~2; not in the tests): the bench's
"mixed" input (bench/datagen.py: 5,000,000 rows of ids, timestamps, doubles, small ints, low- and
high-cardinality strings, booleans, a nullable column; 115.7 MB as snappy in 1M-row groups),
``python -m shared recompress --mode exact`` as a whole process, best of 3 (wall / CPU):

    level 1: 70.63 MB, verify="pages" 1.19 s / 1.87 s, verify="full" 2.14 s / 2.89 s
    level 3: 72.62 MB, verify="pages" 1.42 s / 2.13 s, verify="full" 2.15 s / 3.14 s

Level 1 is the default: on this table it is both smaller than level 3 and cheaper (less CPU;
faster wall with the pages proof, the same with the full proof, whose decode then dominates).
"""

from __future__ import annotations

import copy
import struct
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyarrow._parquet import ParquetReader

from shared.errors import (
    DamagedError,
    LimitError,
    NotParquetError,
    RecompressError,
    UnsupportedError,
    VerificationError,
    first_line,
)
from shared.limits import Deadline, Limits
from shared.parquet import codecs, pages, thrift
from shared.parquet import footer as ft
from shared.parquet.assembly import FileBuilder, Writable, bloom_length, shift_offset_index
from shared.parquet.thrift import Struct, ThriftError, ThriftList
from shared.proof import Outcome, ProofKind, check_group_rows, check_totals

DEFAULT_LEVEL = 1
#: Rows per batch when the full proof decodes its columns (small batches keep its peak memory low, at no cost).
PROOF_BATCH_ROWS = 16 * 1024
#: Ranges closer than this are fetched in one read (page indexes sit side by side at the end).
MERGE_GAP = 64 * 1024
#: The pool recompresses a chunk's pages in runs of about this many decompressed bytes (whole pages).
UNIT_BYTES = 4 << 20
#: Stored bytes read ahead of the writer (beyond the chunk it waits for), in chunks being recompressed.
READ_AHEAD_BYTES = 8 << 20
#: The full proof decodes whole top-level columns, consecutive small ones together until they hold this many bytes.
DECODE_UNIT_BYTES = 1 << 20
#: Decodes of the full proof that may still be running behind the writer.
DECODES_BEHIND = 1
#: Threads decoding for the full proof, beside the pool's; one keeps its memory to one column at a time.
DECODE_THREADS = 1


@dataclass(frozen=True)
class ExactOptions:
    """How exact mode rewrites one file."""

    level: int = DEFAULT_LEVEL
    verify: ProofKind = "full"
    limits: Limits | None = None
    threads: int = 2


@dataclass
class _Chunk:
    """One input column chunk and what the rewrite needs to know about it."""

    group: int
    column: int
    where: str  # "row group 0, column 'a.b'" for messages
    leaf: ft.Leaf
    tree: Struct  # the output footer's ColumnChunk, edited in place
    meta: ft.ColumnMeta
    start: int
    length: int


@dataclass
class _Rewritten:
    """A chunk's new bytes and where its pages moved (offsets relative to the chunk's start)."""

    parts: list[bytes]  # the chunk's new bytes, in pieces to write one after the other
    length: int
    moved: dict[int, int]  # old relative page offset -> new relative offset
    sizes: dict[int, int]  # old relative page offset -> new page size, header included
    headers: dict[int, bytes]  # new relative offset -> header bytes written there
    header_growth: int
    values: int
    v2_rows: int | None  # rows counted from v2 headers when every data page is v2
    kinds: dict[int, int] = field(default_factory=dict)  # old relative offset -> page type


@dataclass
class _Unit:
    """A run of one chunk's pages, recompressed on the pool (offsets relative to the run's first page)."""

    data: bytes
    pages: list[tuple[int, int, int, bytes, int]]  # old chunk offset, new offset, new size, new header, page type
    header_growth: int
    values: int
    v2_rows: int
    all_v2: bool  # every data page is v2 (says its rows)
    any_data: bool


def recompress(source: pa.NativeFile, sink: Writable, options: ExactOptions, *, name: str,
               progress: Callable[[int], None] | None = None) -> Outcome:
    """Rewrite ``source`` into ``sink`` page by page with zstd, and prove the result before returning."""
    footer = ft.read_footer(source, name)
    # Copied before anything is looked into: the copy's fields are the input's bytes until the plan reads them,
    # so a field exact mode never edits costs no parse and is written back byte for byte.
    output = copy.deepcopy(footer.tree)
    meta = footer.meta
    if meta.is_encrypted:
        raise UnsupportedError(name, "encrypted Parquet is not supported")
    leaves, depth = _schema(meta, name)
    deadline = None
    if options.limits is not None:
        _check_limits(meta, len(leaves), depth, options.limits, name)
        deadline = Deadline(options.limits.deadline_seconds, name)
    chunks = _plan(ft.FileMeta(output), leaves, footer, name)
    builder = FileBuilder(sink, name=name)
    run = _Run(source, builder, options, name, footer, leaves)
    # The full proof decodes on a thread of its own, so it never waits in line behind the pages read ahead.
    with ThreadPoolExecutor(max_workers=max(1, options.threads), thread_name_prefix="exact") as pool, \
            ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="exact-proof") as proofs:
        rows_read = run.all(pool, proofs, ft.FileMeta(output).row_groups, chunks, deadline, progress)
    builder.finish(output)
    _prove_footer(footer.tree, output, name)
    _prove_offsets(output, builder, run.ledger, name)
    declared = sum(group.num_rows for group in meta.row_groups)
    written = sum(group.num_rows for group in ft.FileMeta(output).row_groups)
    check_totals(name, declared, rows_read, written)
    return Outcome("exact", options.verify, declared, rows_read, written, len(builder.row_groups))


def _schema(meta: ft.FileMeta, name: str) -> tuple[list[ft.Leaf], int]:
    try:
        return ft.leaves(meta.schema)
    except ThriftError as exc:
        raise NotParquetError(name, f"footer schema is malformed: {exc} (check: schema)") from exc


def _check_limits(meta: ft.FileMeta, columns: int, depth: int, limits: Limits, name: str) -> None:
    """The limits of :mod:`shared.limits`, read from our own footer parse before any page is touched."""
    if columns > limits.max_columns:
        raise LimitError(name, f"has {columns} columns, over the limit of {limits.max_columns} "
                               "(RECOMPRESS_MAX_COLUMNS)")
    if depth > limits.max_nesting_depth:
        raise LimitError(name, f"nests {depth} levels deep, over the limit of {limits.max_nesting_depth} "
                               "(RECOMPRESS_MAX_NESTING_DEPTH)")
    groups = meta.row_groups
    rows = max(meta.num_rows, sum(group.num_rows for group in groups))
    if rows > limits.max_rows:
        raise LimitError(name, f"declares {rows} rows, over the limit of {limits.max_rows} (RECOMPRESS_MAX_ROWS)")
    for index, group in enumerate(groups):
        if group.total_byte_size > limits.max_row_group_bytes:
            raise LimitError(name, f"row group {index} decompresses to {group.total_byte_size} bytes, over the "
                                   f"limit of {limits.max_row_group_bytes} (RECOMPRESS_MAX_ROW_GROUP_BYTES)")


def _plan(output: ft.FileMeta, leaves: list[ft.Leaf], footer: ft.Footer, name: str) -> list[list[_Chunk]]:
    """Every chunk of every row group, checked for what exact mode cannot rewrite, before any page work."""
    plan: list[list[_Chunk]] = []
    try:
        for g, group in enumerate(output.row_groups):
            group.num_rows  # noqa: B018 - a missing num_rows raises here, not halfway through the file
            columns = group.columns
            if len(columns) != len(leaves):
                raise DamagedError(name, f"row group {g} has {len(columns)} column chunks for {len(leaves)} "
                                         "columns (check: column count)")
            plan.append([_chunk(g, c, chunk, leaves[c], footer, name) for c, chunk in enumerate(columns)])
    except ThriftError as exc:
        raise NotParquetError(name, f"footer is malformed: {exc} (check: footer)") from exc
    return plan


def _chunk(g: int, c: int, chunk: ft.ColumnChunk, leaf: ft.Leaf, footer: ft.Footer, name: str) -> _Chunk:
    where = f"row group {g}, column '{'.'.join(leaf.path)}'"
    if chunk.is_encrypted:
        raise UnsupportedError(name, f"{where} is encrypted; encrypted Parquet is not supported")
    if chunk.file_path:
        raise UnsupportedError(name, f"{where} keeps its data in another file ({chunk.file_path!r}), "
                                     "which exact mode cannot rewrite")
    meta = chunk.meta_data
    if meta is None:
        raise DamagedError(name, f"{where} has no column metadata (check: column chunk)")
    path = ".".join(meta.path_in_schema) or ".".join(leaf.path)
    where = f"row group {g}, column '{path}'"
    if meta.codec == ft.LZO:
        raise UnsupportedError(name, f"{where} is compressed with LZO, which is not supported")
    if meta.codec not in ft.CODEC_NAMES:
        raise UnsupportedError(name, f"{where} uses unknown codec {meta.codec}")
    start, length = meta.chunk_start(), meta.total_compressed_size
    if length < 0 or (length and start < 4) or start + length > footer.start:
        raise DamagedError(name, f"{where}: column chunk at {start} of {length} bytes runs past the data "
                                 f"(check: column chunk size)")
    return _Chunk(g, c, where, leaf, chunk.tree, meta, start, length)


class _Run:
    """One file's rewrite: reads chunks ahead, recompresses their pages on a pool, writes them in order.

    The main thread reads and walks chunks (page headers only) ahead of the writer, within
    :data:`READ_AHEAD_BYTES`, and hands their pages to the pool in units of about :data:`UNIT_BYTES`;
    decompression, compression and the round trip all run there, where pyarrow's codecs release the GIL.
    Results are written strictly in order. Under ``verify="full"`` the rewritten chunks of each top-level
    column (or of a few small consecutive ones) are decoded on a thread of their own while later pages are
    being compressed; the writer waits only when more than :data:`DECODES_BEHIND` decodes are behind it.
    """

    def __init__(self, source: pa.NativeFile, builder: FileBuilder, options: ExactOptions, name: str,
                 footer: ft.Footer, leaves: list[ft.Leaf]) -> None:
        self.source = source
        self.builder = builder
        self.options = options
        self.name = name
        self.footer = footer
        self.leaves = leaves
        self.limit = options.limits.max_row_group_bytes if options.limits is not None else None
        self.ledger = _Ledger(name)
        # What the full proof's files take from the input's footer, read once here.
        self.schema: list[Struct] = []
        self.version = 1
        self.created_by: bytes | None = None
        if options.verify == "full":
            tree = footer.tree
            self.schema = tree.get_structs(ft.FMD_SCHEMA)
            self.version = tree.get_int(ft.FMD_VERSION) or 1
            self.created_by = tree.get_binary(ft.FMD_CREATED_BY)

    def read(self, offset: int, length: int, what: str) -> bytes:
        return ft.read_exactly(self.source, offset, length, self.name, what)

    def all(self, pool: ThreadPoolExecutor, proofs: ThreadPoolExecutor, groups: list[ft.RowGroup],
            plan: list[list[_Chunk]],
            deadline: Deadline | None, progress: Callable[[int], None] | None) -> int:
        """Rewrite every row group; return the rows they were proven to hold."""
        ahead = _Ahead(self, pool, groups, plan, deadline)
        decodes: deque[Future[None]] = deque()
        rows = 0
        try:
            for index, group in enumerate(groups):
                if deadline is not None:
                    deadline.check()
                rows += self._group(proofs, ahead, decodes, index, group, plan[index])
                if progress is not None:
                    progress(group.num_rows)
            while decodes:
                decodes.popleft().result()
        finally:
            ahead.cancel()
            for future in decodes:
                future.cancel()
        return rows

    def _group(self, proofs: ThreadPoolExecutor, ahead: _Ahead, decodes: deque[Future[None]], index: int,
               group: ft.RowGroup, chunks: list[_Chunk]) -> int:
        """Write one row group's rewritten chunks, in order, and queue its full proof; return its rows."""
        indexes: list[tuple[Struct, bytes | None, Struct | None]] = []
        blooms: list[tuple[Struct, bytes]] = []
        proof: list[tuple[_Chunk, list[bytes]]] = []  # rewritten chunks still to decode, whole top-level columns
        proof_bytes = 0
        first_start: int | None = None
        full = self.options.verify == "full" and group.num_rows > 0  # nothing to decode in a 0-row group
        for chunk in chunks:
            result, extras = ahead.next(chunk)
            start = self.builder.position
            for part in result.parts:
                self.builder.write(part)
            first_start = start if first_start is None else first_start
            self._update(chunk, result, start)
            indexes.append(self._page_indexes(chunk, result, start, extras))
            bloom = self._bloom(chunk, extras)
            if bloom is not None:
                blooms.append((chunk.meta.tree, bloom))
            self._count(chunk, result, group.num_rows)
            if full:
                if proof and proof_bytes >= DECODE_UNIT_BYTES and proof[-1][0].leaf.top_level != chunk.leaf.top_level:
                    self._queue_decode(proofs, decodes, group, proof)
                    proof, proof_bytes = [], 0
                proof.append((chunk, result.parts))
                proof_bytes += result.length
        if proof:
            self._queue_decode(proofs, decodes, group, proof)
        for meta_tree, bloom in blooms:
            self.builder.write_bloom(meta_tree, bloom)
        if first_start is not None and group.tree.has(ft.RG_FILE_OFFSET):
            group.tree.set(ft.RG_FILE_OFFSET, first_start)
        if group.tree.has(ft.RG_TOTAL_COMPRESSED):
            group.tree.set(ft.RG_TOTAL_COMPRESSED, sum(c.meta.total_compressed_size for c in chunks))
        self.builder.add_row_group(group.tree, indexes, renumber=False)
        return group.num_rows

    def _queue_decode(self, proofs: ThreadPoolExecutor, decodes: deque[Future[None]], group: ft.RowGroup,
                      chunks: list[tuple[_Chunk, list[bytes]]]) -> None:
        """Decode these rewritten chunks on the proof thread; wait for the oldest beyond DECODES_BEHIND.

        Errors surface in a fixed order: a decode's when the writer waits for it, or at the end of the file.
        """
        items = [(chunk.leaf.top_level, chunk.leaf.path[0], copy.deepcopy(chunk.tree), parts)
                 for chunk, parts in chunks]
        proof = _Proof(chunks[0][0].group, group.num_rows, group.total_byte_size, self.schema, self.version,
                       self.created_by, items)
        decodes.append(proofs.submit(_decode, proof, self.name))
        while len(decodes) > DECODES_BEHIND:
            decodes.popleft().result()

    def _update(self, chunk: _Chunk, result: _Rewritten, start: int) -> None:
        """Point the output footer's chunk at its new pages: codec, sizes and offsets."""
        meta = chunk.meta.tree
        moved = {chunk.start + old: start + new for old, new in result.moved.items()}
        moved.setdefault(chunk.start, start)
        moved.setdefault(chunk.start + chunk.length, start + result.length)
        meta.set(ft.CM_CODEC, ft.ZSTD)
        meta.set(ft.CM_TOTAL_COMPRESSED, result.length)
        meta.set(ft.CM_TOTAL_UNCOMPRESSED, chunk.meta.total_uncompressed_size + result.header_growth)
        for field_id in (ft.CM_DATA_PAGE_OFFSET, ft.CM_DICT_PAGE_OFFSET, ft.CM_INDEX_PAGE_OFFSET):
            old = meta.get_int(field_id)
            if old is None:
                continue
            if old in moved:
                meta.set(field_id, moved[old])
            elif field_id == ft.CM_DATA_PAGE_OFFSET and old >= 4:
                raise DamagedError(self.name, f"{chunk.where}: data_page_offset {old} is not the start of a page "
                                              "(check: page offsets)")
            # A dictionary or index offset that points at no page (0 from some writers) stays as it was.
        file_offset = chunk.tree.get_int(ft.CC_FILE_OFFSET)
        if file_offset is not None:
            chunk.tree.set(ft.CC_FILE_OFFSET, moved.get(file_offset, start))
        for old, header in result.headers.items():
            self.ledger.add(start + old, header)

    def read_extras(self, chunks: list[_Chunk]) -> dict[tuple[int, int], bytes]:
        """Page indexes and bloom filters of a row group, fetched in as few reads as they allow."""
        wanted: list[tuple[int, int]] = []
        for chunk in chunks:
            view = ft.ColumnChunk(chunk.tree)
            for offset, length in ((view.column_index_offset, view.column_index_length),
                                   (view.offset_index_offset, view.offset_index_length),
                                   (chunk.meta.bloom_filter_offset, chunk.meta.bloom_filter_length)):
                if offset is not None and length is not None:
                    if offset < 4 or length < 0 or offset + length > self.footer.start:
                        raise DamagedError(self.name, f"{chunk.where}: an index or bloom filter at {offset} runs "
                                                      "past the data (check: page index)")
                    wanted.append((offset, length))
        found: dict[tuple[int, int], bytes] = {}
        for span_start, span_end, members in _merge(wanted):
            data = self.read(span_start, span_end - span_start, "page indexes")
            for offset, length in members:
                found[(offset, length)] = data[offset - span_start:offset - span_start + length]
        return found

    def _page_indexes(self, chunk: _Chunk, result: _Rewritten, start: int,
                      extras: dict[tuple[int, int], bytes]) -> tuple[Struct, bytes | None, Struct | None]:
        view = ft.ColumnChunk(chunk.tree)
        column_index = offset_index = None
        if view.column_index_offset is not None and view.column_index_length is not None:
            column_index = extras[(view.column_index_offset, view.column_index_length)]
        if view.offset_index_offset is not None and view.offset_index_length is not None:
            raw = extras[(view.offset_index_offset, view.offset_index_length)]

            def relative(old: int) -> int:
                if old - chunk.start not in result.moved or result.kinds[old - chunk.start] not in (
                        pages.DATA_PAGE, pages.DATA_PAGE_V2):
                    raise ThriftError(f"offset index points at {old}, which is not a data page of the chunk")
                return old - chunk.start

            try:
                offset_index = shift_offset_index(raw, lambda old: start + result.moved[relative(old)],
                                                  lambda old: result.sizes[relative(old)])
            except ThriftError as exc:
                raise DamagedError(self.name, f"{chunk.where}: offset index is unusable: {exc} "
                                              "(check: offset index)") from exc
        return chunk.tree, column_index, offset_index

    def _bloom(self, chunk: _Chunk, extras: dict[tuple[int, int], bytes]) -> bytes | None:
        offset, length = chunk.meta.bloom_filter_offset, chunk.meta.bloom_filter_length
        if offset is None:
            return None
        if length is not None:
            return extras[(offset, length)]
        try:
            length = bloom_length(lambda o, n: self.read(o, n, "a bloom filter header"), offset, None,
                                  self.footer.start)
        except ThriftError as exc:
            raise DamagedError(self.name, f"{chunk.where}: bloom filter is unreadable: {exc} "
                                          "(check: bloom filter)") from exc
        return self.read(offset, length, f"{chunk.where}: the bloom filter")

    def _count(self, chunk: _Chunk, result: _Rewritten, declared: int) -> None:
        """Value and row accounting from page headers (repeated v1 columns are counted by the full proof)."""
        if result.values != chunk.meta.num_values:
            raise DamagedError(self.name, f"{chunk.where}: column chunk declares {chunk.meta.num_values} values "
                                          f"but its data pages hold {result.values} (check: value count)")
        what = f"column '{'.'.join(chunk.leaf.path)}' holds"
        if chunk.leaf.max_repetition == 0 or declared == 0:  # no row holds no value, however deep the column
            check_group_rows(self.name, chunk.group, declared, result.values, what)
        elif result.v2_rows is not None:
            check_group_rows(self.name, chunk.group, declared, result.v2_rows, what)


class _Ahead:
    """Chunks read, walked, checked against the limits and handed to the pool ahead of the writer, in file order.

    At least the chunk the writer waits for is in flight, and more while the stored bytes in flight stay under
    :data:`READ_AHEAD_BYTES`.
    """

    def __init__(self, run: _Run, pool: ThreadPoolExecutor, groups: list[ft.RowGroup], plan: list[list[_Chunk]],
                 deadline: Deadline | None) -> None:
        self.run = run
        self.pool = pool
        self.deadline = deadline
        self.order = deque(chunk for chunks in plan for chunk in chunks)
        self.plan = plan
        self.queue: deque[tuple[_Chunk, list[Future[_Unit]], dict[tuple[int, int], bytes]]] = deque()
        self.bytes = 0
        self.group = -1
        self.declared = 0
        self.extras: dict[tuple[int, int], bytes] = {}

    def next(self, chunk: _Chunk) -> tuple[_Rewritten, dict[tuple[int, int], bytes]]:
        """``chunk`` rewritten (the next in file order), and its row group's page indexes and bloom filters."""
        while self.order and (not self.queue or self.bytes + self.order[0].length <= READ_AHEAD_BYTES):
            self._submit(self.order.popleft())
        queued, futures, extras = self.queue.popleft()
        assert queued is chunk, "chunks are written in the order they were read"
        self.bytes -= chunk.length
        return _assemble([future.result() for future in futures]), extras

    def _submit(self, chunk: _Chunk) -> None:
        run = self.run
        if chunk.group != self.group:
            if self.deadline is not None:
                self.deadline.check()
            self.group, self.declared = chunk.group, 0
            self.extras = run.read_extras(self.plan[chunk.group])
        data = run.read(chunk.start, chunk.length, f"{chunk.where}: the column chunk")
        walked = _walk(data, chunk, run.name)
        self.declared += _declared_size(walked, chunk, run.limit, self.declared, run.name)
        futures = []
        level = run.options.level
        for unit in _units(walked):
            futures.append(self.pool.submit(_rewrite, unit, chunk, level, run.name))
        self.queue.append((chunk, futures, self.extras))
        self.bytes += chunk.length

    def cancel(self) -> None:
        for _, futures, _ in self.queue:
            for future in futures:
                future.cancel()
        self.queue.clear()


def _units(walked: list[pages.Page]) -> Iterator[list[pages.Page]]:
    """A chunk's pages in runs of about UNIT_BYTES decompressed, the pool's unit of work."""
    unit: list[pages.Page] = []
    size = 0
    for page in walked:
        unit.append(page)
        size += page.uncompressed_size
        if size >= UNIT_BYTES:
            yield unit
            unit, size = [], 0
    if unit:
        yield unit


def _assemble(units: list[_Unit]) -> _Rewritten:
    """A chunk's rewrite from its units' (offsets relative to the chunk's start)."""
    result = _Rewritten([], 0, {}, {}, {}, 0, 0, 0)
    all_v2 = True
    any_data = False
    position = 0
    for unit in units:
        for old, new, size, header, kind in unit.pages:
            result.moved[old] = position + new
            result.sizes[old] = size
            result.headers[position + new] = header
            result.kinds[old] = kind
        result.parts.append(unit.data)
        position += len(unit.data)
        result.header_growth += unit.header_growth
        result.values += unit.values
        result.v2_rows = (result.v2_rows or 0) + unit.v2_rows
        all_v2 &= unit.all_v2
        any_data |= unit.any_data
    result.length = position
    if not all_v2 or not any_data:
        result.v2_rows = None
    return result


@dataclass
class _Proof:
    """Rewritten chunks of consecutive top-level columns of one row group, to decode as a Parquet file.

    Everything here is the task's own (the chunks' footer entries are copies), so it runs on the proof thread
    while the main thread goes on editing the output footer.
    """

    index: int  # the row group's
    rows: int  # the row group's
    total_byte_size: int
    schema: list[Struct]  # the input's schema elements
    version: int
    created_by: bytes | None
    chunks: list[tuple[int, str, Struct, list[bytes]]]  # top level, its name, a copy of the ColumnChunk, bytes


def _decode(proof: _Proof, name: str) -> None:
    """The full proof for these columns: decode them with pyarrow, validate them in full, and count the rows.

    When they fail together, each top-level column is decoded on its own to name the first at fault, with the
    error a column-by-column proof gives.
    """
    tops: list[list[tuple[int, str, Struct, list[bytes]]]] = []
    for item in proof.chunks:
        if tops and tops[-1][0][0] == item[0]:
            tops[-1].append(item)
        else:
            tops.append([item])
    if len(tops) > 1 and _decode_columns(proof, proof.chunks, name, quiet=True):
        return
    for top in tops:
        _decode_columns(proof, top, name, quiet=False)


def _decode_columns(proof: _Proof, chunks: list[tuple[int, str, Struct, list[bytes]]], name: str, *,
                    quiet: bool) -> bool:
    label = f"row group {proof.index}, column '{chunks[0][1]}'"
    try:
        data = _columns_file(proof, chunks)
    except ThriftError as exc:
        if quiet:
            return False
        raise DamagedError(name, f"{label}: cannot build the column to decode ({exc}) (check: decode)") from exc
    rows, problem = _decoded_rows(data)
    declared = proof.rows
    if quiet:
        return problem is None and rows == declared
    if problem is not None:
        raise DamagedError(name, f"{label}: values do not decode ({first_line(problem)}) "
                                 "(check: decode)") from problem
    check_group_rows(name, proof.index, declared, rows, f"column '{chunks[0][1]}' decoded")
    return True


def _decoded_rows(data: bytes) -> tuple[int, BaseException | None]:
    """Rows decoded from an in-memory Parquet file, every column validated in full; and the error, if any."""
    rows = 0
    try:
        # Read with the system allocator: this proof frees everything it decodes at once, and the process-wide
        # pool may hand freed pages back to the OS at once (reencode.release_memory_promptly), only to fault
        # them in again for the next batch; pq.ParquetFile takes no memory pool, so its reader is opened here.
        reader = ParquetReader(memory_pool=pa.system_memory_pool())
        reader.open(pa.BufferReader(data), pre_buffer=False, arrow_extensions_enabled=True)
        batches = reader.iter_batches(PROOF_BATCH_ROWS, list(range(reader.num_row_groups)), None, False)
        for batch in batches:
            for column in batch.columns:
                column.validate(full=True)
            rows += batch.num_rows
    except (pa.ArrowException, OSError, ValueError) as exc:
        return rows, exc
    return rows, None


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Group (offset, length) ranges into spans read at once when they lie close together."""
    spans: list[tuple[int, int, list[tuple[int, int]]]] = []
    for offset, length in sorted(set(ranges)):
        if spans and offset - spans[-1][1] <= MERGE_GAP:
            start, end, members = spans[-1]
            spans[-1] = (start, max(end, offset + length), [*members, (offset, length)])
        else:
            spans.append((offset, offset + length, [(offset, length)]))
    return spans


def _walk(data: bytes, chunk: _Chunk, name: str) -> list[pages.Page]:
    """The chunk's pages, their headers parsed and checked, nothing decompressed."""
    try:
        return pages.walk(data)
    except pages.PageError as exc:
        raise DamagedError(name, f"{chunk.where}: {exc}") from exc


def _declared_size(walked: list[pages.Page], chunk: _Chunk, limit: int | None, before: int, name: str) -> int:
    """The bytes a chunk's pages declare they decompress to, refused past the row-group limit before any page is.

    ``before`` is what the row group's earlier chunks declared: the limit holds for the row group as a whole,
    whatever its footer's ``total_byte_size`` says.
    """
    total = 0
    for page in walked:
        size = page.uncompressed_size
        if limit is not None and size > limit:
            raise LimitError(name, f"{chunk.where}: page {page.index} decompresses to {size} bytes, over the limit "
                                   f"of {limit} (RECOMPRESS_MAX_ROW_GROUP_BYTES)")
        total += size
        if limit is not None and before + total > limit:
            raise LimitError(name, f"row group {chunk.group} decompresses to more than {before + total} bytes "
                                   f"(its page headers so far), over the limit of {limit} "
                                   "(RECOMPRESS_MAX_ROW_GROUP_BYTES)")
    return total


def _rewrite(walked: list[pages.Page], chunk: _Chunk, level: int, name: str) -> _Unit:
    """Recompress a run of one chunk's pages (runs on the pool; pyarrow's codecs release the GIL)."""
    out: list[bytes] = []
    unit = _Unit(b"", [], 0, 0, 0, True, False)
    position = 0
    codec = chunk.meta.codec
    for page in walked:
        try:
            stored, header = _rewrite_page(page, codec, level)
            unit.values += page.num_values
            if page.is_data:
                unit.any_data = True
                rows = page.num_rows
                unit.all_v2 &= rows is not None
                unit.v2_rows += rows or 0
        except pages.PageError as exc:
            raise DamagedError(name, f"{chunk.where}: {exc}") from exc
        except codecs.UnsupportedCodec as exc:
            raise UnsupportedError(name, f"{chunk.where} is compressed with {exc}, which is not supported") from exc
        except codecs.CodecError as exc:
            raise DamagedError(name, f"{chunk.where}: page {page.index} does not decompress: {exc} "
                                     "(check: decompress)") from exc
        except ThriftError as exc:  # a header field of the wrong wire type
            raise DamagedError(name, f"{chunk.where}: page {page.index} header is malformed: {exc} "
                                     "(check: page header)") from exc
        size = len(header) + len(stored)
        unit.pages.append((page.offset, position, size, header, page.type))
        unit.header_growth += len(header) - page.header_length
        out += (header, stored)
        position += size
    unit.data = b"".join(out)
    return unit


def _rewrite_page(page: pages.Page, codec: int, level: int) -> tuple[bytes, bytes]:
    """One page's new stored bytes and header; the new payload is proven to inflate to the old one."""
    crc = page.crc
    if crc is not None and pages.crc32(page.payload) != crc:
        raise pages.PageError(page.index, "does not match its CRC", "page crc")
    levels = page.levels_length
    payload = page.payload
    body = payload[levels:] if levels else payload
    size = page.uncompressed_size - levels
    raw = codecs.decompress(codec if page.values_compressed else ft.UNCOMPRESSED, body, size)
    packed = codecs.compress_zstd(raw, level)
    if not codecs.inflates_to(packed, raw):
        raise VerificationError("zstd", f"page {page.index} does not decompress to its original bytes "
                                        "(check: page round trip)")
    stored = bytes(payload[:levels]) + packed if levels else packed
    if page.type == pages.DATA_PAGE_V2:
        page.set_v2_compressed()
    try:
        return stored, pages.new_header(page, len(stored), None if crc is None else pages.crc32(stored))
    except ThriftError as exc:  # backstop: the parser refuses what cannot be written back
        raise pages.PageError(page.index, f"header cannot be written back ({exc})", "page header write") from exc


def _columns_file(proof: _Proof, chunks: list[tuple[int, str, Struct, list[bytes]]]) -> bytes:
    """A Parquet file in memory holding consecutive top-level columns of one row group, from their new chunks.

    The schema is pruned to those columns, and the key-values (whose Arrow schema
    names every column) are left out; ``created_by`` stays, since readers apply
    writer-specific fixes by it.
    """
    schema = proof.schema
    first, _ = _top_level_span(schema, chunks[0][0])
    _, end = _top_level_span(schema, chunks[-1][0])
    root = copy.deepcopy(schema[0])
    root.set(ft.SE_NUM_CHILDREN, chunks[-1][0] - chunks[0][0] + 1, thrift.I32)
    body: list[bytes | memoryview] = [ft.MAGIC]
    position = len(ft.MAGIC)
    columns: list[thrift.Value] = []
    for _, _, tree, parts in chunks:
        column = copy.deepcopy(tree)
        meta = column.get_struct(ft.CC_META)
        assert meta is not None
        length = sum(len(part) for part in parts)
        new_start = position
        body += parts
        position += length
        old_start = ft.ColumnMeta(meta).chunk_start()
        delta = new_start - old_start
        for field_id in (ft.CM_DATA_PAGE_OFFSET, ft.CM_DICT_PAGE_OFFSET, ft.CM_INDEX_PAGE_OFFSET):
            value = meta.get_int(field_id)
            if value is not None and old_start <= value < old_start + length:
                meta.set(field_id, value + delta)
        for field_id in (ft.CM_BLOOM_OFFSET, ft.CM_BLOOM_LENGTH):
            meta.remove(field_id)
        for field_id in (ft.CC_OI_OFFSET, ft.CC_OI_LENGTH, ft.CC_CI_OFFSET, ft.CC_CI_LENGTH):
            column.remove(field_id)
        column.set(ft.CC_FILE_OFFSET, new_start, thrift.I64)
        columns.append(column)
    row_group = Struct()
    row_group.set(ft.RG_COLUMNS, ThriftList(thrift.STRUCT, columns), thrift.LIST)
    row_group.set(ft.RG_TOTAL_BYTE_SIZE, proof.total_byte_size, thrift.I64)
    row_group.set(ft.RG_NUM_ROWS, proof.rows, thrift.I64)
    meta_tree = Struct()
    meta_tree.set(ft.FMD_VERSION, proof.version, thrift.I32)
    meta_tree.set(ft.FMD_SCHEMA, ThriftList(thrift.STRUCT, [root, *schema[first:end]]), thrift.LIST)
    meta_tree.set(ft.FMD_NUM_ROWS, proof.rows, thrift.I64)
    meta_tree.set(ft.FMD_ROW_GROUPS, ThriftList(thrift.STRUCT, [row_group]), thrift.LIST)
    if proof.created_by is not None:
        meta_tree.set(ft.FMD_CREATED_BY, proof.created_by, thrift.BINARY)
    raw = thrift.dumps(meta_tree)
    body += (raw, struct.pack("<I", len(raw)), ft.MAGIC)
    return b"".join(body)


def _top_level_span(schema: list[Struct], top: int) -> tuple[int, int]:
    """The slice of the flat schema list holding the ``top``-th child of the root and its subtree."""
    index = 1
    for child in range(top + 1):
        start = index
        remaining = 1
        while remaining:
            if index >= len(schema):
                raise ThriftError("schema ends inside a group")
            remaining += (schema[index].get_int(ft.SE_NUM_CHILDREN) or 0) - 1
            index += 1
        if child == top:
            return start, index
    raise ThriftError(f"schema has no top-level column {top}")


# ---------------------------------------------------------------- the footer and offset proofs

_ROW_GROUP = (ft.FMD_ROW_GROUPS, "*")
_CHUNK = (*_ROW_GROUP, ft.RG_COLUMNS, "*")
_META = (*_CHUNK, ft.CC_META)
#: The only footer fields exact mode may change: codec, sizes and offsets.
MAY_CHANGE: frozenset[tuple[Any, ...]] = frozenset({
    (*_ROW_GROUP, ft.RG_FILE_OFFSET), (*_ROW_GROUP, ft.RG_TOTAL_COMPRESSED),
    (*_CHUNK, ft.CC_FILE_OFFSET), (*_CHUNK, ft.CC_OI_OFFSET), (*_CHUNK, ft.CC_OI_LENGTH),
    (*_CHUNK, ft.CC_CI_OFFSET), (*_CHUNK, ft.CC_CI_LENGTH),
    (*_META, ft.CM_CODEC), (*_META, ft.CM_TOTAL_UNCOMPRESSED), (*_META, ft.CM_TOTAL_COMPRESSED),
    (*_META, ft.CM_DATA_PAGE_OFFSET), (*_META, ft.CM_INDEX_PAGE_OFFSET), (*_META, ft.CM_DICT_PAGE_OFFSET),
    (*_META, ft.CM_BLOOM_OFFSET), (*_META, ft.CM_BLOOM_LENGTH),
})


def _prove_footer(before: Struct, after: Struct, name: str) -> None:
    """The output footer must equal the input's field by field, except the allowlisted paths."""
    problem = _diff(before, after, ())
    if problem is not None:
        raise VerificationError(name, f"output footer differs from the input's at {problem} (check: footer)")
    for group in ft.FileMeta(after).row_groups:
        for chunk in group.columns:
            meta = chunk.meta_data
            if meta is None or meta.codec != ft.ZSTD:
                raise VerificationError(name, "an output column chunk is not ZSTD (check: footer)")


def _diff(a: thrift.Value, b: thrift.Value, path: tuple[Any, ...]) -> str | None:
    if isinstance(a, Struct) and isinstance(b, Struct):
        if [(f.id, f.type) for f in a.fields] != [(f.id, f.type) for f in b.fields]:
            if path in MAY_CHANGE:
                return None
            return _path(path) + " (fields)"
        for left, right in zip(a.fields, b.fields, strict=True):
            if left.is_raw and right.is_raw and left.encoded() == right.encoded():
                continue  # never looked into on either side: the same bytes, without parsing them
            problem = _diff(left.value, right.value, (*path, left.id))
            if problem is not None:
                return problem
        return None
    if isinstance(a, ThriftList) and isinstance(b, ThriftList):
        if a.elem_type != b.elem_type or len(a.items) != len(b.items):
            return _path(path)
        for left_item, right_item in zip(a.items, b.items, strict=True):
            problem = _diff(left_item, right_item, (*path, "*"))
            if problem is not None:
                return problem
        return None
    if isinstance(a, thrift.ThriftMap) and isinstance(b, thrift.ThriftMap):
        same = a.key_type == b.key_type and a.value_type == b.value_type and len(a.items) == len(b.items)
        if not same:
            return _path(path)
        for (lk, lv), (rk, rv) in zip(a.items, b.items, strict=True):
            problem = _diff(lk, rk, (*path, "*")) or _diff(lv, rv, (*path, "*"))
            if problem is not None:
                return problem
        return None
    if type(a) is not type(b):
        return _path(path)
    if isinstance(a, float) and isinstance(b, float):
        return None if struct.pack("<d", a) == struct.pack("<d", b) or path in MAY_CHANGE else _path(path)
    return None if a == b or path in MAY_CHANGE else _path(path)


def _path(path: tuple[Any, ...]) -> str:
    return "/".join(str(part) for part in path) or "the root"


class _Ledger:
    """Every page header written, in file order: where it starts, its length, and the payload size it declares.

    The size is read from the header's bytes as they are written (:func:`pages.stored_size`); three arrays of
    integers, so a file of any size costs a few bytes per page.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.starts = array("q")
        self.header_lengths = array("q")
        self.sizes = array("q")

    def add(self, offset: int, header: bytes) -> None:
        if self.starts and offset <= self.starts[-1]:
            raise VerificationError(self.name, f"page headers written out of order at {offset} (check: offsets)")
        self.starts.append(offset)
        self.header_lengths.append(len(header))
        self.sizes.append(pages.stored_size(header))

    def find(self, offset: int) -> int | None:
        """The index of the page written at ``offset``, or None."""
        index = bisect_left(self.starts, offset)
        return index if index < len(self.starts) and self.starts[index] == offset else None


def _prove_offsets(tree: Struct, builder: FileBuilder, ledger: _Ledger, name: str) -> None:
    """Every offset in the output footer points at what was written there: a page header, an index, a filter."""
    written = builder.written

    def fail(what: str) -> VerificationError:
        return VerificationError(name, f"{what} (check: offsets)")

    for g, group in enumerate(ft.FileMeta(tree).row_groups):
        for c, chunk in enumerate(group.columns):
            meta = chunk.meta_data
            assert meta is not None
            where = f"row group {g}, column {c}"
            dpo = meta.data_page_offset
            if meta.total_compressed_size and dpo >= 4 and ledger.find(dpo) is None:
                raise fail(f"{where}: data_page_offset {meta.data_page_offset} points at no page written")
            for offset in (meta.dictionary_page_offset, meta.index_page_offset):
                if offset is not None and offset >= 4 and offset < builder.position and (
                        ledger.find(offset) is None and meta.total_compressed_size):
                    moved = offset - meta.chunk_start()
                    if 0 <= moved < meta.total_compressed_size:
                        raise fail(f"{where}: a page offset {offset} points inside a page")
            _prove_chunk_pages(ledger, meta, where, fail)
            if meta.bloom_filter_offset is not None and meta.bloom_filter_offset not in written.blooms:
                raise fail(f"{where}: bloom filter offset points at no filter written")
            if chunk.column_index_offset is not None and written.column_indexes.get(
                    chunk.column_index_offset) != chunk.column_index_length:
                raise fail(f"{where}: column index offset points at no column index written")
            if chunk.offset_index_offset is not None:
                raw = written.offset_indexes.get(chunk.offset_index_offset)
                if raw is None or len(raw) != chunk.offset_index_length:
                    raise fail(f"{where}: offset index offset points at no offset index written")
                for location in thrift.loads(raw).get_structs(1):
                    offset, size = location.get_int(1), location.get_int(2)
                    index = ledger.find(offset or -1)
                    if index is None or size is None or size < ledger.header_lengths[index]:
                        raise fail(f"{where}: offset index points at no page written")


def _prove_chunk_pages(ledger: _Ledger, meta: ft.ColumnMeta, where: str,
                       fail: Callable[[str], VerificationError]) -> None:
    """The chunk's pages, as written, tile exactly the range its metadata declares."""
    position = meta.chunk_start()
    end = position + meta.total_compressed_size
    index = ledger.find(position) if position < end else None
    while position < end:
        if index is None or index >= len(ledger.starts) or ledger.starts[index] != position:
            raise fail(f"{where}: no page header was written at {position}")
        position += ledger.header_lengths[index] + ledger.sizes[index]
        index += 1
    if position != end:
        raise fail(f"{where}: pages overrun the chunk's declared size")


__all__ = ["DEFAULT_LEVEL", "ExactOptions", "RecompressError", "recompress"]

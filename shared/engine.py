"""The recompression engine: Parquet in, zstd Parquet out, Arrow all the way.

It knows nothing of storage. It reads from anything ``pyarrow.parquet`` can
open (a buffer, a local file, a seekable Python file that fetches ranges) and
writes into any writable stream; publishing the result is the caller's job,
and only after :func:`recompress` returned, since it raises before anything
could be published when the written file does not match what was read.

Memory stays bounded by row groups: one row group is decoded while the
previous one is encoded, and output row groups are coalesced up to the
configured row count, never the whole file.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shared import encodings
from shared.errors import InputError, NotParquetError, OptionError, UnsupportedError, VerificationError
from shared.limits import Deadline, Limits, check_footer
from shared.report import CODEC
from shared.transform import BatchTransform

ARROW_SCHEMA_KEY = b"ARROW:schema"

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Options:
    """How one file is rewritten."""

    level: int
    row_group_size: int = 1024 * 1024
    columns: tuple[str, ...] | None = None
    transform: BatchTransform | None = None
    limits: Limits | None = None
    tune_encodings: bool = True


@dataclass(frozen=True)
class Outcome:
    """What the engine read and wrote, checked against each other."""

    rows_read: int
    rows_written: int
    row_groups_written: int
    schema: pa.Schema


def release_memory_promptly() -> None:
    """Use jemalloc and hand freed memory back to the OS at once.

    Arrow's default allocator keeps freed pages for reuse, so a process that
    recompressed one big file stays big; with jemalloc and no decay delay the
    peak RSS of a run measured about 80 MB lower (bench/results.md). Process
    wide, so the CLI and the function app call it once at start-up.
    """
    with contextlib.suppress(NotImplementedError, pa.ArrowException):  # builds without jemalloc
        pool = pa.jemalloc_memory_pool()
        pa.set_memory_pool(pool)
        pa.jemalloc_set_decay_ms(0)


def recompress(
    source: Any,
    sink: Any,
    options: Options,
    *,
    name: str = "input",
    progress: Progress | None = None,
) -> Outcome:
    """Rewrite the Parquet file ``source`` into ``sink`` with zstd, losslessly.

    ``name`` only labels errors. ``progress`` is told how many rows each input
    row group held, as it is consumed.
    """
    parquet = open_parquet(source, name)
    deadline = None
    if options.limits is not None:  # before any decoding, the INT96 scan included
        check_footer(parquet, options.limits, name)
        deadline = Deadline(options.limits.deadline_seconds, name)
    physical = _physical_types(parquet)
    refuse_unsupported(parquet, name)
    if "INT96" in physical.values():
        unit = int96_unit(source, parquet, [p for p, t in physical.items() if t == "INT96"], name)
        parquet = open_parquet(source, name, coerce_int96_timestamp_unit=unit, metadata=parquet.metadata)
    columns = _select_columns(parquet.schema_arrow, options.columns, name)
    schema = _output_schema(parquet.schema_arrow, columns)
    layout = _Layout(
        keep_arrow_schema=ARROW_SCHEMA_KEY in (parquet.metadata.metadata or {}),
        int96="INT96" in physical.values(),
        key_values={k: v for k, v in (parquet.metadata.metadata or {}).items() if k != ARROW_SCHEMA_KEY},
    )
    writer: _CoalescingWriter | None = None
    rows_read = 0
    try:
        for table in _row_batches(parquet, columns, name):
            if deadline is not None:
                deadline.check()
            rows_read += table.num_rows
            if progress is not None:
                progress(table.num_rows)
            for piece in _transformed(table, options.transform, name):
                if writer is None:
                    writer = _CoalescingWriter(sink, piece.schema, options, layout, name)
                writer.add(piece)
        if writer is None:
            writer = _CoalescingWriter(sink, _empty_schema(schema, options.transform, name), options, layout, name)
        metadata = writer.close()
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    outcome = Outcome(rows_read, writer.rows_written, metadata.num_row_groups, writer.schema)
    verify(outcome, metadata, expect_rows=rows_read if options.transform is None else None, name=name)
    return outcome


def open_parquet(source: Any, name: str, **options: Any) -> pq.ParquetFile:
    """Open the footer; any failure to do so means the bytes are not usable Parquet."""
    try:
        return pq.ParquetFile(source, pre_buffer=True, **options)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NotParquetError(name, f"not a readable Parquet file ({describe(exc)})") from None


def refuse_unsupported(parquet: pq.ParquetFile, name: str) -> None:
    """Refuse columns Arrow cannot write back as they were, rather than change them silently.

    Arrow reads a Parquet INTERVAL as plain 12-byte binary and cannot write the
    annotation back: the output would say BLOB where the input said INTERVAL.
    """
    schema = parquet.schema
    for index in range(len(schema)):
        column = schema.column(index)
        if column.converted_type == "INTERVAL":
            raise UnsupportedError(name, f"column {column.path!r} is a Parquet INTERVAL, which cannot be rewritten "
                                         "without losing its type")


#: The microsecond range a nanosecond timestamp can hold (about 1677 to 2262).
_NS_RANGE_US = (-(2**63) // 1000 + 1, (2**63 - 1) // 1000)


def int96_unit(source: Any, parquet: pq.ParquetFile, paths: list[str], name: str) -> str:
    """Pick the unit that reads a file's INT96 timestamps without loss.

    Arrow converts INT96 to one unit for the whole file. Nanoseconds keep
    Impala's sub-microsecond digits but wrap around outside 1677-2262, where
    warehouses keep their 0001-01-01 and 9999-12-31 sentinels; microseconds
    (Spark's precision) hold every year. Only the INT96 columns are scanned,
    and only in legacy files that have them.
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
                continue  # nested: leave it to the microsecond default below
            in_range = (us >= _NS_RANGE_US[0]) & (us <= _NS_RANGE_US[1])
            out_of_range |= bool((~in_range).any())
            ns = _int64s(_read_group(as_ns, index, [column], name).column(0))
            sub_micro |= ns is not None and bool(((ns[in_range] % 1000) != 0).any())
    if out_of_range and sub_micro:
        raise UnsupportedError(name, "holds INT96 timestamps both outside 1677-2262 and with nanosecond digits; "
                                     "Arrow can keep one or the other, not both")
    return "us" if out_of_range else "ns"


def _read_group(parquet: pq.ParquetFile, index: int, columns: list[str], name: str) -> pa.Table:
    try:
        return parquet.read_row_group(index, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NotParquetError(name, f"row group {index} is unreadable ({describe(exc)})") from None


def _int64s(column: pa.ChunkedArray) -> Any:
    """The non-null values of a flat timestamp column as int64 numbers, or None for other shapes."""
    if not pa.types.is_timestamp(column.type):
        return None
    return column.drop_null().cast(pa.int64()).to_numpy()


def _physical_types(parquet: pq.ParquetFile) -> dict[str, str]:
    schema = parquet.schema
    return {schema.column(i).path: schema.column(i).physical_type for i in range(len(schema))}


@dataclass(frozen=True)
class _Layout:
    """What of the input's physical layout the output must repeat to read back the same."""

    keep_arrow_schema: bool
    int96: bool
    key_values: dict[bytes, bytes]


def verify(outcome: Outcome, metadata: pq.FileMetaData, *, expect_rows: int | None, name: str) -> None:
    """Refuse to let a file be published unless its footer says what we wrote."""
    if expect_rows is not None and outcome.rows_written != expect_rows:
        raise VerificationError(name, f"wrote {outcome.rows_written} rows but read {expect_rows}")
    if metadata.num_rows != outcome.rows_written:
        raise VerificationError(name, f"output footer holds {metadata.num_rows} rows, expected {outcome.rows_written}")
    if metadata.num_columns != _leaf_count(outcome.schema):
        raise VerificationError(name, f"output footer holds {metadata.num_columns} columns, expected "
                                      f"{_leaf_count(outcome.schema)}")


def describe(exc: BaseException) -> str:
    """The first line of an Arrow error, short enough for a one-line message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


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


#: Decoded size at which an output row group ends even short of its row count.
ROW_GROUP_BYTES = 128 * 1024**2
#: Rows per decoded batch, and how many batches decoding may run ahead of encoding.
BATCH_ROWS = 65_536
BATCH_BYTES = 4 * 1024**2
AHEAD_BATCHES = 16
_DONE = object()


def _row_batches(parquet: pq.ParquetFile, columns: list[str] | None, name: str) -> Iterator[pa.Table]:
    """Yield the file's rows in order, in batches decoded by a helper thread.

    Decoding and encoding both release the GIL, so one thread overlaps them. A
    bounded queue keeps decoding at most AHEAD_BATCHES ahead, and row groups
    are read one at a time (``pre_buffer`` then fetches one group's ranges), so
    memory holds one output row group plus a few batches, whatever the size of
    the file or of its row groups.
    """
    if parquet.metadata.num_row_groups == 0:
        return
    batch_rows = _batch_rows(parquet.metadata)
    ahead: queue.Queue[object] = queue.Queue(maxsize=AHEAD_BATCHES)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        try:
            for index in range(parquet.metadata.num_row_groups):
                for batch in _group_batches(parquet, index, columns, name, batch_rows):
                    if not put(batch):
                        return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    worker = threading.Thread(target=decode, name="decode", daemon=True)
    worker.start()
    try:
        while (item := ahead.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pa.RecordBatch)
            yield pa.Table.from_batches([item])
    finally:
        stop.set()
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
        raise NotParquetError(name, f"row group {index} is unreadable ({describe(exc)})") from None


def _transformed(table: pa.Table, transform: BatchTransform | None, name: str) -> Iterator[pa.Table]:
    if transform is None:
        yield table
        return
    for batch in table.to_batches():
        yield _apply(transform, batch, name)


def _apply(transform: BatchTransform, batch: pa.RecordBatch, name: str) -> pa.Table:
    try:
        result = transform(batch)
    except Exception as exc:
        raise InputError(name, f"transform failed: {type(exc).__name__}: {describe(exc)}") from None
    return pa.Table.from_batches([result]) if isinstance(result, pa.RecordBatch) else result


def _empty_schema(schema: pa.Schema, transform: BatchTransform | None, name: str) -> pa.Schema:
    """The output schema of a file with no rows: ask the transform, if any, with an empty batch."""
    if transform is None:
        return schema
    empty_batch = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)
    return _apply(transform, empty_batch, name).schema


def _leaf_count(schema: pa.Schema) -> int:
    def leaves(type_: pa.DataType) -> int:
        if type_.num_fields == 0:
            return 1
        return sum(leaves(type_.field(i).type) for i in range(type_.num_fields))

    return sum(leaves(f.type) for f in schema)


class _CoalescingWriter:
    """A ParquetWriter that gathers small inputs into full row groups.

    ``ParquetWriter.write_table`` ends a row group on every call, so writing
    each small input piece as it comes would keep a file's tiny row groups
    (and their poor compression); pieces are held until a full group is ready.
    """

    def __init__(self, sink: Any, schema: pa.Schema, options: Options, layout: _Layout, name: str) -> None:
        self.schema = schema
        self._layout = layout
        self.rows_written = 0
        self._name = name
        self._limit = options.row_group_size
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self.plan = encodings.Plan()
        self._options = options
        self._sink = sink
        self._writer: pq.ParquetWriter | None = None

    def _open(self, first: pa.Table) -> pq.ParquetWriter:
        """Start the file once the first data is here: the encodings are chosen from it."""
        if self._options.tune_encodings:
            self.plan = encodings.choose(first, self._options.level, int96=self._layout.int96)
        return pq.ParquetWriter(
            self._sink,
            self.schema,
            compression=CODEC,
            compression_level=self._options.level,
            store_schema=self._layout.keep_arrow_schema,
            use_deprecated_int96_timestamps=self._layout.int96,
            write_statistics=True,
            **self.plan.writer_options(),
        )

    def add(self, table: pa.Table) -> None:
        if table.schema != self.schema:
            if not table.schema.equals(self.schema, check_metadata=False):
                raise InputError(self._name, f"transform changed the schema between batches: {table.schema}")
            table = table.replace_schema_metadata(self.schema.metadata)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        while self._pending_rows >= self._limit:
            self._flush(self._limit)
        if self._pending_bytes >= ROW_GROUP_BYTES:
            # Wide or string-heavy rows: end the group by size, or it would hold the whole file.
            self._flush(self._pending_rows)

    def close(self) -> pq.FileMetaData:
        if self._pending_rows:
            self._flush(self._pending_rows)
        writer = self._writer or self._open(encodings.empty(self.schema))
        self._writer = writer
        if not self._layout.keep_arrow_schema and self._layout.key_values:
            # Without ARROW:schema the writer drops schema metadata; put the input's pairs back.
            writer.add_key_value_metadata(self._layout.key_values)
        writer.close()
        metadata = writer.writer.metadata
        assert metadata is not None
        return metadata

    def abandon(self) -> None:
        """Close without caring about the result: the caller throws the output away."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the original error is the one worth raising
                self._writer.close()

    def _flush(self, rows: int) -> None:
        combined = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
        head, rest = combined.slice(0, rows), combined.slice(rows)
        if self._writer is None:
            self._writer = self._open(head)
        self._writer.write_table(head, row_group_size=rows)
        self.rows_written += head.num_rows
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        self._pending_bytes = rest.nbytes if rest.num_rows else 0

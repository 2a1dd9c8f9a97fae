"""Writing one Parquet file from pieces: column chunks, row groups, page indexes, the footer.

Both engines end here. The re-encode engine hands whole in-memory Parquet files
(:meth:`Assembler.append_part`); the exact engine hands rewritten column chunks
(:class:`FileBuilder`). Every offset that points into the file is recomputed
for where the bytes land. This module copies bytes and edits footers; it never
decodes a value, and the footer it writes keeps every field of the trees it was
given.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from shared.errors import DamagedError, UnsupportedError, VerificationError
from shared.parquet import footer as ft
from shared.parquet import thrift
from shared.parquet.thrift import Struct, ThriftError, ThriftList

OI_PAGE_LOCATIONS = 1
PL_OFFSET, PL_COMPRESSED_SIZE, PL_FIRST_ROW = 1, 2, 3
BLOOM_NUM_BYTES = 1
#: A bloom filter header is a few small fields; this many bytes always hold it.
BLOOM_HEADER_MAX = 256


class Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> int | None: ...


@dataclass(frozen=True)
class FileSummary:
    """What a finished file holds, from the footer that was written."""

    num_rows: int
    num_row_groups: int
    footer_length: int


@dataclass
class _PageIndexes:
    """A chunk's page indexes, held until the end of the file where they are written."""

    chunk: Struct
    column_index: bytes | None
    offset_index: Struct | None


@dataclass
class Written:
    """Where things were written, to check the footer's offsets against (the proof's ground truth)."""

    pages: dict[int, bytes] = field(default_factory=dict)  # offset -> page header bytes written there
    blooms: dict[int, int] = field(default_factory=dict)  # offset -> length
    column_indexes: dict[int, int] = field(default_factory=dict)
    offset_indexes: dict[int, bytes] = field(default_factory=dict)


class FileBuilder:
    """Low-level writer of a Parquet file: bytes in order, row groups, page indexes at the end."""

    def __init__(self, sink: Writable, *, name: str = "output") -> None:
        self._sink = sink
        self.name = name  # labels the error when a footer cannot be written
        self.position = 0
        self.row_groups: list[Struct] = []
        self._indexes: list[_PageIndexes] = []
        self.written = Written()
        self.write(ft.MAGIC)

    def write(self, data: bytes | memoryview | pa.Buffer) -> int:
        """Write bytes; return the offset they start at."""
        start = self.position
        view = memoryview(data)
        if view.nbytes:
            self._sink.write(view)
        self.position += view.nbytes
        return start

    def add_row_group(self, group: Struct, indexes: list[tuple[Struct, bytes | None, Struct | None]],
                      *, renumber: bool = True) -> None:
        """Keep a finished row group (its chunks already written) and its chunks' page indexes."""
        if renumber and group.has(ft.RG_ORDINAL):
            group.set(ft.RG_ORDINAL, len(self.row_groups))
        self.row_groups.append(group)
        self._indexes.extend(_PageIndexes(chunk, ci, oi) for chunk, ci, oi in indexes)

    def write_bloom(self, chunk_meta: Struct, data: bytes) -> None:
        """Write a chunk's bloom filter (header + bitset) and point its metadata at it."""
        offset = self.write(data)
        chunk_meta.set(ft.CM_BLOOM_OFFSET, offset)
        if chunk_meta.has(ft.CM_BLOOM_LENGTH):
            chunk_meta.set(ft.CM_BLOOM_LENGTH, len(data))
        self.written.blooms[offset] = len(data)

    def finish(self, tree: Struct) -> FileSummary:
        """Write column indexes, then offset indexes, then ``tree`` as the footer with these row groups."""
        for item in self._indexes:
            if item.column_index is not None:
                offset = self.write(item.column_index)
                item.chunk.set(ft.CC_CI_OFFSET, offset, thrift.I64)
                item.chunk.set(ft.CC_CI_LENGTH, len(item.column_index), thrift.I32)
                self.written.column_indexes[offset] = len(item.column_index)
        for item in self._indexes:
            if item.offset_index is not None:
                raw = self._dumps(item.offset_index, "an offset index")
                offset = self.write(raw)
                item.chunk.set(ft.CC_OI_OFFSET, offset, thrift.I64)
                item.chunk.set(ft.CC_OI_LENGTH, len(raw), thrift.I32)
                self.written.offset_indexes[offset] = raw
        tree.set(ft.FMD_ROW_GROUPS, ThriftList(thrift.STRUCT, list(self.row_groups)), thrift.LIST)
        raw_footer = self._dumps(tree, "the footer")
        self.write(raw_footer)
        self.write(len(raw_footer).to_bytes(4, "little"))
        self.write(ft.MAGIC)
        rows = sum(ft.RowGroup(group).num_rows for group in self.row_groups)
        return FileSummary(rows, len(self.row_groups), len(raw_footer))


    def _dumps(self, tree: Struct, what: str) -> bytes:
        """Serialise a tree; one that cannot be (a value beyond its declared wire type) is refused in one line.

        A backstop: the Thrift reader already refuses field ids and integers the writer could not write back.
        """
        try:
            return thrift.dumps(tree)
        except ThriftError as exc:
            raise UnsupportedError(self.name, f"{what} cannot be written back: {exc} (check: footer write)") from exc


def shift_offset_index(raw: bytes, moved: Callable[[int], int],
                       size: Callable[[int], int] | None = None) -> Struct:
    """An OffsetIndex with each page location moved (and its size replaced, both keyed by the old offset).

    ``first_row_index`` and any field this code does not know stay as they were.
    """
    tree = thrift.loads(raw)
    for location in tree.get_structs(OI_PAGE_LOCATIONS):
        old = location.get_int(PL_OFFSET)
        if old is None:
            raise ThriftError("a page location has no offset")
        location.set(PL_OFFSET, moved(old), thrift.I64)
        if size is not None:
            location.set(PL_COMPRESSED_SIZE, size(old), thrift.I32)
    return tree


def bloom_length(read: Callable[[int, int], bytes], offset: int, length: int | None, limit: int) -> int:
    """A bloom filter's total length: its declared length, or its header plus the bitset it announces."""
    if length is not None:
        if length < 0 or offset + length > limit:
            raise ThriftError("bloom filter runs past the data")
        return length
    head = read(offset, min(BLOOM_HEADER_MAX, limit - offset))
    header, end = thrift.parse_struct(head)
    num_bytes = header.get_int(BLOOM_NUM_BYTES)
    if num_bytes is None or num_bytes < 0 or offset + end + num_bytes > limit:
        raise ThriftError("bloom filter header declares a bitset past the data")
    return end + num_bytes


class _Keep:
    """The default of :meth:`Assembler.finish`'s ``key_value_list``: keep the parts' own."""


KEEP = _Keep()


class Assembler:
    """Concatenates in-memory Parquet files (parts) of one schema into one file written to a sink."""

    def __init__(self, sink: Writable) -> None:
        self._builder = FileBuilder(sink)
        self._first: Struct | None = None
        self._schema: bytes | None = None
        self._parts = 0

    @property
    def position(self) -> int:
        """Bytes written so far."""
        return self._builder.position

    @property
    def written(self) -> Written:
        return self._builder.written

    def append_part(self, part: bytes | memoryview | pa.Buffer) -> None:
        """Copy a part's row groups into the output, every offset shifted to where its bytes land."""
        name = f"part {self._parts}"
        data = memoryview(part).cast("B") if not isinstance(part, bytes) else memoryview(part)
        try:
            parsed = ft.footer_from_bytes(data, name)
        except DamagedError as exc:  # pragma: no cover - footer_from_bytes raises NotParquetError
            raise VerificationError(name, f"is not a valid Parquet part ({exc})") from exc
        tree = parsed.tree
        schema = tree.get_list(ft.FMD_SCHEMA)
        schema_raw = thrift.dumps(Struct([thrift.Field(1, thrift.LIST, schema)])) if schema else b""
        if self._first is None:
            self._first, self._schema = tree, schema_raw
        elif schema_raw != self._schema:
            raise VerificationError(name, "has schema elements different from the first part's (check: schema)")
        self._parts += 1
        for group in tree.get_structs(ft.FMD_ROW_GROUPS):
            self._append_group(data, parsed.start, group, name)

    def _append_group(self, data: memoryview, limit: int, group: Struct, name: str) -> None:
        builder = self._builder
        indexes: list[tuple[Struct, bytes | None, Struct | None]] = []
        blooms: list[tuple[Struct, bytes]] = []
        first_start: int | None = None
        for chunk_tree in group.get_structs(ft.RG_COLUMNS):
            chunk = ft.ColumnChunk(chunk_tree)
            meta = chunk.meta_data
            if meta is None:
                raise VerificationError(name, "has a column chunk without metadata (check: column chunk)")
            start, length = meta.chunk_start(), meta.total_compressed_size
            if length < 0 or (length and start < 4) or start + length > limit:
                raise VerificationError(name, f"column chunk at {start} runs past its data (check: column chunk)")
            new_start = builder.write(data[start:start + length])
            first_start = new_start if first_start is None else first_start
            delta = new_start - start
            _shift_chunk(chunk_tree, meta.tree, start, length, delta)
            indexes.append(_page_indexes(data, limit, chunk, delta, name))
            bloom = _bloom_bytes(data, limit, meta, name)
            if bloom is not None:
                blooms.append((meta.tree, bloom))
        for meta_tree, bloom in blooms:
            builder.write_bloom(meta_tree, bloom)
        if first_start is not None and group.has(ft.RG_FILE_OFFSET):
            group.set(ft.RG_FILE_OFFSET, first_start)
        builder.add_row_group(group, indexes)

    def finish(self, *, key_values: list[tuple[str, str | None]] | None = None,
               key_value_list: ThriftList | _Keep | None = KEEP, schema: ThriftList | None = None) -> FileSummary:
        """Write page indexes and the footer: the first part's, with all row groups and these key-values.

        ``key_value_list``, when given, is the footer's key-value list exactly
        as another footer held it (``None``: no list), so bytes that are not
        UTF-8 and values that are not strings survive; ``key_values`` builds
        one from text pairs instead. ``schema``, when given, replaces the
        parts' schema elements with an equivalent list (the input's own, byte
        for byte), for a caller that has proven the two describe the same leaf
        columns; every chunk's ``path_in_schema`` is then rewritten to match it.
        """
        if self._first is None:
            raise VerificationError("assembly", "no part was appended (check: parts)")
        tree = copy.deepcopy(self._first)
        if schema is not None:
            tree.set(ft.FMD_SCHEMA, schema, thrift.LIST)
            _name_chunks_by(schema, self._builder.row_groups)
        rows = sum(ft.RowGroup(group).num_rows for group in self._builder.row_groups)
        tree.set(ft.FMD_NUM_ROWS, rows, thrift.I64)
        if not isinstance(key_value_list, _Keep):
            if key_value_list is None:
                tree.remove(ft.FMD_KEY_VALUES)
            else:
                tree.set(ft.FMD_KEY_VALUES, key_value_list, thrift.LIST)
        elif key_values is not None:
            if key_values:
                ft.FileMeta(tree).set_key_value_metadata(key_values)
            else:
                tree.remove(ft.FMD_KEY_VALUES)
        return self._builder.finish(tree)


def _name_chunks_by(schema: ThriftList, row_groups: list[Struct]) -> None:
    """Give every column chunk the ``path_in_schema`` of its leaf in ``schema``, or refuse when they don't pair up."""
    paths = _raw_leaf_paths([item for item in schema.items if isinstance(item, Struct)])
    for group in row_groups:
        chunks = ft.RowGroup(group).columns
        if len(chunks) != len(paths):
            raise VerificationError("assembly", f"a row group holds {len(chunks)} column chunks for "
                                                f"{len(paths)} leaf columns (check: schema)")
        for chunk, path in zip(chunks, paths, strict=True):
            meta = chunk.meta_data
            if meta is None:
                raise VerificationError("assembly", "a column chunk has no metadata (check: schema)")
            meta.tree.set(ft.CM_PATH, ThriftList(thrift.BINARY, list(path)), thrift.LIST)


def _raw_leaf_paths(elements: list[Struct]) -> list[list[bytes]]:
    """Each leaf's path as the schema's raw name bytes (never decoded, so any name survives)."""
    paths: list[list[bytes]] = []
    stack: list[tuple[int, list[bytes]]] = [(elements[0].get_int(ft.SE_NUM_CHILDREN) or 0, [])] if elements else []
    for element in elements[1:]:
        if not stack:
            raise VerificationError("assembly", "the schema has elements past its root's children (check: schema)")
        left, prefix = stack.pop()
        if left > 1:
            stack.append((left - 1, prefix))
        path = [*prefix, element.get_binary(ft.SE_NAME) or b""]
        children = element.get_int(ft.SE_NUM_CHILDREN) or 0
        if children:
            stack.append((children, path))
        else:
            paths.append(path)
    return paths


def _shift_chunk(chunk: Struct, meta: Struct, start: int, length: int, delta: int) -> None:
    """Move every offset of a byte-for-byte copied chunk by ``delta``."""
    for field_id in (ft.CM_DATA_PAGE_OFFSET, ft.CM_DICT_PAGE_OFFSET, ft.CM_INDEX_PAGE_OFFSET):
        value = meta.get_int(field_id)
        if value is not None and start <= value < start + length:
            meta.set(field_id, value + delta)
    file_offset = chunk.get_int(ft.CC_FILE_OFFSET)
    if file_offset is not None:
        inside = start <= file_offset <= start + length
        chunk.set(ft.CC_FILE_OFFSET, file_offset + delta if inside else start + delta)


def _page_indexes(data: memoryview, limit: int, chunk: ft.ColumnChunk, delta: int,
                  name: str) -> tuple[Struct, bytes | None, Struct | None]:
    column_index = offset_index = None
    ci_offset, ci_length = chunk.column_index_offset, chunk.column_index_length
    if ci_offset is not None and ci_length is not None:
        if ci_offset < 4 or ci_length < 0 or ci_offset + ci_length > limit:
            raise VerificationError(name, "column index runs past the data (check: page index)")
        column_index = bytes(data[ci_offset:ci_offset + ci_length])
    oi_offset, oi_length = chunk.offset_index_offset, chunk.offset_index_length
    if oi_offset is not None and oi_length is not None:
        if oi_offset < 4 or oi_length < 0 or oi_offset + oi_length > limit:
            raise VerificationError(name, "offset index runs past the data (check: page index)")
        try:
            offset_index = shift_offset_index(bytes(data[oi_offset:oi_offset + oi_length]), lambda o: o + delta)
        except ThriftError as exc:
            raise VerificationError(name, f"offset index is not valid Thrift ({exc}) (check: page index)") from exc
    return chunk.tree, column_index, offset_index


def _bloom_bytes(data: memoryview, limit: int, meta: ft.ColumnMeta, name: str) -> bytes | None:
    offset = meta.bloom_filter_offset
    if offset is None:
        return None
    try:
        length = bloom_length(lambda o, n: bytes(data[o:o + n]), offset, meta.bloom_filter_length, limit)
    except ThriftError as exc:
        raise VerificationError(name, f"bloom filter is unreadable ({exc}) (check: bloom filter)") from exc
    return bytes(data[offset:offset + length])

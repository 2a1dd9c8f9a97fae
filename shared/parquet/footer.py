"""Reading a Parquet footer and typed views of what the engines need from it.

The footer is kept as the generic Thrift tree (:mod:`shared.parquet.thrift`),
so writing it back keeps every field, known or not; the classes here are thin
views that read and set fields by their parquet.thrift ids. This module never
reads column data and never trusts a length or count in the footer without
checking it against the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Protocol

from shared.errors import NotParquetError, UnsupportedError
from shared.parquet import thrift
from shared.parquet.thrift import Struct, ThriftError, ThriftList

MAGIC = b"PAR1"
ENCRYPTED_MAGIC = b"PARE"
#: Bytes read from the end at first: most footers fit, so one request reads length, magic and footer.
TAIL_GUESS = 64 * 1024

# parquet.thrift field ids.
FMD_VERSION, FMD_SCHEMA, FMD_NUM_ROWS, FMD_ROW_GROUPS = 1, 2, 3, 4
FMD_KEY_VALUES, FMD_CREATED_BY, FMD_COLUMN_ORDERS = 5, 6, 7
FMD_ENCRYPTION_ALGORITHM = 8
SE_TYPE, SE_TYPE_LENGTH, SE_REPETITION, SE_NAME, SE_NUM_CHILDREN, SE_CONVERTED = 1, 2, 3, 4, 5, 6
SE_LOGICAL = 10
RG_COLUMNS, RG_TOTAL_BYTE_SIZE, RG_NUM_ROWS, RG_SORTING, RG_FILE_OFFSET, RG_TOTAL_COMPRESSED, RG_ORDINAL = (
    1, 2, 3, 4, 5, 6, 7)
CC_FILE_PATH, CC_FILE_OFFSET, CC_META, CC_OI_OFFSET, CC_OI_LENGTH, CC_CI_OFFSET, CC_CI_LENGTH = 1, 2, 3, 4, 5, 6, 7
CC_CRYPTO, CC_ENCRYPTED_META = 8, 9
CM_TYPE, CM_ENCODINGS, CM_PATH, CM_CODEC, CM_NUM_VALUES = 1, 2, 3, 4, 5
CM_TOTAL_UNCOMPRESSED, CM_TOTAL_COMPRESSED = 6, 7
CM_KEY_VALUES, CM_DATA_PAGE_OFFSET, CM_INDEX_PAGE_OFFSET, CM_DICT_PAGE_OFFSET = 8, 9, 10, 11
CM_STATISTICS, CM_ENCODING_STATS, CM_BLOOM_OFFSET, CM_BLOOM_LENGTH = 12, 13, 14, 15
KV_KEY, KV_VALUE = 1, 2

# CompressionCodec
UNCOMPRESSED, SNAPPY, GZIP, LZO, BROTLI, LZ4, ZSTD, LZ4_RAW = range(8)
CODEC_NAMES = {UNCOMPRESSED: "UNCOMPRESSED", SNAPPY: "SNAPPY", GZIP: "GZIP", LZO: "LZO", BROTLI: "BROTLI",
               LZ4: "LZ4", ZSTD: "ZSTD", LZ4_RAW: "LZ4_RAW"}
# FieldRepetitionType
REQUIRED, OPTIONAL, REPEATED = 0, 1, 2
# ConvertedType values that mark a list or map group
_CT_MAP, _CT_MAP_KEY_VALUE, _CT_LIST = 1, 2, 3


class RandomAccess(Protocol):
    """What a source must offer: its size and positioned reads (a pyarrow NativeFile does)."""

    def size(self) -> int: ...

    def read_at(self, nbytes: int, offset: int) -> Any: ...


def read_exactly(source: RandomAccess, offset: int, length: int, name: str, what: str) -> bytes:
    """One positioned read that must return every byte asked for, or the file is short."""
    if length == 0:
        return b""
    try:
        data = source.read_at(length, offset)
    except (OSError, ValueError) as exc:
        raise NotParquetError(name, f"cannot read {what} at offset {offset} ({exc}) (check: file size)") from exc
    data = bytes(data) if not isinstance(data, bytes) else data
    if len(data) != length:
        raise NotParquetError(name, f"file ends inside {what}: wanted {length} bytes at offset {offset}, "
                                    f"got {len(data)} (check: file size)")
    return data


@dataclass
class Footer:
    """A file's footer: the generic tree, its bytes, and where it starts in the file."""

    tree: Struct
    raw: bytes
    start: int
    file_size: int

    @property
    def meta(self) -> FileMeta:
        return FileMeta(self.tree)


def read_footer(source: RandomAccess, name: str) -> Footer:
    """Read and parse a file's footer, checking both magics and the footer length against the file."""
    try:
        size = int(source.size())
    except (OSError, ValueError) as exc:
        raise NotParquetError(name, f"cannot tell the file's size ({exc})") from exc
    if size < 12:
        raise NotParquetError(name, f"is {size} bytes, too short for Parquet (check: file size)")
    tail_len = min(size, TAIL_GUESS)
    tail = read_exactly(source, size - tail_len, tail_len, name, "the footer")
    head = tail[:4] if tail_len == size else read_exactly(source, 0, 4, name, "the header magic")
    return parse_footer(head, tail, size, name, source)


def footer_from_bytes(data: bytes | memoryview, name: str) -> Footer:
    """Parse the footer of a whole Parquet file held in memory."""
    view = memoryview(data)
    if len(view) < 12:
        raise NotParquetError(name, f"is {len(view)} bytes, too short for Parquet (check: file size)")
    declared = struct.unpack("<I", view[-8:-4])[0]
    tail_len = min(len(view), max(TAIL_GUESS, declared + 8))  # the whole footer, however large; checked below
    return parse_footer(bytes(view[:4]), bytes(view[-tail_len:]), len(view), name, None)


def parse_footer(head: bytes, tail: bytes, size: int, name: str, source: RandomAccess | None) -> Footer:
    end_magic = tail[-4:]
    if end_magic == ENCRYPTED_MAGIC or head == ENCRYPTED_MAGIC:
        raise UnsupportedError(name, "encrypted Parquet is not supported")
    if end_magic != MAGIC or head != MAGIC:
        raise NotParquetError(name, "does not start and end with the Parquet magic PAR1 (check: magic)")
    length = struct.unpack("<I", tail[-8:-4])[0]
    if length + 12 > size:
        raise NotParquetError(name, f"declares a {length}-byte footer in a {size}-byte file (check: footer length)")
    start = size - 8 - length
    if length + 8 <= len(tail):
        raw = tail[len(tail) - 8 - length:-8]
    elif source is not None:
        raw = read_exactly(source, start, length, name, "the footer")
    else:  # footer_from_bytes passes a tail that holds any footer that fits in the file
        raise NotParquetError(name, "footer not in memory (check: footer length)")
    try:
        tree = thrift.loads(raw, max_nodes=thrift.MAX_NODES)
    except thrift.ThriftTooComplex as exc:
        raise NotParquetError(name, f"footer too complex: {length} bytes holding more than {thrift.MAX_NODES} "
                                    "Thrift elements (check: footer size)") from exc
    except ThriftError as exc:
        raise NotParquetError(name, f"footer is not valid Thrift: {exc} (check: footer)") from exc
    return Footer(tree, raw, start, size)


def _text(value: thrift.Value | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _need(value: int | None, what: str) -> int:
    if value is None:
        raise ThriftError(f"required field {what} is missing")
    return value


class _View:
    """A typed view over one Thrift struct; setting a field writes through to the tree."""

    def __init__(self, tree: Struct) -> None:
        self.tree = tree

    def _int(self, field_id: int) -> int | None:
        return self.tree.get_int(field_id)

    def _set_int(self, field_id: int, value: int, type_: int = thrift.I64) -> None:
        self.tree.set(field_id, value, type_)


class SchemaElement(_View):
    @property
    def name(self) -> str:
        return (self.tree.get_binary(SE_NAME) or b"").decode("utf-8", "replace")

    @property
    def type(self) -> int | None:
        return self._int(SE_TYPE)

    @property
    def repetition(self) -> int | None:
        return self._int(SE_REPETITION)

    @property
    def num_children(self) -> int:
        return self._int(SE_NUM_CHILDREN) or 0

    @property
    def converted_type(self) -> int | None:
        return self._int(SE_CONVERTED)

    @property
    def is_list_or_map(self) -> bool:
        logical = self.tree.get_struct(SE_LOGICAL)
        logical_ids = {f.id for f in logical.fields} if logical is not None else set()
        return self.converted_type in (_CT_MAP, _CT_MAP_KEY_VALUE, _CT_LIST) or bool(logical_ids & {2, 3})


class ColumnMeta(_View):
    @property
    def type(self) -> int:
        return _need(self._int(CM_TYPE), "ColumnMetaData.type")

    @property
    def encodings(self) -> list[int]:
        found = self.tree.get_list(CM_ENCODINGS)
        return [int(v) for v in found.items if isinstance(v, int)] if found else []

    @property
    def path_in_schema(self) -> list[str]:
        found = self.tree.get_list(CM_PATH)
        return [bytes(v).decode("utf-8", "replace") for v in found.items if isinstance(v, bytes)] if found else []

    @property
    def codec(self) -> int:
        return _need(self._int(CM_CODEC), "ColumnMetaData.codec")

    @codec.setter
    def codec(self, value: int) -> None:
        self._set_int(CM_CODEC, value, thrift.I32)

    @property
    def num_values(self) -> int:
        return _need(self._int(CM_NUM_VALUES), "ColumnMetaData.num_values")

    @property
    def total_uncompressed_size(self) -> int:
        return _need(self._int(CM_TOTAL_UNCOMPRESSED), "ColumnMetaData.total_uncompressed_size")

    @property
    def total_compressed_size(self) -> int:
        return _need(self._int(CM_TOTAL_COMPRESSED), "ColumnMetaData.total_compressed_size")

    @property
    def data_page_offset(self) -> int:
        return _need(self._int(CM_DATA_PAGE_OFFSET), "ColumnMetaData.data_page_offset")

    @property
    def index_page_offset(self) -> int | None:
        return self._int(CM_INDEX_PAGE_OFFSET)

    @property
    def dictionary_page_offset(self) -> int | None:
        return self._int(CM_DICT_PAGE_OFFSET)

    @property
    def bloom_filter_offset(self) -> int | None:
        return self._int(CM_BLOOM_OFFSET)

    @property
    def bloom_filter_length(self) -> int | None:
        return self._int(CM_BLOOM_LENGTH)

    def chunk_start(self) -> int:
        """Where the chunk's first page begins: the smaller of the dictionary and data page offsets.

        Writers are loose here: some store a dictionary offset of 0 when there is no
        dictionary page, pyarrow stores a data page offset of 0 for a chunk holding only a
        dictionary page. An offset inside the magic (< 4) is no offset.
        """
        dictionary = self.dictionary_page_offset
        data = self.data_page_offset
        candidates = [offset for offset in (dictionary, data) if offset is not None and offset >= 4]
        return min(candidates) if candidates else data


class ColumnChunk(_View):
    @property
    def file_path(self) -> str | None:
        raw = self.tree.get_binary(CC_FILE_PATH)
        return None if raw is None else raw.decode("utf-8", "replace")

    @property
    def file_offset(self) -> int | None:
        return self._int(CC_FILE_OFFSET)

    @property
    def meta_data(self) -> ColumnMeta | None:
        found = self.tree.get_struct(CC_META)
        return None if found is None else ColumnMeta(found)

    @property
    def offset_index_offset(self) -> int | None:
        return self._int(CC_OI_OFFSET)

    @property
    def offset_index_length(self) -> int | None:
        return self._int(CC_OI_LENGTH)

    @property
    def column_index_offset(self) -> int | None:
        return self._int(CC_CI_OFFSET)

    @property
    def column_index_length(self) -> int | None:
        return self._int(CC_CI_LENGTH)

    @property
    def crypto_metadata(self) -> Struct | None:
        return self.tree.get_struct(CC_CRYPTO)

    @property
    def is_encrypted(self) -> bool:
        return self.tree.has(CC_CRYPTO) or self.tree.has(CC_ENCRYPTED_META)


class RowGroup(_View):
    @property
    def columns(self) -> list[ColumnChunk]:
        return [ColumnChunk(item) for item in self.tree.get_structs(RG_COLUMNS)]

    @property
    def num_rows(self) -> int:
        return _need(self._int(RG_NUM_ROWS), "RowGroup.num_rows")

    @property
    def total_byte_size(self) -> int:
        return self._int(RG_TOTAL_BYTE_SIZE) or 0

    @property
    def file_offset(self) -> int | None:
        return self._int(RG_FILE_OFFSET)

    @property
    def total_compressed_size(self) -> int | None:
        return self._int(RG_TOTAL_COMPRESSED)

    @property
    def ordinal(self) -> int | None:
        return self._int(RG_ORDINAL)


class FileMeta(_View):
    @property
    def schema(self) -> list[SchemaElement]:
        return [SchemaElement(item) for item in self.tree.get_structs(FMD_SCHEMA)]

    @property
    def num_rows(self) -> int:
        return self._int(FMD_NUM_ROWS) or 0

    @property
    def row_groups(self) -> list[RowGroup]:
        return [RowGroup(item) for item in self.tree.get_structs(FMD_ROW_GROUPS)]

    @property
    def key_value_metadata(self) -> list[tuple[str, str | None]]:
        pairs: list[tuple[str, str | None]] = []
        for item in self.tree.get_structs(FMD_KEY_VALUES):
            # Some writers (fastparquet 0.8.2) stored non-string values; they are shown as text here
            # and kept as they were in the tree.
            pairs.append((_text(item.get(KV_KEY)) or "", _text(item.get(KV_VALUE))))
        return pairs

    def set_key_value_metadata(self, pairs: list[tuple[str, str | None]]) -> None:
        items: list[thrift.Value] = []
        for key, value in pairs:
            entry = Struct()
            entry.set(KV_KEY, key.encode(), thrift.BINARY)
            if value is not None:
                entry.set(KV_VALUE, value.encode(), thrift.BINARY)
            items.append(entry)
        self.tree.set(FMD_KEY_VALUES, ThriftList(thrift.STRUCT, items), thrift.LIST)

    @property
    def created_by(self) -> str | None:
        raw = self.tree.get_binary(FMD_CREATED_BY)
        return None if raw is None else raw.decode("utf-8", "replace")

    @property
    def is_encrypted(self) -> bool:
        return self.tree.has(FMD_ENCRYPTION_ALGORITHM)


@dataclass(frozen=True)
class Leaf:
    """One column of the schema, as the page walk and the proof need it."""

    path: tuple[str, ...]
    max_repetition: int
    max_definition: int
    top_level: int  # index of the root's child this column belongs to


def leaves(schema: list[SchemaElement]) -> tuple[list[Leaf], int]:
    """The schema's leaf columns in order, and its nesting depth counted as Arrow counts it.

    The flat element list is a pre-order walk driven by ``num_children``; a
    crafted count running past the list raises ThriftError. A list or map
    group's repeated middle level does not count as a level of its own, so the
    depth matches Arrow's (``list<int>`` is 2 deep, as in :mod:`shared.limits`).
    """
    if not schema:
        raise ThriftError("the schema has no root element")
    found: list[Leaf] = []
    depth = 0
    # Stack of (children left, path, rep, def, depth, parent is list/map, top-level index).
    stack: list[tuple[int, tuple[str, ...], int, int, int, bool, int]] = [
        (schema[0].num_children, (), 0, 0, 0, False, -1)]
    top = -1
    for index in range(1, len(schema)):
        while stack and stack[-1][0] == 0:
            stack.pop()
        if not stack:
            raise ThriftError(f"schema element {index} is outside the root's children")
        left, path, rep, dfn, level, parent_nested, top_index = stack.pop()
        stack.append((left - 1, path, rep, dfn, level, parent_nested, top_index))
        element = schema[index]
        if len(stack) == 1:
            top += 1
            top_index = top
        repetition = element.repetition
        rep += repetition == REPEATED
        dfn += repetition in (OPTIONAL, REPEATED)
        counted = not (parent_nested and repetition == REPEATED and element.num_children > 0)
        level += counted
        if element.num_children < 0 or element.num_children > len(schema):
            raise ThriftError(f"schema element {index} claims {element.num_children} children")
        if element.num_children == 0:
            if element.type is not None:  # a group with no children holds no column
                found.append(Leaf((*path, element.name), rep, dfn, top_index))
            depth = max(depth, level)
        else:
            stack.append((element.num_children, (*path, element.name), rep, dfn, level,
                          element.is_list_or_map, top_index))
    if any(entry[0] for entry in stack):
        raise ThriftError("the schema ends before all its groups' children")
    return found, depth

"""Page headers and the page walk of one column chunk.

A column chunk is a run of ``PageHeader`` + payload pairs. Headers are kept as
generic Thrift trees so a rewritten header keeps every field the input had,
including ones this code does not know. This module never decompresses or
decodes a payload; it only finds the pages and checks they fit their chunk.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from shared.parquet import thrift
from shared.parquet.thrift import Struct, ThriftError

# PageType
DATA_PAGE, INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 1, 2, 3
PAGE_TYPE_NAMES = {DATA_PAGE: "data page", INDEX_PAGE: "index page", DICTIONARY_PAGE: "dictionary page",
                   DATA_PAGE_V2: "data page v2"}
# PageHeader field ids
PH_TYPE, PH_UNCOMPRESSED, PH_COMPRESSED, PH_CRC = 1, 2, 3, 4
PH_DATA, PH_INDEX, PH_DICTIONARY, PH_DATA_V2 = 5, 6, 7, 8
# DataPageHeader / DictionaryPageHeader / DataPageHeaderV2
DP_NUM_VALUES = 1
V2_NUM_VALUES, V2_NUM_NULLS, V2_NUM_ROWS = 1, 2, 3
V2_DEF_LENGTH, V2_REP_LENGTH, V2_IS_COMPRESSED = 5, 6, 7


class PageError(ValueError):
    """A page is malformed; ``check`` names the check that failed, for the one-line message."""

    def __init__(self, page: int, problem: str, check: str) -> None:
        self.page = page
        self.problem = problem
        self.check = check
        super().__init__(f"page {page} {problem} (check: {check})")


@dataclass
class Page:
    """One page of a chunk: its parsed header, where it starts in the chunk, and its stored payload."""

    index: int
    header: Struct
    offset: int
    header_length: int
    payload: memoryview

    @property
    def type(self) -> int:
        return self.header.get_int(PH_TYPE) or 0

    @property
    def uncompressed_size(self) -> int:
        return self.header.get_int(PH_UNCOMPRESSED) or 0

    @property
    def compressed_size(self) -> int:
        return self.header.get_int(PH_COMPRESSED) or 0

    @property
    def crc(self) -> int | None:
        return self.header.get_int(PH_CRC)

    @property
    def is_data(self) -> bool:
        return self.type in (DATA_PAGE, DATA_PAGE_V2)

    def _sub(self) -> Struct:
        sub_id = {DATA_PAGE: PH_DATA, DATA_PAGE_V2: PH_DATA_V2, DICTIONARY_PAGE: PH_DICTIONARY}.get(self.type)
        found = self.header.get_struct(sub_id) if sub_id is not None else None
        if found is None:
            raise PageError(self.index, f"is a {PAGE_TYPE_NAMES.get(self.type)} without its header", "page header")
        return found

    @property
    def num_values(self) -> int:
        """Values in a data page (nulls included), 0 for other pages."""
        if not self.is_data:
            return 0
        value = self._sub().get_int(DP_NUM_VALUES)
        if value is None or value < 0:
            raise PageError(self.index, "has no valid num_values", "page header")
        return value

    @property
    def num_rows(self) -> int | None:
        """Rows in a data page v2 (which says); None for v1 pages, which do not."""
        return self._sub().get_int(V2_NUM_ROWS) if self.type == DATA_PAGE_V2 else None

    @property
    def levels_length(self) -> int:
        """Bytes of a v2 page's repetition and definition levels, stored uncompressed before the values."""
        if self.type != DATA_PAGE_V2:
            return 0
        sub = self._sub()
        total = (sub.get_int(V2_DEF_LENGTH) or 0) + (sub.get_int(V2_REP_LENGTH) or 0)
        if total < 0 or total > min(self.compressed_size, self.uncompressed_size):
            raise PageError(self.index, f"declares {total} bytes of levels in a smaller page", "page header")
        return total

    @property
    def values_compressed(self) -> bool:
        """Whether the values are compressed: always for v1; for v2 unless ``is_compressed`` is false."""
        if self.type != DATA_PAGE_V2:
            return True
        value = self._sub().get(V2_IS_COMPRESSED)
        return value is None or bool(value)

    def set_v2_compressed(self) -> None:
        """Mark a v2 page's values as compressed (the field's default is true, so an absent field stays so)."""
        sub = self._sub()
        if sub.has(V2_IS_COMPRESSED):
            sub.set(V2_IS_COMPRESSED, True)


def crc32(data: bytes | memoryview) -> int:
    """The page CRC as Parquet stores it: CRC-32 of the stored bytes, as a signed i32."""
    value = zlib.crc32(data)
    return value - (1 << 32) if value >= 1 << 31 else value


def parse_header(data: bytes | memoryview, pos: int, index: int) -> tuple[Struct, int]:
    """Parse the page header at ``pos``; PageError when it is truncated or not Thrift."""
    try:
        header, end = thrift.parse_struct(data, pos)
    except ThriftError as exc:
        problem = "header is truncated" if "truncated" in str(exc) else f"header is not valid Thrift ({exc})"
        raise PageError(index, problem, "page header") from exc
    for field_id, what in ((PH_TYPE, "type"), (PH_UNCOMPRESSED, "uncompressed size"),
                           (PH_COMPRESSED, "compressed size")):
        try:
            value = header.get_int(field_id)
        except ThriftError as exc:
            raise PageError(index, f"header has a malformed {what}", "page header") from exc
        if value is None or value < 0:
            raise PageError(index, f"header has no valid {what}", "page header")
    if header.get_int(PH_TYPE) not in PAGE_TYPE_NAMES:
        raise PageError(index, f"has unknown page type {header.get_int(PH_TYPE)}", "page header")
    return header, end


def serialize_header(header: Struct) -> bytes:
    return thrift.dumps(header)


def walk(chunk: bytes | memoryview) -> list[Page]:
    """Every page of a column chunk in order; the pages must fill the chunk exactly."""
    view = memoryview(chunk)
    pages: list[Page] = []
    pos = 0
    while pos < len(view):
        index = len(pages)
        header, end = parse_header(view, pos, index)
        size = header.get_int(PH_COMPRESSED) or 0
        if end + size > len(view):
            raise PageError(index, f"needs {end + size - pos} bytes but the column chunk has {len(view) - pos} "
                                   "left", "column chunk size")
        pages.append(Page(index, header, pos, end - pos, view[end:end + size]))
        pos = end + size
    return pages

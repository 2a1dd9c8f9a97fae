"""Page headers and the page walk of one column chunk.

A column chunk is a run of ``PageHeader`` + payload pairs. A rewritten header
must keep every field the input had, including ones this code does not know.
This module never decompresses or decodes a payload; it only finds the pages
and checks they fit their chunk.

Headers are read twice over, by the same rules. The fast path reads, with a
tight specialised reader, only what a rewrite needs (type, sizes, CRC, value
and row counts, v2 levels and its ``is_compressed`` flag), steps over every
other field checking it as the generic reader would, and remembers where the
fields a rewrite changes sit; a rewritten header is the header's own bytes with
those fields patched. It takes only headers whose rewrite by the generic
writer (:mod:`shared.parquet.thrift`) would be the very same bytes: ids in the
short form, the fields the generic reader would parse written canonically, the
known fields of their usual wire types. Anything else (and every malformed
header) goes the generic way, which parses the header into a tree, gives the
precise error, and writes the header back from the tree.
"""

from __future__ import annotations

import zlib

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


class _Fast:
    """A page header as the fast path read it: the values a rewrite needs, and where the changed fields sit.

    Spans are offsets into ``raw``, the header's own bytes.
    """

    __slots__ = ("compressed", "compressed_span", "crc", "crc_span", "flag", "flag_at", "levels", "num_rows",
                 "num_values", "raw", "type", "uncompressed")

    def __init__(self) -> None:
        self.type = -1
        self.uncompressed = -1
        self.compressed = -1
        self.crc: int | None = None
        self.compressed_span = (0, 0)
        self.crc_span = (0, 0)
        self.num_values = 0
        self.num_rows: int | None = None
        self.levels = 0
        self.flag: bool | None = None  # v2 is_compressed, None when absent
        self.flag_at = -1
        self.raw = b""


class Page:
    """One page of a chunk: its header, where it starts in the chunk, and its stored payload.

    ``header`` is the generic tree; a page the fast path read builds it only when asked (the engine never asks).
    """

    __slots__ = ("_fast", "_header", "header_length", "index", "offset", "payload")

    def __init__(self, index: int, header: Struct | None, offset: int, header_length: int, payload: memoryview,
                 *, fast: _Fast | None = None) -> None:
        if header is None and fast is None:
            raise ValueError("a page needs its header")
        self.index = index
        self._header = header
        self._fast = fast
        self.offset = offset
        self.header_length = header_length
        self.payload = payload

    def __repr__(self) -> str:
        return (f"Page(index={self.index}, type={self.type}, offset={self.offset}, "
                f"header_length={self.header_length}, payload=<{len(self.payload)} bytes>)")

    @property
    def header(self) -> Struct:
        """The generic tree of the header; once built, it is the page's header (edits to it count)."""
        if self._header is None:
            assert self._fast is not None
            # The fast path accepts only what the generic reader accepts, so this parse cannot fail.
            self._header, _ = thrift.parse_struct(self._fast.raw)
        self._fast = None
        return self._header

    @header.setter
    def header(self, value: Struct) -> None:
        self._header = value
        self._fast = None

    @property
    def type(self) -> int:
        if self._fast is not None:
            return self._fast.type
        return self.header.get_int(PH_TYPE) or 0

    @property
    def uncompressed_size(self) -> int:
        if self._fast is not None:
            return self._fast.uncompressed
        return self.header.get_int(PH_UNCOMPRESSED) or 0

    @property
    def compressed_size(self) -> int:
        if self._fast is not None:
            return self._fast.compressed
        return self.header.get_int(PH_COMPRESSED) or 0

    @property
    def crc(self) -> int | None:
        if self._fast is not None:
            return self._fast.crc
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
        if self._fast is not None:
            return self._fast.num_values
        value = self._sub().get_int(DP_NUM_VALUES)
        if value is None or value < 0:
            raise PageError(self.index, "has no valid num_values", "page header")
        return value

    @property
    def num_rows(self) -> int | None:
        """Rows in a data page v2 (which says); None for v1 pages, which do not."""
        if self.type != DATA_PAGE_V2:
            return None
        if self._fast is not None:
            return self._fast.num_rows
        return self._sub().get_int(V2_NUM_ROWS)

    @property
    def levels_length(self) -> int:
        """Bytes of a v2 page's repetition and definition levels, stored uncompressed before the values."""
        if self.type != DATA_PAGE_V2:
            return 0
        if self._fast is not None:
            return self._fast.levels
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
        if self._fast is not None:
            return self._fast.flag is None or self._fast.flag
        value = self._sub().get(V2_IS_COMPRESSED)
        return value is None or bool(value)

    def set_v2_compressed(self) -> None:
        """Mark a v2 page's values as compressed (the field's default is true, so an absent field stays so)."""
        if self._fast is not None:
            if self._fast.flag is not None:
                self._fast.flag = True
            return
        sub = self._sub()
        if sub.has(V2_IS_COMPRESSED):
            sub.set(V2_IS_COMPRESSED, True)


def crc32(data: bytes | memoryview) -> int:
    """The page CRC as Parquet stores it: CRC-32 of the stored bytes, as a signed i32."""
    value = zlib.crc32(data)
    return value - (1 << 32) if value >= 1 << 31 else value


def parse_header(data: bytes | memoryview, pos: int, index: int) -> tuple[Struct, int]:
    """Parse the page header at ``pos`` into the generic tree; PageError when it is truncated or not Thrift."""
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


def new_header(page: Page, compressed_size: int, crc: int | None) -> bytes:
    """The page's header with its new compressed size (and CRC, where it had one), every other field kept.

    Call :meth:`Page.set_v2_compressed` first where it applies. A fast-path header is its own bytes with those
    fields patched; any other is rewritten from its tree by :func:`serialize_header`. ThriftError when a value
    does not fit its field.
    """
    fast = page._fast
    if fast is None:
        header = page.header
        header.set(PH_COMPRESSED, compressed_size)
        if crc is not None:
            header.set(PH_CRC, crc)
        return serialize_header(header)
    raw = fast.raw
    if fast.flag_at >= 0 and fast.flag:
        patched = bytearray(raw)
        patched[fast.flag_at] = (patched[fast.flag_at] & 0xF0) | thrift.BOOL_TRUE
        raw = bytes(patched)
    out = bytearray()
    start, end = fast.compressed_span
    out += raw[:start]
    _zigzag32(compressed_size, out)
    if crc is not None and fast.crc is not None:
        crc_start, crc_end = fast.crc_span
        out += raw[end:crc_start]
        _zigzag32(crc, out)
        end = crc_end
    out += raw[end:]
    return bytes(out)


def stored_size(header: bytes | memoryview) -> int:
    """The compressed size a page header declares (the bytes of payload after it), read as a page walk would."""
    try:
        fast, _ = _fast_header(header, 0, len(header))
        return fast.compressed
    except _Slow:
        pass
    parsed, _ = thrift.parse_struct(header)
    return parsed.get_int(PH_COMPRESSED) or 0


def walk(chunk: bytes | memoryview) -> list[Page]:
    """Every page of a column chunk in order; the pages must fill the chunk exactly."""
    view = memoryview(chunk)
    data = chunk if isinstance(chunk, bytes) else view.cast("B") if view.format != "B" else view
    total = len(view)
    pages: list[Page] = []
    pos = 0
    while pos < total:
        index = len(pages)
        try:
            fast, end = _fast_header(data, pos, total)
            size = fast.compressed
            page = Page(index, None, pos, end - pos, view[end:end + size], fast=fast)
        except _Slow:
            header, end = parse_header(view, pos, index)
            size = header.get_int(PH_COMPRESSED) or 0
            page = Page(index, header, pos, end - pos, view[end:end + size])
        if end + size > total:
            raise PageError(index, f"needs {end + size - pos} bytes but the column chunk has {total - pos} "
                                   "left", "column chunk size")
        pages.append(page)
        pos = end + size
    return pages


# ---------------------------------------------------------------- the fast path


class _Slow(Exception):
    """The fast path does not take this header: the generic path decides (and gives any error)."""


_I32 = 1 << 31
_I16 = 1 << 15
_INT_LIMITS = {thrift.I16: _I16, thrift.I32: _I32, thrift.I64: 1 << 63}
_FIXED = {thrift.BYTE: 1, thrift.DOUBLE: 8}
#: Nesting the fast path steps over; deeper (legal up to thrift.MAX_DEPTH) goes the generic way.
_FAST_DEPTH = 16


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """A varint of at most 10 bytes, any form (IndexError when truncated)."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    value = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise _Slow


def _canonical(data: bytes | memoryview, pos: int, limit: int) -> tuple[int, int]:
    """A zigzag integer the generic writer would write back as these very bytes: shortest form, within ``limit``."""
    byte = data[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    value, end = _varint(data, pos)
    if data[end - 1] == 0:
        raise _Slow  # a redundant trailing group: the writer would drop it
    value = (value >> 1) ^ -(value & 1)
    if not -limit <= value < limit:
        raise _Slow
    return value, end


def _skip(data: bytes | memoryview, pos: int, type_: int, depth: int, in_collection: bool) -> int:
    """Step over one value kept as bytes, checking it as the generic reader's ``_skip_value`` does."""
    if type_ == thrift.BOOL_TRUE or type_ == thrift.BOOL_FALSE:
        return pos + 1 if in_collection else pos
    limit = _INT_LIMITS.get(type_)
    if limit is not None:
        value, pos = _varint(data, pos)
        value = (value >> 1) ^ -(value & 1)
        if not -limit <= value < limit:
            raise _Slow
        return pos
    fixed = _FIXED.get(type_)
    if fixed is not None:
        return pos + fixed
    if type_ == thrift.BINARY:
        size, pos = _varint(data, pos)
        return pos + size
    if depth > _FAST_DEPTH:
        raise _Slow
    if type_ == thrift.STRUCT:
        last = 0
        while True:
            header = data[pos]
            pos += 1
            field_type = header & 0x0F
            if field_type == thrift.STOP:
                if header:
                    raise _Slow
                return pos
            delta = header >> 4
            if delta:
                last += delta
            else:
                raw, pos = _varint(data, pos)
                last = (raw >> 1) ^ -(raw & 1)
            if not -_I16 <= last < _I16:
                raise _Slow
            pos = _skip(data, pos, field_type, depth + 1, False)
    end = len(data)
    if type_ == thrift.LIST or type_ == thrift.SET:
        header = data[pos]
        pos += 1
        size = header >> 4
        if size == 15:
            size, pos = _varint(data, pos)
        if pos + size > end:
            raise _Slow
        elem = header & 0x0F
        for _ in range(size):
            pos = _skip(data, pos, elem, depth + 1, True)
            if pos > end:
                raise _Slow
        return pos
    if type_ == thrift.MAP:
        size, pos = _varint(data, pos)
        if size == 0:
            return pos
        types = data[pos]
        pos += 1
        if pos + size > end:
            raise _Slow
        key, value_type = types >> 4, types & 0x0F
        for _ in range(size):
            pos = _skip(data, pos, key, depth + 1, True)
            pos = _skip(data, pos, value_type, depth + 1, True)
            if pos > end:
                raise _Slow
        return pos
    raise _Slow  # an unknown compact type


def _scalar(data: bytes | memoryview, pos: int, type_: int) -> int:
    """Step over a scalar field of a struct the generic writer would rewrite: only forms it writes back as read."""
    if type_ == thrift.BOOL_TRUE or type_ == thrift.BOOL_FALSE:
        return pos
    if type_ == thrift.BYTE:
        data[pos]  # IndexError when truncated
        return pos + 1
    limit = _INT_LIMITS.get(type_)
    if limit is not None:
        return _canonical(data, pos, limit)[1]
    raise _Slow  # doubles and binaries (and unknown types): the generic path


def _sub_header(data: bytes | memoryview, pos: int, fast: _Fast, v2: bool) -> int:
    """The DataPageHeader (v1) or DataPageHeaderV2 fields a rewrite needs; the generic writer rewrites it all."""
    last = 0
    num_values: int | None = None
    def_length = rep_length = 0
    while True:
        header = data[pos]
        pos += 1
        type_ = header & 0x0F
        if type_ == thrift.STOP:
            if header:
                raise _Slow
            break
        delta = header >> 4
        if not delta:
            raise _Slow
        last += delta
        if v2 and last == V2_IS_COMPRESSED:
            if type_ != thrift.BOOL_TRUE and type_ != thrift.BOOL_FALSE:
                raise _Slow  # read by the generic path as any value's truth
            fast.flag = type_ == thrift.BOOL_TRUE
            fast.flag_at = pos - 1
        elif type_ == thrift.I32:
            value, pos = _canonical(data, pos, _I32)
            if last == V2_NUM_VALUES:
                num_values = value
            elif v2 and last == V2_NUM_ROWS:
                fast.num_rows = value
            elif v2 and last == V2_DEF_LENGTH:
                def_length = value
            elif v2 and last == V2_REP_LENGTH:
                rep_length = value
        elif last == V2_NUM_VALUES or (v2 and last in (V2_NUM_ROWS, V2_DEF_LENGTH, V2_REP_LENGTH)):
            raise _Slow  # a field it reads, of an unusual wire type
        elif type_ in _COMPOUND:
            pos = _skip(data, pos, type_, 3, False)
        else:
            pos = _scalar(data, pos, type_)
    if num_values is None or num_values < 0 or last >= _I16:
        raise _Slow
    fast.num_values = num_values
    if v2:
        levels = def_length + rep_length
        if levels < 0 or levels > min(fast.compressed, fast.uncompressed):
            raise _Slow
        fast.levels = levels
    return pos


_COMPOUND = frozenset({thrift.LIST, thrift.SET, thrift.MAP, thrift.STRUCT})


def _fast_header(data: bytes | memoryview, pos: int, end: int) -> tuple[_Fast, int]:
    """A page header read by the fast path; :class:`_Slow` when it takes the generic path."""
    start = pos
    fast = _Fast()
    seen_sub = False
    last = 0
    try:
        while True:
            header = data[pos]
            pos += 1
            type_ = header & 0x0F
            if type_ == thrift.STOP:
                if header:
                    raise _Slow
                break
            delta = header >> 4
            if not delta:
                raise _Slow
            last += delta
            if last <= PH_CRC:
                if type_ != thrift.I32:
                    raise _Slow
                at = pos
                value, pos = _canonical(data, pos, _I32)
                if last == PH_TYPE:
                    fast.type = value
                elif last == PH_UNCOMPRESSED:
                    fast.uncompressed = value
                elif last == PH_COMPRESSED:
                    fast.compressed = value
                    fast.compressed_span = (at - start, pos - start)
                else:
                    fast.crc = value
                    fast.crc_span = (at - start, pos - start)
            elif type_ == thrift.STRUCT and ((last == PH_DATA and fast.type == DATA_PAGE) or (
                    last == PH_DATA_V2 and fast.type == DATA_PAGE_V2)):
                if fast.compressed < 0 or fast.uncompressed < 0:
                    raise _Slow
                pos = _sub_header(data, pos, fast, last == PH_DATA_V2)
                seen_sub = True
            elif type_ in _COMPOUND:
                pos = _skip(data, pos, type_, 2, False)
            else:
                pos = _scalar(data, pos, type_)
    except IndexError:
        raise _Slow from None
    if pos > end or pos - start > thrift.MAX_NODES or last >= _I16:
        raise _Slow
    if fast.type not in PAGE_TYPE_NAMES or fast.uncompressed < 0 or fast.compressed < 0:
        raise _Slow
    if fast.type in (DATA_PAGE, DATA_PAGE_V2) and not seen_sub:
        raise _Slow
    if fast.flag_at >= 0:
        fast.flag_at -= start
    fast.raw = bytes(data[start:pos])
    return fast, pos


def _zigzag32(value: int, out: bytearray) -> None:
    if not -_I32 <= value < _I32:
        raise ThriftError(f"{value} does not fit in i32")
    value = ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)

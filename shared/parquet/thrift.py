"""A generic Thrift compact-protocol reader and writer for Parquet's metadata structures.

Parquet's footer and page headers are Thrift compact structs. Rewriting a file
must keep every field it holds, including fields added to parquet.thrift after
this code was written, so this module parses a struct into an ordered tree of
``(field id, wire type, value)`` without any schema. Callers get and set fields
by id.

A struct, list or map held in a field is kept as the bytes it was read from
until a caller looks into it (:attr:`Field.value`); a field never looked into
is written back as those very bytes. Fields this code never edits (statistics,
unknown fields, key-values) therefore survive byte for byte, and cost memory
only as bytes, not as one Python object per wire element. A field that was
looked into is written back in canonical form: the same field ids, wire types,
header forms and values, but a non-canonical varint (``0x80 0x00`` for 0) or
a bool list element written as 0 comes back in the usual form.

It must never trust a length it reads: every size is checked against the bytes
left before anything is allocated; structs, lists and maps together nest at
most :data:`MAX_DEPTH` deep; a struct holds at most :data:`MAX_NODES` wire
elements; field ids fit 16 bits and every integer fits its declared wire type
(so whatever is read can be written back). Truncated or crafted bytes raise
:class:`ThriftError`, never hang or recurse without limit.
"""

from __future__ import annotations

import copy
import struct as _struct
from dataclasses import dataclass, field
from typing import Any, Union

# Compact protocol wire types.
STOP = 0
BOOL_TRUE = 1
BOOL_FALSE = 2
BYTE = 3
I16 = 4
I32 = 5
I64 = 6
DOUBLE = 7
BINARY = 8
LIST = 9
SET = 10
MAP = 11
STRUCT = 12

#: Deepest nesting of structs, lists and maps accepted; Parquet's own structures nest fewer than 10 levels
#: (logical types, statistics); Thrift's C++ reader, which pyarrow uses, stops at 64 as well.
MAX_DEPTH = 64
#: Most wire elements (fields, list items, map keys and values) one parse accepts. A footer pyarrow writes holds
#: about 45 per column chunk with statistics and page indexes: 10,000 columns x 100 row groups is 45 million.
MAX_NODES = 64 * 1024 * 1024

Value = Union[bool, int, float, bytes, "Struct", "ThriftList", "ThriftMap"]


class ThriftError(ValueError):
    """The bytes are not a well-formed Thrift compact struct (truncated, crafted or corrupt)."""


class ThriftTooComplex(ThriftError):
    """The bytes hold more wire elements than :data:`MAX_NODES`: well formed, perhaps, but too costly to read."""


_UNREAD: Any = object()  # a Field whose value is still only its bytes


class Field:
    """One field of a struct as it was on the wire.

    ``short`` records whether the header used the delta form, so an unchanged
    field is written back exactly as it was read. A struct, list or map value is
    parsed from its bytes the first time :attr:`value` is read; until then
    :meth:`encoded` gives those bytes and the writer copies them.
    """

    __slots__ = ("_end", "_source", "_start", "_value", "id", "short", "type")

    def __init__(self, id: int, type: int, value: Value, short: bool = True) -> None:
        self.id = id
        self.type = type
        self.short = short
        self._value: Value = value
        self._source: bytes | memoryview | None = None
        self._start = 0
        self._end = 0

    @classmethod
    def _raw(cls, id: int, type: int, short: bool, source: bytes | memoryview,
             start: int, end: int) -> Field:
        item = cls(id, type, _UNREAD, short)
        item._source, item._start, item._end = source, start, end
        return item

    @property
    def value(self) -> Value:
        if self._source is not None:
            reader = _Reader(self._source, self._start, None)
            self._value = _read_value(reader, self.type, 1, False)
            self._source = None
        return self._value

    @value.setter
    def value(self, value: Value) -> None:
        self._value = value
        self._source = None

    @property
    def is_raw(self) -> bool:
        """Whether the value is still the bytes it was read from (never looked into)."""
        return self._source is not None

    def encoded(self) -> bytes | None:
        """The value's bytes as read, while nobody has looked into it; None after."""
        if self._source is None:
            return None
        return bytes(self._source[self._start:self._end])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Field):
            return NotImplemented
        if (self.id, self.type, self.short) != (other.id, other.type, other.short):
            return False
        if self.is_raw and other.is_raw and self.encoded() == other.encoded():
            return True
        return bool(self.value == other.value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = f"<{self._end - self._start} bytes unread>" if self.is_raw else repr(self._value)
        return f"Field(id={self.id}, type={self.type}, value={shown}, short={self.short})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Field:
        if self._source is not None:  # immutable bytes: shared, not parsed
            return Field._raw(self.id, self.type, self.short, self._source, self._start, self._end)
        return Field(self.id, self.type, copy.deepcopy(self._value, memo), self.short)



@dataclass(slots=True)
class ThriftList:
    """A list or set: its element type and its items, in order."""

    elem_type: int
    items: list[Value] = field(default_factory=list)
    is_set: bool = False
    long_size: bool = False  # the size was written as a varint after the header byte


@dataclass(slots=True)
class ThriftMap:
    """A map: key and value types and its entries, in order (duplicates kept)."""

    key_type: int
    value_type: int
    items: list[tuple[Value, Value]] = field(default_factory=list)


@dataclass(slots=True)
class Struct:
    """A struct as an ordered list of fields; unknown fields are kept like known ones."""

    fields: list[Field] = field(default_factory=list)

    def find(self, field_id: int) -> Field | None:
        """The field with this id, or None."""
        for item in self.fields:
            if item.id == field_id:
                return item
        return None

    def has(self, field_id: int) -> bool:
        return self.find(field_id) is not None

    def get(self, field_id: int, default: Value | None = None) -> Value | None:
        """The value of the field with this id, or ``default`` when absent."""
        found = self.find(field_id)
        return default if found is None else found.value

    def set(self, field_id: int, value: Value, type_: int | None = None) -> None:
        """Replace a field's value (keeping its wire type), or add it in id order with ``type_``."""
        found = self.find(field_id)
        if found is not None:
            if found.type in (BOOL_TRUE, BOOL_FALSE):
                found.type = BOOL_TRUE if value else BOOL_FALSE
            found.value = value
            return
        if type_ is None:
            raise ThriftError(f"field {field_id} is new: its wire type must be given")
        if type_ in (BOOL_TRUE, BOOL_FALSE):
            type_ = BOOL_TRUE if value else BOOL_FALSE
        position = len(self.fields)
        for index, item in enumerate(self.fields):
            if item.id > field_id:
                position = index
                break
        self.fields.insert(position, Field(field_id, type_, value))

    def remove(self, field_id: int) -> None:
        self.fields = [item for item in self.fields if item.id != field_id]

    # Typed helpers: a field of the wrong wire type is as bad as a missing one for the caller.
    def get_int(self, field_id: int) -> int | None:
        value = self.get(field_id)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ThriftError(f"field {field_id} is not an integer")
        return value

    def get_binary(self, field_id: int) -> bytes | None:
        value = self.get(field_id)
        if value is None:
            return None
        if not isinstance(value, bytes):
            raise ThriftError(f"field {field_id} is not binary")
        return value

    def get_struct(self, field_id: int) -> Struct | None:
        value = self.get(field_id)
        if value is None:
            return None
        if not isinstance(value, Struct):
            raise ThriftError(f"field {field_id} is not a struct")
        return value

    def get_list(self, field_id: int) -> ThriftList | None:
        value = self.get(field_id)
        if value is None:
            return None
        if not isinstance(value, ThriftList):
            raise ThriftError(f"field {field_id} is not a list")
        return value

    def get_structs(self, field_id: int) -> list[Struct]:
        """The items of a list-of-structs field (empty when absent)."""
        found = self.get_list(field_id)
        if found is None:
            return []
        if not all(isinstance(item, Struct) for item in found.items):
            raise ThriftError(f"field {field_id} is not a list of structs")
        return [item for item in found.items if isinstance(item, Struct)]


# ---------------------------------------------------------------- reading

#: Half the range of each integer wire type: a value must lie in [-limit, limit).
_LIMITS = {I16: 1 << 15, I32: 1 << 31, I64: 1 << 63}
_FIELD_ID_LIMIT = 1 << 15


class _Reader:
    """A cursor over bytes; every read checks the bytes left first, and counts elements against a budget."""

    def __init__(self, data: bytes | memoryview, pos: int = 0, budget: int | None = MAX_NODES) -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        # Unread fields keep a reference to immutable bytes; anything else is copied when a field is kept.
        self.shared = data if isinstance(data, bytes) else (
            self.data if isinstance(self.data.obj, bytes) and self.data.readonly else None)
        self.pos = pos
        self.end = len(self.data)
        self.budget = budget
        self.total = budget

    def need(self, count: int, what: str) -> None:
        if count < 0 or self.pos + count > self.end:
            raise ThriftError(f"truncated: {what} needs {count} bytes at offset {self.pos}, "
                              f"{self.end - self.pos} left")

    def count(self, items: int = 1) -> None:
        if self.budget is not None:
            self.budget -= items
            if self.budget < 0:
                raise ThriftTooComplex(f"too complex: more than {self.total} elements")

    def byte(self) -> int:
        # The hot path of every parse (a footer of 500 columns reads half a million bytes): one bounds check,
        # no call; ``data`` is a memoryview of unsigned bytes, so indexing gives an int.
        pos = self.pos
        if pos >= self.end:
            self.need(1, "a byte")
        self.pos = pos + 1
        return self.data[pos]

    def varint(self) -> int:
        data, pos, end = self.data, self.pos, self.end
        result = 0
        shift = 0
        for _ in range(10):
            if pos >= end:
                self.pos = pos
                self.need(1, "a byte")
            current = data[pos]
            pos += 1
            result |= (current & 0x7F) << shift
            if not current & 0x80:
                self.pos = pos
                return result
            shift += 7
        self.pos = pos
        raise ThriftError(f"varint longer than 10 bytes at offset {self.pos}")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def integer(self, type_: int) -> int:
        """An i16, i32 or i64, refused when it does not fit its wire type (the writer could not write it back)."""
        at = self.pos
        value = self.zigzag()
        limit = _LIMITS[type_]
        if not -limit <= value < limit:
            raise ThriftError(f"integer {value} at offset {at} does not fit its type i{limit.bit_length()}")
        return value

    def skip(self, count: int, what: str) -> None:
        self.need(count, what)
        self.pos += count

    def raw(self, count: int, what: str) -> bytes:
        self.need(count, what)
        value = bytes(self.data[self.pos:self.pos + count])
        self.pos += count
        return value

    def kept(self, start: int) -> bytes | memoryview:
        """The bytes from ``start`` to here, as an unread field keeps them: shared when immutable, else copied."""
        if self.shared is not None:
            return self.shared
        return bytes(self.data[start:self.pos])


def _nest(reader: _Reader, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ThriftError(f"structs, lists and maps nested deeper than {MAX_DEPTH} at offset {reader.pos}")


def _list_header(reader: _Reader) -> tuple[int, int, bool]:
    header = reader.byte()
    size = header >> 4
    long_size = size == 15
    if long_size:
        size = reader.varint()
    # Each element takes at least one byte on the wire: a claimed size beyond the bytes left is a lie.
    reader.need(size, f"a list of {size} elements")
    return header & 0x0F, size, long_size


def _map_header(reader: _Reader) -> tuple[int, int, int]:
    size = reader.varint()
    if size == 0:
        return 0, 0, 0
    types = reader.byte()
    reader.need(size, f"a map of {size} entries")
    return types >> 4, types & 0x0F, size


def _field_header(reader: _Reader, header: int, last: int) -> tuple[int, bool]:
    delta = header >> 4
    short = delta != 0
    at = reader.pos
    field_id = last + delta if short else reader.zigzag()
    if not -_FIELD_ID_LIMIT <= field_id < _FIELD_ID_LIMIT:
        raise ThriftError(f"field id {field_id} at offset {at} does not fit 16 bits")
    return field_id, short


def _skip_value(reader: _Reader, type_: int, depth: int, in_collection: bool) -> None:
    """Check one value as :func:`_read_value` would, and step over it without building anything."""
    if type_ in (BOOL_TRUE, BOOL_FALSE):
        if in_collection:
            reader.skip(1, "a bool")
    elif type_ == BYTE:
        reader.skip(1, "a byte")
    elif type_ in _LIMITS:
        reader.integer(type_)
    elif type_ == DOUBLE:
        reader.skip(8, "a double")
    elif type_ == BINARY:
        reader.skip(reader.varint(), "a binary value")
    elif type_ in (LIST, SET):
        _nest(reader, depth)
        elem_type, size, _ = _list_header(reader)
        reader.count(size)
        for _ in range(size):
            _skip_value(reader, elem_type, depth + 1, True)
    elif type_ == MAP:
        _nest(reader, depth)
        key_type, value_type, size = _map_header(reader)
        reader.count(2 * size)
        for _ in range(size):
            _skip_value(reader, key_type, depth + 1, True)
            _skip_value(reader, value_type, depth + 1, True)
    elif type_ == STRUCT:
        _nest(reader, depth)
        last = 0
        while True:
            header = reader.byte()
            field_type = header & 0x0F
            if field_type == STOP:
                if header != 0:
                    raise ThriftError(f"malformed stop byte {header:#x} at offset {reader.pos - 1}")
                return
            last, _ = _field_header(reader, header, last)
            reader.count()
            _skip_value(reader, field_type, depth + 1, False)
    else:
        raise ThriftError(f"unknown compact type {type_} at offset {reader.pos - 1}")


def _read_value(reader: _Reader, type_: int, depth: int, in_collection: bool) -> Value:
    """One value of ``type_``; ``depth`` is its nesting level when it is a struct, list or map."""
    if type_ in (BOOL_TRUE, BOOL_FALSE):
        # In a field header the type carries the value; in a list each bool is a byte.
        return reader.byte() == BOOL_TRUE if in_collection else type_ == BOOL_TRUE
    if type_ == BYTE:
        value = reader.byte()
        return value - 256 if value > 127 else value
    if type_ in _LIMITS:
        return reader.integer(type_)
    if type_ == DOUBLE:
        return float(_struct.unpack("<d", reader.raw(8, "a double"))[0])
    if type_ == BINARY:
        return reader.raw(reader.varint(), "a binary value")
    if type_ in (LIST, SET):
        return _read_list(reader, type_ == SET, depth)
    if type_ == MAP:
        return _read_map(reader, depth)
    if type_ == STRUCT:
        return _read_struct(reader, depth)
    raise ThriftError(f"unknown compact type {type_} at offset {reader.pos - 1}")


def _read_list(reader: _Reader, is_set: bool, depth: int) -> ThriftList:
    _nest(reader, depth)
    elem_type, size, long_size = _list_header(reader)
    reader.count(size)
    items = [_read_value(reader, elem_type, depth + 1, True) for _ in range(size)]
    return ThriftList(elem_type, items, is_set, long_size)


def _read_map(reader: _Reader, depth: int) -> ThriftMap:
    _nest(reader, depth)
    key_type, value_type, size = _map_header(reader)
    if size == 0:
        return ThriftMap(0, 0, [])
    reader.count(2 * size)
    items = [(_read_value(reader, key_type, depth + 1, True), _read_value(reader, value_type, depth + 1, True))
             for _ in range(size)]
    return ThriftMap(key_type, value_type, items)


def _read_struct(reader: _Reader, depth: int) -> Struct:
    """A struct whose scalar fields are read and whose struct, list and map fields are checked and kept as bytes."""
    _nest(reader, depth)
    result = Struct()
    last = 0
    while True:
        header = reader.byte()
        type_ = header & 0x0F
        if type_ == STOP:
            if header != 0:
                raise ThriftError(f"malformed stop byte {header:#x} at offset {reader.pos - 1}")
            return result
        field_id, short = _field_header(reader, header, last)
        last = field_id
        reader.count()
        if type_ in _COMPOUND:
            start = reader.pos
            _skip_value(reader, type_, depth + 1, False)
            source = reader.kept(start)
            offset = start if source is reader.shared else 0
            result.fields.append(Field._raw(field_id, type_, short, source, offset, offset + reader.pos - start))
        else:
            result.fields.append(Field(field_id, type_, _read_value(reader, type_, depth + 1, False), short))


_COMPOUND = frozenset({LIST, SET, MAP, STRUCT})


def parse_struct(data: bytes | memoryview, pos: int = 0, *, max_nodes: int | None = MAX_NODES) -> tuple[Struct, int]:
    """Parse one struct starting at ``pos``; return it and the offset just past it.

    :class:`ThriftTooComplex` when it holds more than ``max_nodes`` wire elements.
    """
    reader = _Reader(data, pos, max_nodes)
    try:
        value = _read_struct(reader, 1)
    except RecursionError as exc:  # belt and braces: MAX_DEPTH keeps well inside Python's limit
        raise ThriftError("structs nested too deep") from exc
    return value, reader.pos


def loads(data: bytes | memoryview, *, max_nodes: int | None = MAX_NODES) -> Struct:
    """Parse bytes holding exactly one struct; trailing bytes are an error."""
    value, end = parse_struct(data, max_nodes=max_nodes)
    if end != len(data):
        raise ThriftError(f"{len(data) - end} unexpected bytes after the struct")
    return value


# ---------------------------------------------------------------- writing


def _varint(value: int, out: bytearray) -> None:
    if value < 0:
        raise ThriftError("negative varint")
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return


def _zigzag(value: int, bits: int, out: bytearray) -> None:
    limit = 1 << (bits - 1)
    if not -limit <= value < limit:
        raise ThriftError(f"{value} does not fit in i{bits}")
    _varint((value << 1) ^ (value >> (bits - 1)), out)


_BITS = {I16: 16, I32: 32, I64: 64}


def _write_value(value: Value, type_: int, out: bytearray, in_collection: bool) -> None:
    if type_ in (BOOL_TRUE, BOOL_FALSE):
        if in_collection:
            out.append(BOOL_TRUE if value else BOOL_FALSE)
        return
    if type_ == BYTE:
        _check_int(value)
        assert isinstance(value, int)
        out.append(value & 0xFF)
    elif type_ in _BITS:
        _check_int(value)
        assert isinstance(value, int)
        _zigzag(value, _BITS[type_], out)
    elif type_ == DOUBLE:
        if not isinstance(value, float | int) or isinstance(value, bool):
            raise ThriftError("a double must be a number")
        out += _struct.pack("<d", value)
    elif type_ == BINARY:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise ThriftError("a binary value must be bytes")
        _varint(len(value), out)
        out += value
    elif type_ in (LIST, SET):
        if not isinstance(value, ThriftList):
            raise ThriftError("a list value must be a ThriftList")
        _write_list(value, out)
    elif type_ == MAP:
        if not isinstance(value, ThriftMap):
            raise ThriftError("a map value must be a ThriftMap")
        _write_map(value, out)
    elif type_ == STRUCT:
        if not isinstance(value, Struct):
            raise ThriftError("a struct value must be a Struct")
        _write_struct(value, out)
    else:
        raise ThriftError(f"unknown compact type {type_}")


def _check_int(value: Value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ThriftError("an integer field must hold an int")


def _write_list(value: ThriftList, out: bytearray) -> None:
    size = len(value.items)
    if size < 15 and not value.long_size:
        out.append((size << 4) | value.elem_type)
    else:
        out.append(0xF0 | value.elem_type)
        _varint(size, out)
    for item in value.items:
        _write_value(item, value.elem_type, out, True)


def _write_map(value: ThriftMap, out: bytearray) -> None:
    _varint(len(value.items), out)
    if not value.items:
        return
    out.append((value.key_type << 4) | value.value_type)
    for key, item in value.items:
        _write_value(key, value.key_type, out, True)
        _write_value(item, value.value_type, out, True)


def _write_struct(value: Struct, out: bytearray) -> None:
    last = 0
    for item in value.fields:
        if not -_FIELD_ID_LIMIT <= item.id < _FIELD_ID_LIMIT:
            raise ThriftError(f"field id {item.id} does not fit 16 bits")
        type_ = item.type
        if type_ in (BOOL_TRUE, BOOL_FALSE):
            type_ = BOOL_TRUE if item.value else BOOL_FALSE
        delta = item.id - last
        if item.short and 0 < delta <= 15:
            out.append((delta << 4) | type_)
        else:
            out.append(type_)
            _zigzag(item.id, 16, out)
        last = item.id
        if item._source is not None:  # never looked into: its bytes as they were read
            out += item._source[item._start:item._end]
        else:
            _write_value(item.value, type_, out, False)
    out.append(STOP)


def dumps(value: Struct) -> bytes:
    """Serialise a struct; fields never looked into come back byte for byte, others in canonical form."""
    out = bytearray()
    _write_struct(value, out)
    return bytes(out)

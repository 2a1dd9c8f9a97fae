"""A generic Thrift compact-protocol reader and writer for Parquet's metadata structures.

Parquet's footer and page headers are Thrift compact structs. Rewriting a file
must keep every field it holds, including fields added to parquet.thrift after
this code was written, so this module parses a struct into an ordered tree of
``(field id, wire type, value)`` without any schema, and writes the same tree
back byte for byte. Callers get and set fields by id.

It must never trust a length it reads: every size is checked against the bytes
left before anything is allocated, nesting is bounded, and truncated or crafted
bytes raise :class:`ThriftError`, never hang or recurse without limit.
"""

from __future__ import annotations

import struct as _struct
from dataclasses import dataclass, field
from typing import Union

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

#: Deepest nesting accepted; Parquet's own structures nest fewer than 10 levels (logical types, statistics).
MAX_DEPTH = 64

Value = Union[bool, int, float, bytes, "Struct", "ThriftList", "ThriftMap"]


class ThriftError(ValueError):
    """The bytes are not a well-formed Thrift compact struct (truncated, crafted or corrupt)."""


@dataclass
class Field:
    """One field of a struct as it was on the wire.

    ``short`` records whether the header used the delta form, so an unchanged
    field is written back exactly as it was read.
    """

    id: int
    type: int
    value: Value
    short: bool = True


@dataclass
class ThriftList:
    """A list or set: its element type and its items, in order."""

    elem_type: int
    items: list[Value] = field(default_factory=list)
    is_set: bool = False
    long_size: bool = False  # the size was written as a varint after the header byte


@dataclass
class ThriftMap:
    """A map: key and value types and its entries, in order (duplicates kept)."""

    key_type: int
    value_type: int
    items: list[tuple[Value, Value]] = field(default_factory=list)


@dataclass
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


class _Reader:
    """A cursor over bytes; every read checks the bytes left first."""

    def __init__(self, data: bytes | memoryview, pos: int = 0) -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        self.pos = pos
        self.end = len(self.data)

    def need(self, count: int, what: str) -> None:
        if count < 0 or self.pos + count > self.end:
            raise ThriftError(f"truncated: {what} needs {count} bytes at offset {self.pos}, "
                              f"{self.end - self.pos} left")

    def byte(self) -> int:
        self.need(1, "a byte")
        value = self.data[self.pos]
        self.pos += 1
        return int(value)

    def varint(self) -> int:
        result = 0
        shift = 0
        for _ in range(10):
            current = self.byte()
            result |= (current & 0x7F) << shift
            if not current & 0x80:
                return result
            shift += 7
        raise ThriftError(f"varint longer than 10 bytes at offset {self.pos}")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def raw(self, count: int, what: str) -> bytes:
        self.need(count, what)
        value = bytes(self.data[self.pos:self.pos + count])
        self.pos += count
        return value


def _read_value(reader: _Reader, type_: int, depth: int, in_collection: bool) -> Value:
    if type_ in (BOOL_TRUE, BOOL_FALSE):
        # In a field header the type carries the value; in a list each bool is a byte.
        return reader.byte() == BOOL_TRUE if in_collection else type_ == BOOL_TRUE
    if type_ == BYTE:
        value = reader.byte()
        return value - 256 if value > 127 else value
    if type_ in (I16, I32, I64):
        return reader.zigzag()
    if type_ == DOUBLE:
        return float(_struct.unpack("<d", reader.raw(8, "a double"))[0])
    if type_ == BINARY:
        return reader.raw(reader.varint(), "a binary value")
    if type_ in (LIST, SET):
        return _read_list(reader, type_ == SET, depth)
    if type_ == MAP:
        return _read_map(reader, depth)
    if type_ == STRUCT:
        return _read_struct(reader, depth + 1)
    raise ThriftError(f"unknown compact type {type_} at offset {reader.pos - 1}")


def _read_list(reader: _Reader, is_set: bool, depth: int) -> ThriftList:
    header = reader.byte()
    size = header >> 4
    long_size = size == 15
    if long_size:
        size = reader.varint()
    elem_type = header & 0x0F
    # Each element takes at least one byte on the wire: a claimed size beyond the bytes left is a lie.
    reader.need(size, f"a list of {size} elements")
    items = [_read_value(reader, elem_type, depth + 1, True) for _ in range(size)]
    return ThriftList(elem_type, items, is_set, long_size)


def _read_map(reader: _Reader, depth: int) -> ThriftMap:
    size = reader.varint()
    if size == 0:
        return ThriftMap(0, 0, [])
    types = reader.byte()
    reader.need(size, f"a map of {size} entries")
    key_type, value_type = types >> 4, types & 0x0F
    items = [(_read_value(reader, key_type, depth + 1, True), _read_value(reader, value_type, depth + 1, True))
             for _ in range(size)]
    return ThriftMap(key_type, value_type, items)


def _read_struct(reader: _Reader, depth: int) -> Struct:
    if depth > MAX_DEPTH:
        raise ThriftError(f"structs nested deeper than {MAX_DEPTH}")
    result = Struct()
    last = 0
    while True:
        header = reader.byte()
        type_ = header & 0x0F
        if type_ == STOP:
            if header != 0:
                raise ThriftError(f"malformed stop byte {header:#x} at offset {reader.pos - 1}")
            return result
        delta = header >> 4
        short = delta != 0
        field_id = last + delta if short else reader.zigzag()
        last = field_id
        result.fields.append(Field(field_id, type_, _read_value(reader, type_, depth, False), short))


def parse_struct(data: bytes | memoryview, pos: int = 0) -> tuple[Struct, int]:
    """Parse one struct starting at ``pos``; return it and the offset just past it."""
    reader = _Reader(data, pos)
    try:
        value = _read_struct(reader, 1)
    except RecursionError as exc:  # belt and braces: MAX_DEPTH keeps well inside Python's limit
        raise ThriftError("structs nested too deep") from exc
    return value, reader.pos


def loads(data: bytes | memoryview) -> Struct:
    """Parse bytes holding exactly one struct; trailing bytes are an error."""
    value, end = parse_struct(data)
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
        _write_value(item.value, type_, out, False)
    out.append(STOP)


def dumps(value: Struct) -> bytes:
    """Serialise a struct; an unchanged parsed tree comes back byte for byte."""
    out = bytearray()
    _write_struct(value, out)
    return bytes(out)

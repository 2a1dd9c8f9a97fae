"""Auto mode's choice between exact and re-encode, decided up front from the footer, with its reason.

The rule, in order:

1. ``exact`` or ``reencode`` requested: that mode (exact cannot select
   columns or transform: an :class:`OptionError` says so).
2. ``auto`` with columns or a transform: re-encode, the only mode that can change data.
3. ``auto`` otherwise: re-encode where that is provably identical, exact everywhere else.
   *Identical*: no INT96 (its values cannot be proven to survive Arrow), no
   narrow integer annotations Arrow would wrap, some columns, nothing in the
   footer pyarrow would not write back (sorting columns, column key-values,
   bloom filters, page indexes), and the Parquet schema pyarrow would write
   under one of the writer layouts equals the input's (``ParquetSchema.equals``:
   leaf names, repetition, physical/logical/converted type, length,
   precision, scale, field ids), and the Arrow schema read back is the
   input's, field metadata and nested names included.
   Re-encode is preferred there because it writes the smaller, more
   consistent file: measured with ``make bench`` (default levels), it wrote
   67.5 MB against exact's 72.6 MB on the mixed table, 90.9 against 102.2 MB
   on the wide one, 67.5 against 81.6 MB on the polars-written file, and
   within 1 % either way on the string and nested tables, at 1.1-1.5x exact's
   time and 3-4x its memory (still below the peers' on most inputs).

It must never read a data page, and never pick re-encode for a file whose
schema it cannot show would come back the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from shared import reencode
from shared.errors import OptionError, first_line
from shared.parquet import footer as ft
from shared.transform import BatchTransform

Requested = Literal["auto", "exact", "reencode"]


@dataclass(frozen=True)
class Choice:
    """The mode to run and the reason the report shows for it."""

    mode: Literal["exact", "reencode"]
    reason: str


def choose(parquet: pq.ParquetFile, requested: Requested, *, columns: tuple[str, ...] | None = None,
           transform: BatchTransform | None = None, row_group_size: int = reencode.Options.row_group_size,
           name: str = "input", footer: ft.FileMeta,
           memory_budget: int = reencode.Options.memory_budget) -> Choice:
    """Decide how to rewrite ``parquet``; see the module docstring for the rule."""
    changes = bool(columns) or transform is not None
    if requested == "exact":
        if changes:
            raise OptionError(name, "exact mode cannot select columns or transform; use --mode reencode or auto")
        return Choice("exact", "exact: requested")
    if requested == "reencode":
        return Choice("reencode", "reencode: requested")
    if changes:
        return Choice("reencode", "reencode: columns/transform asked for a change")
    obstacle = why_not_identical(parquet) or what_reencode_drops(footer)
    if obstacle is not None:
        return Choice("exact", f"exact: {obstacle}")
    groups = parquet.metadata.num_row_groups
    largest = max(reencode.decode_bytes(footer), default=0)
    target = coalesced_groups(parquet.metadata, row_group_size, reencode.group_bytes(memory_budget, largest))
    shape = "" if target == groups else f"; {'coalesces' if target < groups else 'splits'} {groups} row groups " \
                                        f"into {target}"
    return Choice("reencode", f"reencode: provably identical, encodings chosen per column{shape}")


def coalesced_groups(meta: pq.FileMetaData, row_group_size: int,
                     group_bytes: int = reencode.ROW_GROUP_BYTES) -> int:
    """How many row groups re-encode would write: full by rows, or by decoded bytes for wide rows."""
    if meta.num_rows == 0:
        return 0
    total_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    by_rows = math.ceil(meta.num_rows / max(row_group_size, 1))
    by_bytes = math.ceil(total_bytes / group_bytes)
    return int(max(by_rows, by_bytes, 1))


def why_not_identical(parquet: pq.ParquetFile) -> str | None:
    """Why a re-encode would not give back the input's schema, or None when it provably would."""
    meta, schema = parquet.metadata, parquet.schema
    if meta.num_columns == 0:
        return "files with no columns"
    for index in range(len(schema)):
        column = schema.column(index)
        if column.physical_type == "INT96":
            return f"INT96 timestamps (column {column.path!r})"
        logical = str(column.logical_type.type)
        if logical in ("GEOMETRY", "GEOGRAPHY"):
            return f"{logical} logical type would not survive a re-encode (column {column.path!r})"
        if _narrow_integer(column):
            return (f"column {column.path!r} holds {_narrow_integer(column)} values in {column.physical_type}: "
                    "Arrow would wrap values another writer stored outside that range")
    try:
        arrow = parquet.schema_arrow
    except (pa.ArrowException, ValueError) as exc:
        return f"Arrow cannot read the schema ({first_line(exc)})"
    twice = reencode.duplicate_names(arrow)
    if twice:
        return f"columns named {twice!r} more than once, which Arrow cannot tell apart"
    for layout in reencode.layouts(parquet):
        try:
            written = reencode.written_schema(arrow, layout)
        except (pa.ArrowException, ValueError) as exc:
            return f"Arrow cannot write the schema ({first_line(exc)})"
        if written.equals(schema):
            return _arrow_difference(arrow, written, layout)
    return schema_difference(schema, reencode.written_schema(arrow, reencode.layouts(parquet)[0]))


def _narrow_integer(column: pq.ColumnSchema) -> str | None:
    """``INT(8)``-style annotation on a wider physical type, whose out-of-range values Arrow wraps on reading."""
    converted = column.converted_type
    if converted in ("INT_8", "INT_16", "UINT_8", "UINT_16"):
        return str(converted)
    logical = column.logical_type
    if str(logical.type) == "INT":
        width = json.loads(logical.to_json()).get("bitWidth")
        if width in (8, 16):
            return f"INT({width})"
    return None


def what_reencode_drops(footer: ft.FileMeta) -> str | None:
    """What the input's footer holds that a re-encode through pyarrow would not write back, if anything."""
    for group in footer.row_groups:
        if group.tree.has(ft.RG_SORTING):
            return "row groups declare their sorting columns"
        for chunk in group.columns:
            meta = chunk.meta_data
            where = ".".join(meta.path_in_schema) if meta is not None else "?"
            if meta is not None and meta.tree.has(ft.CM_KEY_VALUES):
                return f"column {where!r} carries key-value metadata of its own"
            if meta is not None and meta.bloom_filter_offset is not None:
                return f"column {where!r} has a bloom filter"
            if chunk.column_index_offset is not None or chunk.offset_index_offset is not None:
                return f"column {where!r} has a page index"
    return None


def _arrow_difference(arrow: pa.Schema, written: pq.ParquetSchema, layout: reencode.Layout) -> str | None:
    """The Arrow schema a reader would get back must be the input's, field by field."""
    sink = pa.BufferOutputStream()
    pq.ParquetWriter(sink, arrow, **layout.writer_options()).close()
    back = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema_arrow
    for want, got in zip(arrow, back, strict=False):
        if (want.name, str(want.type), want.nullable, want.metadata) != (got.name, str(got.type), got.nullable,
                                                                          got.metadata):
            return f"column {want.name!r} would read back as {got.type}, not {want.type}"
    if len(arrow) != len(back):
        return "the Arrow schema would read back with other columns"
    return None


def schema_difference(have: pq.ParquetSchema, would: pq.ParquetSchema) -> str:
    """Name the first column whose Parquet schema a re-encode would change, and how."""
    for index in range(min(len(have), len(would))):
        old, new = have.column(index), would.column(index)
        if old.path != new.path:
            return _layout_difference(old.path, new.path)
        if old.physical_type != new.physical_type and str(old.logical_type.type) == "DECIMAL":
            return f"column {old.path!r} is DECIMAL stored as {old.physical_type}"
        if str(old.logical_type.type) == "UNKNOWN" and str(new.logical_type.type) != "UNKNOWN":
            return f"column {old.path!r} has the UNKNOWN logical type, which Arrow drops"
        if str(old.logical_type) != str(new.logical_type) or old.converted_type != new.converted_type:
            return (f"column {old.path!r} has logical type {old.logical_type} "
                    f"(converted {old.converted_type}), which Arrow writes as {new.logical_type}")
        if (old.physical_type, old.length, old.precision, old.scale) != (
                new.physical_type, new.length, new.precision, new.scale):
            return f"column {old.path!r} is {old.physical_type}, which Arrow writes as {new.physical_type}"
        if (old.max_definition_level, old.max_repetition_level) != (
                new.max_definition_level, new.max_repetition_level):
            return f"column {old.path!r} has other repetition levels than Arrow writes"
    if len(have) != len(would):
        return f"the file has {len(have)} leaf columns, Arrow would write {len(would)}"
    return "the Parquet schema would change (field ids, repetition or names)"


def _layout_difference(old: str, new: str) -> str:
    """Explain a leaf path Arrow would rename: a legacy list or map layout."""
    top = old.split(".")[0]
    old_parts, new_parts = old.split("."), new.split(".")
    if "key_value" in new_parts and "key_value" not in old_parts:
        return f"map {top!r} names its entries {old_parts[new_parts.index('key_value')]!r}, not 'key_value'"
    if len(old_parts) < len(new_parts):
        return f"legacy 2-level list {top!r}"
    return f"legacy list layout {top!r} ({old}, Arrow writes {new})"

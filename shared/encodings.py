"""Per-column Parquet encodings, chosen by trying them on a sample of the data.

Dictionary encoding, the writers' default everywhere, is the worst choice for
some columns: a unique, sorted id costs 200 times more than with
DELTA_BINARY_PACKED, and tries the dictionary first at that. Rather than guess
from types, each flat column of the first row group's head is encoded with
every candidate at the chosen zstd level, and the smallest wins; dictionary
keeps the column unless another encoding saves a clear margin, since every
reader handles it and it helps filters. Encodings are lossless by definition,
so this changes only size and speed, never values.

The reader policy (:mod:`shared.readers`) says which encodings each column may
get: under ``input``, only those the input file already used for it (its
footer's ColumnMetaData.encodings) plus PLAIN and dictionary; under a named
profile, that profile's set. Spark's vectorized reader fails on
BYTE_STREAM_SPLIT and fastparquet on DELTA_BYTE_ARRAY, so this module must
never try an encoding the policy does not allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from shared import readers

DICTIONARY = readers.DICTIONARY
PLAIN = "PLAIN"
#: Always allowed: every reader of Parquet reads them.
ALWAYS_ALLOWED = readers.ALWAYS
SAMPLE_ROWS = 65_536
#: Wide rows get a shorter sample: the trial should cost a few per cent of the run, not a second.
SAMPLE_BYTES = 8 * 1024**2
#: Another encoding must beat the dictionary by this fraction to replace it.
MARGIN = 0.05


@dataclass(frozen=True)
class Plan:
    """What to tell ParquetWriter: which columns keep a dictionary, and the others' encodings."""

    dictionary: list[str] = field(default_factory=list)  # leaf column paths
    encodings: dict[str, str] = field(default_factory=dict)

    def writer_options(self) -> dict[str, object]:
        if not self.encodings:
            return {}  # all dictionary: the writer's own default
        return {"use_dictionary": self.dictionary, "column_encoding": self.encodings}


def _candidates(type_: pa.DataType, int96: bool, allowed: frozenset[str]) -> list[str]:
    """The encodings worth trying for a column, limited by the reader rule."""
    permitted = ALWAYS_ALLOWED | allowed
    return [enc for enc in _by_type(type_, int96) if enc in permitted]


def _by_type(type_: pa.DataType, int96: bool) -> list[str]:
    if pa.types.is_boolean(type_) or pa.types.is_dictionary(type_):
        return []
    if int96 and pa.types.is_timestamp(type_):
        return []  # written as INT96, which DELTA_BINARY_PACKED cannot encode
    if pa.types.is_integer(type_) or pa.types.is_temporal(type_):
        return [DICTIONARY, "DELTA_BINARY_PACKED", PLAIN]
    if pa.types.is_floating(type_) and not pa.types.is_float16(type_):
        return [DICTIONARY, "BYTE_STREAM_SPLIT", "PLAIN"]
    if pa.types.is_string(type_) or pa.types.is_binary(type_) or pa.types.is_large_string(type_) \
            or pa.types.is_large_binary(type_):
        return [DICTIONARY, "DELTA_BYTE_ARRAY", "PLAIN"]
    return []


def choose(sample: pa.Table, level: int, *, int96: bool = False,
           allowed: readers.Allowed | Mapping[str, frozenset[str]] | None = None,
           page_version: str = readers.V1) -> Plan:
    """Pick each flat column's encoding from a trial on (the head of) ``sample``.

    ``allowed`` is the reader policy's verdict (:func:`shared.readers.allowed`);
    a plain mapping is read as the ``input`` policy's: a column's path to the
    encodings the input used for it, where a column it does not name (a new
    one, or no input at all) may only get PLAIN or dictionary. The trial
    writes pages of ``page_version``, as the output will.
    """
    if not isinstance(allowed, readers.Allowed):
        allowed = readers.Allowed(dict(allowed or {}), frozenset())
    per_row = sample.nbytes / max(sample.num_rows, 1)
    head = sample.slice(0, int(min(SAMPLE_ROWS, max(1024, SAMPLE_BYTES // max(per_row, 1)))))
    leaves = leaf_paths(head.schema)
    dictionary: list[str] = []
    encodings: dict[str, str] = {}
    for column in head.schema:
        candidates = _candidates(column.type, int96, allowed.for_column(column.name))
        if len(candidates) < 2 or "." in column.name or head.num_rows == 0:
            # nested, boolean, dotted names: the writer's defaults, for every leaf
            dictionary.extend(p for p in leaves if p == column.name or p.startswith(column.name + "."))
            continue
        one = head.select([column.name])
        sizes = {enc: _encoded_size(one, enc, level, page_version) for enc in candidates}
        best = min(sizes, key=lambda enc: sizes[enc])
        if best != DICTIONARY and sizes[best] < sizes[DICTIONARY] * (1 - MARGIN):
            encodings[column.name] = best
        else:
            dictionary.append(column.name)
    return Plan(dictionary, encodings)


def empty(schema: pa.Schema) -> pa.Table:
    """A table with no rows. (``Schema.empty_table`` imports pandas: half a second of start-up.)"""
    return pa.Table.from_batches([], schema=schema)


def leaf_paths(schema: pa.Schema) -> list[str]:
    """The Parquet leaf column paths of an Arrow schema, exactly as the writer will name them."""
    sink = pa.BufferOutputStream()
    pq.write_table(empty(schema), sink, store_schema=False)
    parquet_schema = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema
    return [parquet_schema.column(i).path for i in range(len(parquet_schema))]


def _encoded_size(table: pa.Table, encoding: str, level: int, page_version: str = readers.V1) -> int:
    sink = pa.BufferOutputStream()
    options: dict[str, object] = (
        {"use_dictionary": True} if encoding == DICTIONARY
        else {"use_dictionary": False, "column_encoding": encoding}
    )
    pq.write_table(table, sink, compression="zstd", compression_level=level, store_schema=False,
                   data_page_version=page_version, **options)
    return int(sink.tell())



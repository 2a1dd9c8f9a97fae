"""Limits against hostile or runaway files, checked before the work they guard.

Anyone who can upload can upload anything: a footer declaring a billion
columns, a schema nested a thousand deep, a row group that inflates from
kilobytes to gigabytes. What is checked, and when:

- columns, nesting depth and rows: from the footer (:func:`check_footer`, and
  exact mode from its own footer parse), before any page is read;
- row-group bytes (RECOMPRESS_MAX_ROW_GROUP_BYTES): :func:`check_footer` checks
  only each row group's declared ``total_byte_size``, which a crafted footer
  can understate. Exact mode also sums the ``uncompressed_page_size`` of every
  page header of a row group as it walks the chunks, and refuses the file once
  the sum (or any single page) passes the limit, before that page is
  decompressed; a codec never inflates a page past its declared size. Re-encode
  mode relies on the declared total and pyarrow's own checks;
- time: the deadline is checked between row groups, so a slow file stops well
  inside the host's timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from shared.errors import LimitError


@dataclass(frozen=True)
class Limits:
    """Upper bounds for one input file; see the RECOMPRESS_MAX_* settings."""

    max_columns: int = 10_000
    max_nesting_depth: int = 32
    max_rows: int = 10**10
    max_row_group_bytes: int = 2 * 1024**3
    deadline_seconds: int = 540


def check_footer(parquet: pq.ParquetFile, limits: Limits, name: str) -> None:
    """Refuse a file whose footer alone shows it breaks a limit."""
    meta = parquet.metadata
    if meta.num_columns > limits.max_columns:
        raise LimitError(name, f"has {meta.num_columns} columns, over the limit of {limits.max_columns} "
                               "(RECOMPRESS_MAX_COLUMNS)")
    try:
        depth = nesting_depth(parquet.schema_arrow)
    except (pa.ArrowException, ValueError):
        depth = 0  # Arrow cannot express this schema: exact mode, which checks depth from the raw footer, takes it
    if depth > limits.max_nesting_depth:
        raise LimitError(name, f"nests {depth} levels deep, over the limit of {limits.max_nesting_depth} "
                               "(RECOMPRESS_MAX_NESTING_DEPTH)")
    if meta.num_rows > limits.max_rows:
        raise LimitError(name, f"declares {meta.num_rows} rows, over the limit of {limits.max_rows} "
                               "(RECOMPRESS_MAX_ROWS)")
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        # Only the row group's declared total (exact mode checks the page headers as well): asking a crafted
        # footer for its column chunks can throw a C++ exception that pyarrow does not turn into a Python one
        # (the process aborts).
        declared = group.total_byte_size
        if declared > limits.max_row_group_bytes:
            raise LimitError(name, f"row group {index} decompresses to {declared} bytes, over the limit of "
                                   f"{limits.max_row_group_bytes} (RECOMPRESS_MAX_ROW_GROUP_BYTES)")


def nesting_depth(schema: pa.Schema) -> int:
    """How many levels deep the deepest field goes (a flat column is 1)."""

    def depth(type_: pa.DataType) -> int:
        if type_.num_fields == 0:
            return 1
        return 1 + max(depth(type_.field(i).type) for i in range(type_.num_fields))

    return max((depth(field.type) for field in schema), default=0)


class Deadline:
    """A per-file time budget, checked between row groups."""

    def __init__(self, seconds: float, name: str) -> None:
        self._seconds = seconds
        self._name = name
        self._ends = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._ends:
            raise LimitError(self._name, f"took longer than {self._seconds:g} s (RECOMPRESS_DEADLINE_SECONDS)")

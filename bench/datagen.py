"""The reference inputs: four shapes of Parquet file, and one of them from three writers, generated deterministically.

Each pyarrow file is written chunk by chunk (one seed per chunk), so the 2 GB
file of the memory check is the 100 MB mixed file with more chunks of the
same kind, and generating it never holds more than one chunk. The same mixed
rows are also written by polars (``write_parquet``) and DuckDB (``COPY ...
(FORMAT PARQUET)``), each with its own defaults (codec, row-group size,
encodings, page layout): a recompressor measured only on pyarrow's files
learns little about the files other writers produce. Those two hold the whole
table once while writing (a few hundred MB). The generator's version and the
row count are stored in the file's footer; a file is reused only when both
match, so changing a generator here regenerates its files on the next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import DATA
from bench.columns import (
    hex_strings,
    list_offsets,
    numbered,
    sentences,
    uuids,
    vocabulary,
    with_nulls,
    zipf_indices,
)

#: Bump when any generator changes what it writes.
VERSION = "2"
#: The writers an input can come from; only pyarrow's are written with a chosen codec and row-group size.
WRITERS = ("pyarrow", "polars", "duckdb")
SEED = 20240611
STAMP_KEY = b"bench.generator"
EPOCH_MS = 1_700_000_000_000  # 2023-11-14, a plausible recent timestamp


@dataclass(frozen=True)
class Spec:
    """One input file: how many chunks of how many rows, made by ``make(chunk_index, rows)``."""

    name: str
    chunks: int
    chunk_rows: int
    row_group_size: int
    make: Callable[[int, int], pa.Table]
    #: Who writes the file: pyarrow (snappy, ``row_group_size``), or polars / DuckDB at their defaults.
    writer: str = "pyarrow"

    @property
    def rows(self) -> int:
        return self.chunks * self.chunk_rows

    @property
    def path(self) -> Path:
        return DATA / f"{self.name}.parquet"

    @property
    def stamp(self) -> str:
        return f"{VERSION}:{self.name}:{self.rows}"


def _rng(kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([SEED, sum(kind.encode()), index])


def mixed_chunk(index: int, rows: int) -> pa.Table:
    """Ids, timestamps, doubles, small ints, low- and high-cardinality strings, booleans, a nullable column."""
    rng = _rng("mixed", index)
    ids = np.arange(index * rows, (index + 1) * rows, dtype=np.int64)
    countries = numbered("C", np.arange(40), 2)
    return pa.table({
        "id": ids,
        "event_time": pa.array(EPOCH_MS + ids * 250 + rng.integers(0, 250, rows), pa.timestamp("ms", tz="UTC")),
        "amount": np.round(rng.lognormal(3.0, 1.0, rows), 2),
        "score": np.round(rng.random(rows), 4),
        "quantity": rng.integers(1, 100, rows, dtype=np.int32),
        "rating": rng.integers(1, 6, rows, dtype=np.int8),
        "country": countries.take(pa.array(zipf_indices(rng, rows, len(countries)))),
        "user": numbered("user-", rng.integers(0, 3_000_000, rows), 7),
        "active": rng.random(rows) < 0.7,
        "discount": with_nulls(rng, np.round(rng.random(rows) * 50, 1), 0.4, pa.float64()),
    })


def wide_chunk(index: int, rows: int) -> pa.Table:
    """200 columns cycling through five types: per-column overhead dominates."""
    rng = _rng("wide", index)
    labels = numbered("label-", np.arange(25), 3)
    columns: dict[str, pa.Array | np.ndarray] = {}
    for col in range(200):
        kind = col % 5
        if kind == 0:
            columns[f"i{col:03d}"] = rng.integers(0, 10_000, rows, dtype=np.int32)
        elif kind == 1:
            columns[f"f{col:03d}"] = np.round(rng.normal(100.0, 15.0, rows), 3)
        elif kind == 2:
            columns[f"s{col:03d}"] = labels.take(pa.array(rng.integers(0, len(labels), rows)))
        elif kind == 3:
            columns[f"n{col:03d}"] = with_nulls(rng, rng.integers(0, 1 << 40, rows), 0.2, pa.int64())
        else:
            columns[f"b{col:03d}"] = rng.random(rows) < 0.5
    return pa.table(columns)


def strings_chunk(index: int, rows: int) -> pa.Table:
    """Mostly text: UUIDs, URLs, free text, e-mail-like names, hashes and low-cardinality codes."""
    rng = _rng("strings", index)
    words = vocabulary(_rng("vocabulary", 0), 3000)
    domains = pa.array(["example.com", "mail.test", "corp.example", "shop.example", "news.test"])
    names = numbered("u", rng.integers(0, 2_000_000, rows), 7)
    paths = sentences(rng, words, rows, 1, 4)
    return pa.table({
        "uuid": uuids(rng, rows),
        "url": pa.compute.binary_join_element_wise(
            "https://", domains.take(pa.array(rng.integers(0, 5, rows))), "/",
            pa.compute.replace_substring(paths, " ", "/"), ""),
        "text": sentences(rng, words, rows, 5, 30),
        "email": pa.compute.binary_join_element_wise(names, domains.take(pa.array(rng.integers(0, 5, rows))), "@"),
        "sha": hex_strings(rng, rows, 40),
        "sku": numbered("SKU-", zipf_indices(rng, rows, 5000), 5),
        "title": sentences(rng, words, rows, 2, 6),
    })


def nested_chunk(index: int, rows: int) -> pa.Table:
    """Lists, structs and lists of structs, some of them null."""
    rng = _rng("nested", index)
    tags = vocabulary(_rng("tags", 0), 60)
    tag_offsets = list_offsets(rng, rows, 5)
    value_offsets = list_offsets(rng, rows, 10)
    item_offsets = list_offsets(rng, rows, 4)
    items = int(item_offsets[-1])
    point = pa.StructArray.from_arrays(
        [pa.array(np.round(rng.normal(0, 100, rows), 4)), pa.array(np.round(rng.normal(0, 100, rows), 4)),
         tags.take(pa.array(rng.integers(0, len(tags), rows)))],
        names=["x", "y", "label"],
        mask=pa.array(rng.random(rows) < 0.1),
    )
    item = pa.StructArray.from_arrays(
        [pa.array(rng.integers(0, 50_000, items, dtype=np.int32)), pa.array(rng.integers(1, 20, items, dtype=np.int16)),
         pa.array(np.round(rng.lognormal(2.0, 0.8, items), 2))],
        names=["sku", "qty", "price"],
    )
    return pa.table({
        "id": np.arange(index * rows, (index + 1) * rows, dtype=np.int64),
        "tags": pa.ListArray.from_arrays(
            pa.array(tag_offsets), tags.take(pa.array(rng.integers(0, len(tags), int(tag_offsets[-1])))),
            mask=pa.array(rng.random(rows) < 0.05)),
        "values": pa.ListArray.from_arrays(pa.array(value_offsets), pa.array(rng.random(int(value_offsets[-1])))),
        "point": point,
        "items": pa.ListArray.from_arrays(pa.array(item_offsets), item),
    })


MILLION = 1_000_000
SPECS: dict[str, Spec] = {
    "mixed": Spec("mixed", 5, MILLION, MILLION, mixed_chunk),
    "wide": Spec("wide", 2, 100_000, 100_000, wide_chunk),
    "strings": Spec("strings", 3, 200_000, 200_000, strings_chunk),
    "nested": Spec("nested", 4, 250_000, 250_000, nested_chunk),
    # The same rows as "mixed", written by the other two libraries at their defaults.
    "mixed_polars": Spec("mixed_polars", 5, MILLION, MILLION, mixed_chunk, writer="polars"),
    "mixed_duckdb": Spec("mixed_duckdb", 5, MILLION, MILLION, mixed_chunk, writer="duckdb"),
}
#: The memory check's big input: the mixed generator, twenty times the rows.
LARGE = Spec("mixed_large", 100, MILLION, MILLION, mixed_chunk)


def is_current(spec: Spec) -> bool:
    """True when ``spec.path`` exists and was written by this generator version with these rows."""
    if not spec.path.exists():
        return False
    try:
        meta = pq.read_metadata(spec.path).metadata or {}
    except (OSError, pa.ArrowException):
        return False
    return meta.get(STAMP_KEY) == spec.stamp.encode()


def by_name(name: str) -> Spec:
    """An input by its name, the large one included."""
    return LARGE if name == LARGE.name else SPECS[name]


def ensure(spec: Spec, log: Callable[[str], None] = print) -> Path:
    """Generate ``spec``'s file unless a current one is already there; return its path."""
    if is_current(spec):
        return spec.path
    DATA.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    temp = spec.path.with_suffix(".parquet.partial")
    try:
        {"pyarrow": _write_pyarrow, "polars": _write_polars, "duckdb": _write_duckdb}[spec.writer](spec, temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    temp.replace(spec.path)
    log(f"generated {spec.path.name} with {spec.writer}: {spec.rows:,} rows, {spec.path.stat().st_size / 1e6:.1f} MB "
        f"in {time.perf_counter() - started:.1f} s")
    return spec.path


def _write_pyarrow(spec: Spec, temp: Path) -> None:
    """Chunk by chunk, snappy, ``spec.row_group_size`` rows per row group: never more than one chunk held."""
    writer: pq.ParquetWriter | None = None
    try:
        for index in range(spec.chunks):
            chunk = spec.make(index, spec.chunk_rows)
            if writer is None:
                schema = chunk.schema.with_metadata({STAMP_KEY: spec.stamp.encode()})
                writer = pq.ParquetWriter(temp, schema, compression="snappy")
            writer.write_table(chunk.replace_schema_metadata(writer.schema.metadata),
                               row_group_size=spec.row_group_size)
    finally:
        if writer is not None:
            writer.close()


def _whole(spec: Spec) -> pa.Table:
    return pa.concat_tables(spec.make(index, spec.chunk_rows) for index in range(spec.chunks))


def _write_polars(spec: Spec, temp: Path) -> None:
    """``DataFrame.write_parquet`` at polars' defaults (zstd, its row-group size), plus the stamp."""
    import polars as pl

    frame = pl.from_arrow(_whole(spec))
    assert isinstance(frame, pl.DataFrame)
    frame.write_parquet(temp, metadata={STAMP_KEY.decode(): spec.stamp})


def _write_duckdb(spec: Spec, temp: Path) -> None:
    """``COPY ... (FORMAT PARQUET)`` at DuckDB's defaults (snappy, its row-group size), plus the stamp.

    One thread, so the row order and row-group boundaries can't depend on scheduling.
    """
    import duckdb

    rows = _whole(spec)
    quoted_dst, stamp = (text.replace("'", "''") for text in (str(temp), spec.stamp))
    with duckdb.connect() as con:
        con.execute("SET threads = 1")
        con.execute("SET enable_progress_bar = false")
        con.register("rows", rows)
        con.execute(f"COPY (SELECT * FROM rows) TO '{quoted_dst}' "  # noqa: S608 - our own path and stamp
                    f"(FORMAT PARQUET, KV_METADATA {{'{STAMP_KEY.decode()}': '{stamp}'}})")

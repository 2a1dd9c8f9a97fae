"""Auto mode's choice: re-encode only where its output provably reads back as the input, and only when it gains.

Files of each kind are built with pyarrow's writer options; GEOMETRY files
are written in a subprocess, because registering geoarrow's extension types
is process-wide (and once crashed an interpreter reading an unknown CRS).
"""

from __future__ import annotations

import decimal
import io
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import hypothesis.strategies as st
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from shared import plan, reencode
from shared.errors import DamagedError, OptionError, UnsupportedError
from shared.parquet import footer, thrift
from shared.pipeline import recompress_bytes
from shared.settings import Settings
from tests.helpers import parquet_bytes, sample_table
from tests.shared.parquet.corpus import assert_same_file

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "fastparquet-test-data"


def open_file(data: bytes) -> pq.ParquetFile:
    return pq.ParquetFile(pa.BufferReader(data))


def choose(data: bytes, requested: str = "auto", **options: object) -> plan.Choice:
    """The plan for ``data``, from both footer readings, as the pipeline makes it."""
    meta = footer.footer_from_bytes(data, "x").meta
    return plan.choose(open_file(data), requested, footer=meta, **options)  # type: ignore[arg-type]


def auto(data: bytes, **options: object) -> plan.Choice:
    return choose(data, "auto", **options)


# --------------------------------------------------------------------------- requested modes


def test_a_requested_mode_is_used() -> None:
    data = parquet_bytes(sample_table(10))

    assert choose(data, "exact").mode == "exact"
    assert choose(data, "reencode").mode == "reencode"


def test_exact_with_columns_is_an_option_error() -> None:
    with pytest.raises(OptionError, match="exact mode cannot select columns or transform; use --mode reencode or auto"):
        choose(parquet_bytes(sample_table(10)), "exact", columns=("id",))


def test_auto_with_a_transform_re_encodes() -> None:
    choice = auto(parquet_bytes(sample_table(10)), transform=lambda batch: batch)

    assert choice == plan.Choice("reencode", "reencode: columns/transform asked for a change")


# --------------------------------------------------------------------------- worth it or not


def test_a_file_that_provably_survives_is_re_encoded_for_its_smaller_encodings() -> None:
    choice = auto(parquet_bytes(sample_table(1000)))

    assert choice == plan.Choice("reencode", "reencode: provably identical, encodings chosen per column")


def test_small_row_groups_are_coalesced_and_the_reason_says_so() -> None:
    choice = auto(parquet_bytes(sample_table(1000), row_group_size=100))

    assert choice == plan.Choice(
        "reencode", "reencode: provably identical, encodings chosen per column; coalesces 10 row groups into 1")


# --------------------------------------------------------------------------- what would not survive


def test_int96_goes_to_exact() -> None:
    table = pa.table({"t": pa.array([0, None], pa.timestamp("ns"))})
    choice = auto(parquet_bytes(table, use_deprecated_int96_timestamps=True, row_group_size=1))

    assert choice == plan.Choice("exact", "exact: INT96 timestamps (column 't')")


def test_a_file_with_no_columns_goes_to_exact() -> None:
    assert auto(parquet_bytes(pa.table({}))) == plan.Choice("exact", "exact: files with no columns")


@pytest.mark.parametrize(("precision", "physical"), [(5, "INT32"), (15, "INT64")])
def test_decimals_stored_as_integers_are_reproduced_by_the_writer_option(precision: int, physical: str) -> None:
    table = pa.table({"d": pa.array([decimal.Decimal("1.5"), None] * 4, pa.decimal128(precision, 1))})
    data = parquet_bytes(table, store_decimal_as_integer=True, row_group_size=2)
    assert open_file(data).schema.column(0).physical_type == physical

    assert auto(data).mode == "reencode"
    assert_reencode_is_identical(data)


def test_legacy_item_lists_are_reproduced_by_the_writer_option() -> None:
    table = pa.table({"xs": pa.array([[1.5, None], None, []] * 4, pa.list_(pa.float64()))})
    data = parquet_bytes(table, use_compliant_nested_type=False, row_group_size=3)
    assert open_file(data).schema.column(0).path == "xs.list.item"

    assert auto(data).mode == "reencode"
    assert_reencode_is_identical(data)


def test_a_difference_is_named_by_column() -> None:
    have = open_file(parquet_bytes(pa.table({"d": pa.array([1], pa.int64())}))).schema
    would = open_file(parquet_bytes(pa.table({"d": pa.array([1], pa.uint64())}))).schema

    assert "column 'd'" in plan.schema_difference(have, would)


GEOMETRY_WRITER = """
import sys
import pyarrow as pa
import pyarrow.parquet as pq
import geoarrow.types as gt
from geoarrow.types import type_pyarrow

type_pyarrow.register_extension_types()
geometry = gt.wkb(crs=gt.OGC_CRS84).to_pyarrow()
geography = gt.wkb(crs=gt.OGC_CRS84, edge_type=gt.EdgeType.SPHERICAL).to_pyarrow()
srid = gt.wkb(crs="srid:5070").to_pyarrow()  # the CRS that crashed a process which had registered the types
point = bytes.fromhex("0101000000000000000000f03f0000000000000040")
storage = pa.array([point, None] * 3, pa.binary())
columns = {name: pa.ExtensionArray.from_storage(kind, storage)
           for name, kind in (("g", geometry), ("h", geography), ("s", srid))}
pq.write_table(pa.table(columns), sys.argv[1], row_group_size=2)
"""


def test_geometry_and_geography_go_to_exact_and_come_out_exact(tmp_path: Path) -> None:
    path = tmp_path / "geo.parquet"
    subprocess.run([sys.executable, "-c", textwrap.dedent(GEOMETRY_WRITER), str(path)], check=True, timeout=120)
    data = path.read_bytes()
    assert str(open_file(data).schema.column(0).logical_type.type) == "GEOMETRY"

    choice = auto(data)

    assert choice.mode == "exact"
    assert choice.reason.startswith("exact: GEOMETRY logical type would not survive a re-encode")
    with pytest.raises(UnsupportedError, match="GEOMETRY"):
        reencode.recompress(data, io.BytesIO(), reencode.Options(level=3))
    output, report = recompress_bytes(data, Settings())
    assert report.mode == "exact"
    assert_same_file(data, output.to_pybytes())  # GEOMETRY, GEOGRAPHY and their CRS, element for element
    assert [str(open_file(output.to_pybytes()).schema.column(i).logical_type.type) for i in range(3)] == [
        "GEOMETRY", "GEOGRAPHY", "GEOMETRY"]


# --------------------------------------------------------------------------- damaged inputs


def with_row_count(data: bytes, group: int, rows: int) -> bytes:
    """The same file with one row group's declared row count changed in the footer."""
    parsed = footer.footer_from_bytes(data, "input")
    tree = parsed.tree
    tree.get_structs(footer.FMD_ROW_GROUPS)[group].set(footer.RG_NUM_ROWS, rows, thrift.I64)
    raw = thrift.dumps(tree)
    return data[: parsed.start] + raw + len(raw).to_bytes(4, "little") + footer.MAGIC


def test_a_row_group_declaring_more_rows_than_it_holds_is_refused_in_one_line() -> None:
    data = with_row_count(parquet_bytes(pa.table({"a": [1, 2, 3, 4, 5]}), row_group_size=3), 0, 4)

    with pytest.raises(DamagedError) as caught:
        reencode.recompress(data, io.BytesIO(), reencode.Options(level=3))

    message = str(caught.value)
    assert "\n" not in message
    assert "row group 0" in message
    assert "(check:" in message


# --------------------------------------------------------------------------- proof helpers


def assert_reencode_is_identical(data: bytes) -> None:
    """Re-encode ``data``; the output's Parquet schema, key-values, rows and values must be the input's."""
    sink = io.BytesIO()
    outcome = reencode.recompress(data, sink, reencode.Options(level=3))
    out = sink.getvalue()
    before, after = open_file(data), open_file(out)
    assert after.schema.equals(before.schema)
    assert footer.footer_from_bytes(out, "out").meta.key_value_metadata == \
        footer.footer_from_bytes(data, "in").meta.key_value_metadata
    assert outcome.rows_written == after.metadata.num_rows == sum(
        before.metadata.row_group(i).num_rows for i in range(before.metadata.num_row_groups))
    want, got = before.read(), after.read()
    assert got.schema.equals(want.schema, check_metadata=True)
    for name in want.column_names:
        assert reencode.same_values(got[name], want[name]), name


# --------------------------------------------------------------------------- corpus


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"PAR1")


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus/fastparquet-test-data is absent")
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_auto_on_every_corpus_file(path: Path) -> None:
    data = path.read_bytes()
    choice = auto(data)

    assert choice.reason.startswith(f"{choice.mode}: ")
    if choice.mode == "reencode":
        assert_reencode_is_identical(data)
    else:  # exact mode has its own corpus test; here, only that a re-encode was rightly avoided
        assert (plan.why_not_identical(open_file(data)) is not None
                or plan.what_reencode_drops(footer.footer_from_bytes(data, "x").meta) is not None)


# --------------------------------------------------------------------------- property


SCALARS = [pa.int8(), pa.int32(), pa.int64(), pa.uint32(), pa.float32(), pa.float64(), pa.string(), pa.binary(),
           pa.bool_(), pa.date32(), pa.timestamp("ms", tz="UTC"), pa.decimal128(9, 2)]


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(0, 40))
    columns = {}
    for index in range(draw(st.integers(1, 4))):
        type_ = draw(st.sampled_from(SCALARS))
        if draw(st.booleans()):
            type_ = pa.list_(type_)
        seed = draw(st.integers(0, 2**31))
        columns[f"c{index}"] = random_array(type_, rows, seed)
    return pa.table(columns)


def random_array(type_: pa.DataType, rows: int, seed: int) -> pa.Array:
    import numpy as np

    rng = np.random.default_rng(seed)
    if pa.types.is_list(type_):
        lengths = rng.integers(0, 4, rows)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())
        values = random_array(type_.value_type, int(lengths.sum()), seed + 1)
        return pa.ListArray.from_arrays(offsets, values, mask=pa.array(rng.random(rows) < 0.2))
    mask = rng.random(rows) < 0.2
    if pa.types.is_floating(type_):
        bits = rng.integers(0, 2**63, rows, dtype=np.uint64)  # NaN payloads and -0.0 included
        width = np.uint32 if type_.bit_width == 32 else np.uint64
        return pa.array(bits.astype(width).view(type_.to_pandas_dtype()), type_, mask=mask)
    if pa.types.is_string(type_) or pa.types.is_binary(type_):
        return pa.array([str(v) for v in rng.integers(0, 50, rows)], pa.string(), mask=mask).cast(type_)
    if pa.types.is_boolean(type_):
        return pa.array(rng.random(rows) < 0.5, mask=mask)
    if pa.types.is_decimal(type_):
        return pa.array([decimal.Decimal(int(v)).scaleb(-2) for v in rng.integers(-10**6, 10**6, rows)], type_,
                        mask=mask)
    low = 0 if pa.types.is_unsigned_integer(type_) else -100
    integers = pa.array(rng.integers(low, 100, rows), pa.int64(), mask=mask)
    return integers.cast(pa.int32()).cast(type_) if pa.types.is_date32(type_) else integers.cast(type_)


WRITER_OPTIONS = st.fixed_dictionaries({
    "row_group_size": st.integers(1, 30),
    "use_dictionary": st.booleans(),
    "store_schema": st.booleans(),
    "use_compliant_nested_type": st.booleans(),
    "store_decimal_as_integer": st.booleans(),
    "data_page_version": st.sampled_from(["1.0", "2.0"]),
    "compression": st.sampled_from(["snappy", "none", "zstd"]),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), options=WRITER_OPTIONS)
def test_re_encode_is_strictly_identical_wherever_auto_chooses_it(table: pa.Table, options: dict[str, object]) -> None:
    data = parquet_bytes(table, **options)
    choice = auto(data, row_group_size=16)

    if plan.why_not_identical(open_file(data)) is None:
        assert_reencode_is_identical(data)
    else:
        assert choice.mode == "exact"


def test_duplicate_column_names_keep_their_pages() -> None:
    table = pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4])], names=["a", "a"])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=1)  # two row groups: a re-encode would coalesce them

    choice = auto(sink.getvalue().to_pybytes())

    assert choice == plan.Choice("exact", "exact: columns named 'a' more than once, which Arrow cannot tell apart")


# --------------------------------------------------------------------------- what Arrow or pyarrow would change


def _with_footer(data: bytes, edit: Callable[[thrift.Struct], None]) -> bytes:
    parsed = footer.footer_from_bytes(data, "x")
    edit(parsed.tree)
    raw = thrift.dumps(parsed.tree)
    return data[:parsed.start] + raw + len(raw).to_bytes(4, "little") + b"PAR1"


def _two_groups(table: pa.Table, **options: object) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=max(table.num_rows // 2, 1), store_schema=False, **options)
    return bytes(sink.getvalue().to_pybytes())


def test_int8_values_another_writer_stored_out_of_range_keep_their_pages() -> None:
    """Arrow reads INT(8) as int8 and wraps 1000 to -24; proving Arrow against Arrow would never notice."""

    def annotate(tree: thrift.Struct) -> None:
        element = tree.get_structs(footer.FMD_SCHEMA)[1]
        element.set(footer.SE_CONVERTED, 15, thrift.I32)  # INT_8
        width = thrift.Struct()
        width.set(1, 8, thrift.BYTE)
        width.set(2, True, thrift.BOOL_TRUE)
        logical = thrift.Struct()
        logical.set(10, width, thrift.STRUCT)
        element.set(footer.SE_LOGICAL, logical, thrift.STRUCT)

    data = _with_footer(_two_groups(pa.table({"x": pa.array([1000, 5, 300, -129], pa.int32())})), annotate)

    choice = auto(data)

    assert choice.mode == "exact"
    assert "'x' holds INT_8 values in INT32" in choice.reason


@pytest.mark.parametrize(("edit", "reason"), [
    ({"write_page_index": True}, "has a page index"),
    ({"sorting_columns": [pq.SortingColumn(0)]}, "sorting columns"),
])
def test_what_pyarrow_would_not_write_back_keeps_the_pages(edit: dict[str, object], reason: str) -> None:
    data = _two_groups(pa.table({"x": pa.array(range(100), pa.int64())}), **edit)

    choice = auto(data)

    assert choice.mode == "exact"
    assert reason in choice.reason


def test_column_key_values_keep_the_pages() -> None:
    data = _two_groups(pa.table({"x": pa.array(range(100), pa.int64())}))

    def tag(tree: thrift.Struct) -> None:
        entry = thrift.Struct()
        entry.set(footer.KV_KEY, b"origin", thrift.BINARY)
        for group in tree.get_structs(footer.FMD_ROW_GROUPS):
            for chunk in group.get_structs(footer.RG_COLUMNS):
                meta = chunk.get_struct(footer.CC_META)
                assert meta is not None
                meta.set(footer.CM_KEY_VALUES, thrift.ThriftList(thrift.STRUCT, [entry]), thrift.LIST)

    data = _with_footer(data, tag)

    choice = auto(data)

    assert choice == plan.Choice("exact", "exact: column 'x' carries key-value metadata of its own")

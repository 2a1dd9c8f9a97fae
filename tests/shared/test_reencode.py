"""The engine rewrites any Parquet file as zstd without changing what a reader sees.

"Lossless" here means: reading the output with pyarrow gives the same schema,
key-value metadata and values as reading the input. Everything runs in memory
through ``shared.pipeline.recompress_bytes`` (what the HTTP route uses) or
``shared.reencode.recompress`` directly; no storage is involved.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared import reencode as engine
from shared.encodings import Plan
from shared.errors import NotParquetError, OptionError, PartMismatchError, UnsupportedError, VerificationError
from shared.parquet import footer, thrift
from shared.parquet.assembly import Assembler
from shared.pipeline import recompress_bytes
from shared.reencode import DEFAULT_LEVEL
from shared.report import Report, human_bytes
from shared.settings import Settings
from tests.helpers import assert_same_data, codec_of, parquet_bytes, sample_table

# --------------------------------------------------------------------------- helpers


def recompressed(data: bytes, settings: Settings | None = None) -> tuple[bytes, Report]:
    """Run the in-memory pipeline in re-encode mode and return the output file and its report."""
    buffer, report = recompress_bytes(data, reencoding(settings))
    return buffer.to_pybytes(), report


def reencoding(settings: Settings | None) -> Settings:
    """The settings with re-encode mode forced: auto would send most of these small files to exact mode."""
    return replace(settings or Settings(), mode="reencode")


def assert_lossless_zstd(data: bytes, settings: Settings | None = None) -> bytes:
    """Recompress ``data``; check the output reads back identically, is all zstd and is reported as such."""
    settings = reencoding(settings)
    output, report = recompressed(data, settings)
    assert_same_data(data, output)
    assert codec_of(output) == {"ZSTD"}
    assert report.codec == "zstd"
    assert report.mode == "reencode"
    assert report.level == (settings.zstd_level or DEFAULT_LEVEL)
    assert report.rows == metadata_of(data).num_rows
    assert report.bytes_in == len(data)
    assert report.bytes_out == len(output)
    return output


def metadata_of(data: bytes) -> pq.FileMetaData:
    return pq.ParquetFile(pa.BufferReader(data)).metadata


def read(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


def row_group_sizes(data: bytes) -> list[int]:
    meta = metadata_of(data)
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def one_column(array: pa.Array, name: str = "value") -> pa.Table:
    return pa.table({name: array})


# --------------------------------------------------------------------------- codecs and encodings

CODECS = ["snappy", "gzip", "brotli", "lz4", "zstd", "none"]


@pytest.mark.parametrize("codec", CODECS)
def test_every_input_codec_becomes_zstd_with_the_same_data(codec: str) -> None:
    data = parquet_bytes(sample_table(), compression=codec)
    assert codec_of(data) == {"UNCOMPRESSED" if codec == "none" else codec.upper()}

    assert_lossless_zstd(data)


@pytest.mark.parametrize("data_page_version", ["1.0", "2.0"], ids=["pages-v1", "pages-v2"])
@pytest.mark.parametrize("use_dictionary", [True, False], ids=["dictionary", "plain"])
def test_page_versions_and_encodings_round_trip(data_page_version: str, use_dictionary: bool) -> None:
    data = parquet_bytes(sample_table(), data_page_version=data_page_version, use_dictionary=use_dictionary)

    assert_lossless_zstd(data)


@pytest.mark.parametrize("level", [1, DEFAULT_LEVEL, 22])
def test_the_configured_level_is_used_and_reported(level: int) -> None:
    data = parquet_bytes(sample_table())

    assert_lossless_zstd(data, Settings(zstd_level=level))


def test_the_level_reaches_the_encoder() -> None:
    # Sizes are not monotonic in the level (on this table level 19 writes a larger file than level 1),
    # so the check is only that a different level encodes differently.
    data = parquet_bytes(sample_table(5000))

    fast, _ = recompressed(data, Settings(zstd_level=1))
    strong, _ = recompressed(data, Settings(zstd_level=19))

    assert fast != strong
    assert_same_data(fast, strong)


# --------------------------------------------------------------------------- column types


def _typed_tables() -> list[object]:
    """One table per family of Arrow types, each with nulls where the type allows them."""
    struct = pa.struct([("a", pa.int32()), ("b", pa.string())])
    cases: dict[str, pa.Table] = {
        "list": one_column(pa.array([[1, 2], None, [], [None]], pa.list_(pa.int32()))),
        "large-list": one_column(pa.array([[1, 2], None, [], [None]], pa.large_list(pa.int64()))),
        "fixed-size-list": one_column(pa.array([[1, 2], None, [3, None]], pa.list_(pa.int32(), 2))),
        "list-of-lists": one_column(pa.array([[[1], [], None], None, [[2, 3]]], pa.list_(pa.list_(pa.int8())))),
        "struct": one_column(pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": None}], struct)),
        "struct-of-list": one_column(
            pa.array([{"xs": [1, 2]}, {"xs": None}, None], pa.struct([("xs", pa.list_(pa.int64()))]))
        ),
        "map": one_column(pa.array([[("a", 1)], None, [], [("b", None), ("c", 3)]], pa.map_(pa.string(), pa.int32()))),
        "list-of-struct": one_column(pa.array([[{"a": 1, "b": "x"}], None, [], [None, {"a": None, "b": "y"}]],
                                              pa.list_(struct))),
        "decimal128": one_column(pa.array([decimal.Decimal("1.23"), None, decimal.Decimal("-99999.99")],
                                          pa.decimal128(7, 2))),
        "decimal128-38": one_column(pa.array([decimal.Decimal("9" * 28 + ".1234567890"), None], pa.decimal128(38, 10))),
        "decimal256": one_column(pa.array([decimal.Decimal("1." + "1" * 60), None, decimal.Decimal("-2." + "0" * 60)],
                                          pa.decimal256(70, 60))),
        "float16": one_column(pa.array(np.array([1.5, -0.0, 65504, np.inf, np.nan], dtype=np.float16), pa.float16())),
        "float16-with-nulls": one_column(pa.array([np.float16(0.5), None, np.float16(-2)], pa.float16())),
        "dictionary-string": one_column(pa.array(["a", None, "b", "a"]).dictionary_encode()),
        "dictionary-int8-indices": one_column(
            pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 0], pa.int8()), pa.array(["x", "y"]))
        ),
        "string": one_column(pa.array(["a", None, "é", ""], pa.string())),
        "large-string": one_column(pa.array(["a", None, "é", ""], pa.large_string())),
        "string-view": one_column(pa.array(["a", None, "é", ""], pa.string_view())),
        "binary": one_column(pa.array([b"a", None, b"\x00\xff", b""], pa.binary())),
        "large-binary": one_column(pa.array([b"a", None, b"\x00\xff", b""], pa.large_binary())),
        "fixed-size-binary": one_column(pa.array([b"ab", None, b"\x00\x01"], pa.binary(2))),
        "date32": one_column(pa.array([0, None, -719162, 2932896], pa.date32())),
        "date64": one_column(pa.array([0, None, 86_400_000], pa.date64())),
        "time32-s": one_column(pa.array([0, None, 86_399], pa.time32("s"))),
        "time32-ms": one_column(pa.array([0, None, 86_399_999], pa.time32("ms"))),
        "time64-us": one_column(pa.array([0, None, 86_399_999_999], pa.time64("us"))),
        "time64-ns": one_column(pa.array([0, None, 86_399_999_999_999], pa.time64("ns"))),
        "boolean": one_column(pa.array([True, None, False, True])),
        "int8": one_column(pa.array([-128, None, 127], pa.int8())),
        "uint64": one_column(pa.array([0, None, 2**64 - 1], pa.uint64())),
        "null-type": one_column(pa.array([None, None], pa.null())),
        "uuid-extension": one_column(pa.array([b"0" * 16, None], pa.uuid())),
        "json-extension": one_column(pa.array(['{"a": 1}', None], pa.json_())),
    }
    for unit in ("s", "ms", "us", "ns"):
        cases[f"duration-{unit}"] = one_column(pa.array([0, None, -17, 2**40], pa.duration(unit)))
        cases[f"timestamp-{unit}-naive"] = one_column(pa.array([0, None, 1_700_000_000], pa.timestamp(unit)))
        for tz in ("UTC", "Europe/Amsterdam", "+05:30"):
            cases[f"timestamp-{unit}-{tz}"] = one_column(pa.array([0, None, 1_700_000_000], pa.timestamp(unit, tz=tz)))
    return [pytest.param(table, id=name) for name, table in cases.items()]


@pytest.mark.parametrize("table", _typed_tables())
def test_every_column_type_round_trips(table: pa.Table) -> None:
    data = parquet_bytes(table)

    output = assert_lossless_zstd(data)

    assert read(output).schema.field(0).type == read(data).schema.field(0).type


def test_a_dictionary_column_stays_dictionary_encoded() -> None:
    data = parquet_bytes(one_column(pa.array(["red", "green", None, "red"] * 50).dictionary_encode(), "colour"))

    output = assert_lossless_zstd(data)

    assert pa.types.is_dictionary(read(output).schema.field("colour").type)


def test_nan_null_infinity_and_negative_zero_survive_in_floats() -> None:
    values = [1.0, math.nan, None, math.inf, -math.inf, -0.0]
    table = pa.table({"f64": pa.array(values, pa.float64()), "f32": pa.array(values, pa.float32())})

    output = assert_lossless_zstd(parquet_bytes(table))

    for name in ("f64", "f32"):
        got = read(output)[name].to_pylist()
        assert got[2] is None
        assert math.isnan(got[1])
        assert got[5] == 0.0
        assert math.copysign(1.0, got[5]) == -1.0, f"{name}: -0.0 lost its sign"


# --------------------------------------------------------------------------- INT96 timestamps


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_int96_timestamps_read_the_same_and_stay_int96(unit: str) -> None:
    scale = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    table = one_column(pa.array([0, None, 1_700_000_000 * scale, -86_400 * scale], pa.timestamp(unit)))
    data = parquet_bytes(table, use_deprecated_int96_timestamps=True)
    assert pq.ParquetFile(pa.BufferReader(data)).schema.column(0).physical_type == "INT96"

    output = assert_lossless_zstd(data)

    assert pq.ParquetFile(pa.BufferReader(output)).schema.column(0).physical_type == "INT96"


def test_int96_timestamps_outside_the_nanosecond_range_keep_their_value() -> None:
    # Warehouses use 0001-01-01 and 9999-12-31 as sentinels; at nanosecond precision they would wrap around.
    moments = [datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31), datetime.datetime(2020, 1, 1)]
    data = parquet_bytes(one_column(pa.array(moments, pa.timestamp("us"))), use_deprecated_int96_timestamps=True)

    output, _ = recompressed(data)

    back = pq.read_table(pa.BufferReader(output), coerce_int96_timestamp_unit="us")
    assert back["value"].to_pylist() == moments


def test_int96_timestamps_keep_their_nanoseconds() -> None:
    nanos = [1_700_000_000_123_456_789, -86_400, None]
    data = parquet_bytes(one_column(pa.array(nanos, pa.timestamp("ns"))), use_deprecated_int96_timestamps=True)

    output, _ = recompressed(data)

    assert read(output)["value"].cast(pa.int64()).to_pylist() == nanos


# --------------------------------------------------------------------------- shapes


def test_a_table_with_a_schema_but_no_rows_keeps_its_schema() -> None:
    table = sample_table().slice(0, 0)
    data = parquet_bytes(table)
    assert metadata_of(data).num_rows == 0

    output, report = recompressed(data)

    assert_same_data(data, output)
    assert report.rows == 0
    assert metadata_of(output).num_rows == 0


def test_a_file_with_zero_row_groups_gives_a_valid_file_with_the_same_schema() -> None:
    schema = sample_table().schema
    sink = io.BytesIO()
    pq.ParquetWriter(sink, schema).close()
    data = sink.getvalue()
    assert metadata_of(data).num_row_groups == 0

    output, report = recompressed(data)

    assert_same_data(data, output)
    assert metadata_of(output).num_row_groups == 0
    assert report.level == DEFAULT_LEVEL


def test_a_table_with_zero_columns_round_trips() -> None:
    data = parquet_bytes(pa.table({}))
    assert metadata_of(data).num_columns == 0

    output, report = recompressed(data)

    assert metadata_of(output).num_columns == 0
    assert read(output).num_columns == 0
    assert report.rows == read(data).num_rows


def test_many_small_row_groups_are_coalesced_without_changing_values() -> None:
    data = parquet_bytes(sample_table(1000), row_group_size=20)
    assert metadata_of(data).num_row_groups == 50

    output = assert_lossless_zstd(data)

    assert metadata_of(output).num_row_groups < 50
    assert row_group_sizes(output) == [1000]


def test_row_group_size_setting_caps_output_row_groups() -> None:
    data = parquet_bytes(sample_table(1000), row_group_size=70)

    output = assert_lossless_zstd(data, Settings(row_group_size=300))

    assert row_group_sizes(output) == [300, 300, 300, 100]


def test_a_wide_table_with_600_columns_round_trips() -> None:
    table = pa.table({f"c{i:03}": pa.array([i, None, -i], pa.int64()) for i in range(600)})

    output = assert_lossless_zstd(parquet_bytes(table))

    assert read(output).column_names == table.column_names


# --------------------------------------------------------------------------- metadata


def test_file_and_field_metadata_are_preserved() -> None:
    schema = pa.schema(
        [pa.field("distance", pa.float64(), metadata={"unit": "m"}), pa.field("name", pa.string())],
        metadata={"origin": "tests", "owner": "data-team"},
    )
    table = pa.table({"distance": [1.5, None], "name": ["a", "b"]}, schema=schema)

    output = assert_lossless_zstd(parquet_bytes(table))

    written = pq.read_schema(pa.BufferReader(output))
    assert written.field("distance").metadata == {b"unit": b"m"}
    assert written.metadata is not None
    assert {b"origin": b"tests", b"owner": b"data-team"}.items() <= written.metadata.items()
    assert {b"origin", b"owner"} <= set(metadata_of(output).metadata or {})


# --------------------------------------------------------------------------- files from other writers


def polars_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "a": [1, None, 3],
            "s": ["x", None, "z"],
            "l": [[1], [], None],
            "t": [datetime.datetime(2020, 1, 1), None, datetime.datetime(2021, 1, 1)],
            "dec": [decimal.Decimal("1.5"), None, decimal.Decimal("2.25")],
            "st": [{"x": 1, "y": "a"}, None, {"x": None, "y": None}],
            "cat": pl.Series(["a", "b", "a"], dtype=pl.Categorical),
            "enum": pl.Series(["a", "b", "a"], dtype=pl.Enum(["a", "b"])),
        }
    )


@pytest.mark.parametrize("compression", ["snappy", "uncompressed", "zstd"])
def test_a_polars_file_round_trips_and_reads_back_in_polars(compression: str, tmp_path: Path) -> None:
    frame = polars_frame()
    path = tmp_path / "polars.parquet"
    frame.write_parquet(path, compression=compression)  # type: ignore[arg-type]
    data = path.read_bytes()

    output = assert_lossless_zstd(data)

    back = pl.read_parquet(io.BytesIO(output))
    assert back.schema == frame.schema
    assert back.equals(frame)


DUCKDB_QUERY = """
    SELECT i AS id, i::VARCHAR AS s, CASE WHEN i % 3 = 0 THEN NULL ELSE i * 1.5 END AS f,
           [i, i + 1] AS l, {'a': i, 'b': 'x'} AS st, MAP {'k': i} AS m, [{'q': i}] AS ls,
           i::DECIMAL(18, 3) AS dec, 1.5::DECIMAL(38, 10) AS wide_dec,
           TIMESTAMPTZ '2020-01-01 00:00:00+00' + INTERVAL (i) SECOND AS tz,
           TIMESTAMP_NS '2020-01-01' AS tns, DATE '2020-01-01' + i::INTEGER AS dt, TIME '01:02:03' AS tm,
           uuid() AS u, i::HUGEINT AS h, i::UBIGINT AS ub, (i % 256)::UTINYINT AS ut, i::FLOAT AS fl,
           (i % 2 = 0) AS b, 'x'::BLOB AS bl, '{"a": 1}'::JSON AS js
    FROM range(2000) t(i)
"""


def duckdb_file(path: Path, query: str = DUCKDB_QUERY, options: str = "") -> bytes:
    with duckdb.connect() as con:
        con.execute(f"COPY ({query}) TO '{path}' (FORMAT PARQUET{options})")
    return path.read_bytes()


def test_a_duckdb_file_keeps_its_values_and_arrow_types(tmp_path: Path) -> None:
    data = duckdb_file(tmp_path / "duck.parquet")

    output, report = recompressed(data)

    want, got = read(data), read(output)
    assert got.schema.equals(want.schema, check_metadata=False), f"{got.schema}\n!=\n{want.schema}"
    assert got.equals(want)
    assert codec_of(output) == {"ZSTD"}
    assert report.rows == 2000


def test_a_duckdb_file_reads_back_in_duckdb_with_the_same_rows(tmp_path: Path) -> None:
    source = tmp_path / "duck.parquet"
    data = duckdb_file(source)
    target = tmp_path / "out.parquet"
    target.write_bytes(recompressed(data)[0])

    with duckdb.connect() as con:
        differing = con.execute(
            "SELECT count(*) FROM (SELECT * FROM read_parquet($1) EXCEPT ALL SELECT * FROM read_parquet($2))",
            [str(source), str(target)],
        ).fetchone()
        in_types = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(source)]).fetchall()
        out_types = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(target)]).fetchall()
    assert differing == (0,)
    assert [row[:2] for row in out_types] == [row[:2] for row in in_types]


def test_a_duckdb_file_keeps_its_key_value_metadata(tmp_path: Path) -> None:
    data = duckdb_file(tmp_path / "duck.parquet", "SELECT 1 AS a", ", KV_METADATA {origin: 'tests'}")
    assert (metadata_of(data).metadata or {}).get(b"origin") == b"tests"

    output, _ = recompressed(data)

    assert (metadata_of(output).metadata or {}).get(b"origin") == b"tests"


def test_a_parquet_interval_column_is_refused_rather_than_changed(tmp_path: Path) -> None:
    # Arrow reads INTERVAL as 12-byte binary and cannot write the annotation back (DuckDB would see BLOB).
    data = duckdb_file(tmp_path / "duck.parquet", "SELECT i AS id, INTERVAL (i) DAY AS iv FROM range(3) t(i)")

    with pytest.raises(UnsupportedError) as caught:
        recompressed(data)

    assert "'iv'" in str(caught.value)
    assert "INTERVAL" in str(caught.value)


def test_a_pandas_file_keeps_its_pandas_metadata_and_dtypes() -> None:
    frame = pd.DataFrame(
        {
            "count": pd.array([1, None, 3], dtype="Int64"),
            "flag": pd.array([True, None, False], dtype="boolean"),
            "label": ["a", None, "c"],
            "x": [1.0, None, 2.5],
            "kind": pd.Categorical(["p", "q", "p"]),
            "at": pd.to_datetime(["2020-01-01", "NaT", "2021-06-30"]).tz_localize("Europe/Paris"),
        },
        index=pd.Index([10, 20, 30], name="row"),
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, compression="gzip")
    data = buffer.getvalue()

    output = assert_lossless_zstd(data)

    def pandas_metadata(file: bytes) -> object:
        metadata = pq.read_schema(pa.BufferReader(file)).metadata or {}
        return json.loads(metadata[b"pandas"])

    assert pandas_metadata(output) == pandas_metadata(data)
    back = pd.read_parquet(io.BytesIO(output))
    assert back.dtypes.to_dict() == frame.dtypes.to_dict()
    assert back["count"].dtype == "Int64"
    pd.testing.assert_frame_equal(back, frame)


# --------------------------------------------------------------------------- column selection


def test_selected_columns_are_kept_in_the_order_given() -> None:
    data = parquet_bytes(sample_table())

    output, report = recompressed(data, Settings(columns=("x", "id", "name")))

    got = read(output)
    assert got.column_names == ["x", "id", "name"]
    assert got.equals(read(data).select(["x", "id", "name"]))
    assert got.schema.metadata == {b"origin": b"tests"}
    assert codec_of(output) == {"ZSTD"}
    assert report.rows == 1000


def test_selecting_a_nested_column_keeps_the_whole_column() -> None:
    struct = pa.array([{"a": 1, "b": "x"}, None], pa.struct([("a", pa.int32()), ("b", pa.string())]))
    data = parquet_bytes(pa.table({"id": [1, 2], "s": struct}))

    output, _ = recompressed(data, Settings(columns=("s",)))

    assert read(output).equals(read(data).select(["s"]))


def test_an_unknown_column_is_an_option_error_naming_it() -> None:
    data = parquet_bytes(sample_table())

    with pytest.raises(OptionError) as caught:
        recompressed(data, Settings(columns=("id", "nope")))

    message = str(caught.value)
    assert "'nope'" in message
    assert "'id'" not in message
    assert "\n" not in message


# --------------------------------------------------------------------------- the engine itself


def test_engine_reports_rows_row_groups_and_mode() -> None:
    data = parquet_bytes(sample_table(1000), row_group_size=100)
    sink = pa.BufferOutputStream()

    outcome = engine.recompress(pa.BufferReader(data), sink, engine.Options(level=5, row_group_size=400))

    output = sink.getvalue().to_pybytes()
    assert_same_data(data, output)
    assert codec_of(output) == {"ZSTD"}
    assert (outcome.mode, outcome.proof) == ("reencode", "full")
    assert outcome.rows_declared == outcome.rows_read == outcome.rows_written == 1000
    assert outcome.row_groups_written == 3


def test_engine_reports_progress_once_per_input_row_group() -> None:
    data = parquet_bytes(sample_table(1000), row_group_size=300)
    seen: list[int] = []

    engine.recompress(pa.BufferReader(data), pa.BufferOutputStream(), engine.Options(level=1), progress=seen.append)

    assert seen == [300, 300, 300, 100]


def test_engine_refuses_bytes_that_are_not_parquet() -> None:
    with pytest.raises(NotParquetError, match=r"^upload\.bin: not a readable Parquet file"):
        engine.recompress(pa.BufferReader(b"not parquet at all"), pa.BufferOutputStream(), engine.Options(level=3),
                          name="upload.bin")


def test_a_part_missing_a_row_is_a_part_mismatch_and_nothing_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    original = engine.encode_part

    def drop_last_row(table: pa.Table, *args: object) -> pa.Buffer:
        return original(table.slice(0, max(table.num_rows - 1, 0)), *args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "encode_part", drop_last_row)
    data = parquet_bytes(sample_table(1000), row_group_size=500)
    sink = io.BytesIO()

    with pytest.raises(PartMismatchError, match=r"decodes to 999 rows, expected 1000 \(check: part rows\)$"):
        engine.recompress(data, sink, engine.Options(level=3))
    assert sink.getvalue() == b"PAR1", "no unproven byte reached the sink"


def test_a_part_with_a_changed_value_is_a_part_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    original = engine.encode_part

    def flip_sign_of_zero(table: pa.Table, *args: object) -> pa.Buffer:
        changed = table.set_column(0, "x", pa.array([-0.0] * table.num_rows))
        return original(changed, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "encode_part", flip_sign_of_zero)
    data = parquet_bytes(pa.table({"x": pa.array([0.0, 0.0])}))

    with pytest.raises(PartMismatchError, match=r"column 'x' .* \(check: part values\)$") as caught:
        engine.recompress(data, io.BytesIO(), engine.Options(level=3))
    assert isinstance(caught.value, VerificationError)


def test_output_bytes_are_deterministic() -> None:
    data = parquet_bytes(sample_table(3000), row_group_size=250)
    outputs = []
    for _ in range(2):
        sink = io.BytesIO()
        engine.recompress(data, sink, engine.Options(level=3, row_group_size=1000))
        outputs.append(sink.getvalue())

    assert outputs[0] == outputs[1]


def test_footer_key_values_are_exactly_the_inputs_in_order() -> None:
    schema = pa.schema([("a", pa.int64())], metadata={"z": "1", "a": "2", "m": "3"})
    data = parquet_bytes(pa.table({"a": [1, 2]}, schema=schema), store_schema=False)
    sink = io.BytesIO()

    engine.recompress(data, sink, engine.Options(level=3))

    key_values = footer.footer_from_bytes(sink.getvalue(), "out").meta.key_value_metadata
    assert key_values == footer.footer_from_bytes(data, "in").meta.key_value_metadata
    assert pq.read_schema(pa.BufferReader(sink.getvalue())).metadata == pq.read_schema(pa.BufferReader(data)).metadata


# --------------------------------------------------------------------------- the footer as the input's writer left it


def _edited(data: bytes, edit: Callable[[thrift.Struct], None]) -> bytes:
    parsed = footer.footer_from_bytes(data, "x")
    edit(parsed.tree)
    raw = thrift.dumps(parsed.tree)
    return data[:parsed.start] + raw + len(raw).to_bytes(4, "little") + b"PAR1"


def test_key_values_that_are_not_utf8_text_come_through_byte_for_byte() -> None:
    def odd_pairs(tree: thrift.Struct) -> None:
        raw = thrift.Struct()
        raw.set(footer.KV_KEY, b"blob", thrift.BINARY)
        raw.set(footer.KV_VALUE, b"\xff\xfe raw \x80 bytes", thrift.BINARY)
        number = thrift.Struct()  # old fastparquet stored integers
        number.set(footer.KV_KEY, b"n", thrift.BINARY)
        number.set(footer.KV_VALUE, 42, thrift.I32)
        tree.set(footer.FMD_KEY_VALUES, thrift.ThriftList(thrift.STRUCT, [raw, number]), thrift.LIST)

    data = _edited(parquet_bytes(sample_table(100), row_group_size=50, store_schema=False), odd_pairs)

    output, _ = recompressed(data)

    def pairs(blob: bytes) -> list[bytes]:
        return [thrift.dumps(entry) for entry in footer.footer_from_bytes(blob, "x").tree.get_structs(
            footer.FMD_KEY_VALUES)]

    assert pairs(output) == pairs(data)


def test_list_and_map_groups_keep_their_names_in_the_schema_and_in_every_chunk_path() -> None:
    table = pa.table({"a": pa.array([[1, 2], None, [3]] * 10, pa.list_(pa.int32())),
                      "m": pa.array([[("k", 1)], None, []] * 10, pa.map_(pa.string(), pa.int32()))})

    def rename(tree: thrift.Struct) -> None:  # names other writers use for the repeated groups
        names = {b"list": b"bag", b"key_value": b"map"}
        for element in tree.get_structs(footer.FMD_SCHEMA):
            name = element.get_binary(footer.SE_NAME) or b""
            element.set(footer.SE_NAME, names.get(name, name))
        for group in tree.get_structs(footer.FMD_ROW_GROUPS):
            for chunk in group.get_structs(footer.RG_COLUMNS):
                path = footer.ColumnChunk(chunk).meta_data
                assert path is not None
                found = path.tree.get_list(footer.CM_PATH)
                assert found is not None
                found.items = [names.get(bytes(part), part) for part in found.items if isinstance(part, bytes)]

    data = _edited(parquet_bytes(table, row_group_size=10, store_schema=False), rename)

    output, _ = recompressed(data)

    meta = footer.footer_from_bytes(output, "x").meta
    paths = [".".join(chunk.meta_data.path_in_schema) for chunk in meta.row_groups[0].columns if chunk.meta_data]
    assert paths == ["a.bag.element", "m.map.key", "m.map.value"]
    assert [".".join(leaf.path) for leaf in footer.leaves(meta.schema)[0]] == paths
    assert_same_data(data, output)


# --------------------------------------------------------------------------- parts in parallel, stitched

#: Writer options the engine's parts use, each case with the table it is tried on: (plan, page version, extra).
_PART_CASES = {
    "dictionary-v1": (Plan(), "1.0", {}),
    "delta-v1": (Plan(["flag"], {"id": "DELTA_BINARY_PACKED", "name": "DELTA_BYTE_ARRAY",
                                                  "x": "PLAIN", "text": "DELTA_LENGTH_BYTE_ARRAY"}), "1.0", {}),
    "byte-stream-split-v2": (Plan(["id", "name", "flag", "text"], {"x": "BYTE_STREAM_SPLIT"}),
                             "2.0", {}),
    "dictionary-v2": (Plan(), "2.0", {}),
    "page-index": (Plan(), "1.0", {"write_page_index": True}),
    "no-statistics": (Plan(), "1.0", {"write_statistics": False}),
}


def _flat_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(8)
    return pa.table({"id": pa.array(np.arange(rows), pa.int64()), "x": pa.array(rng.random(rows)),
                     "name": pa.array([f"name-{i % 37}" for i in range(rows)]),
                     "flag": pa.array(rng.integers(0, 2, rows).astype(bool)),
                     "text": pa.array([None if i % 11 == 0 else f"t{i * 7919 % 1000}" for i in range(rows)])})


def _nested_table(rows: int) -> pa.Table:
    return pa.table({
        "tags": pa.array([[f"t{i % 5}", f"u{i % 3}"] if i % 4 else None for i in range(rows)],
                         pa.list_(pa.string())),
        "point": pa.array([{"x": float(i), "label": f"p{i % 9}"} for i in range(rows)],
                          pa.struct([("x", pa.float64()), ("label", pa.string())])),
        "items": pa.array([[{"sku": f"s{i % 13}", "qty": i % 7}] * (i % 3) for i in range(rows)],
                          pa.list_(pa.struct([("sku", pa.string()), ("qty", pa.int32())]))),
        "attrs": pa.array([[("k", i)] if i % 2 else [] for i in range(rows)], pa.map_(pa.string(), pa.int64())),
    })


def _stitched_and_single(table: pa.Table, rows_per_part: int, options: dict[str, object]) -> tuple[bytes, bytes]:
    """The table written as parts of ``rows_per_part`` rows stitched by the Assembler, and by one writer."""
    out = io.BytesIO()
    assembler = Assembler(out)
    for start in range(0, table.num_rows, rows_per_part):
        part = pa.BufferOutputStream()
        pq.write_table(table.slice(start, rows_per_part), part, row_group_size=rows_per_part, **options)
        assembler.append_part(part.getvalue())
    assembler.finish()
    single = pa.BufferOutputStream()
    pq.write_table(table, single, row_group_size=rows_per_part, **options)
    return out.getvalue(), single.getvalue().to_pybytes()


def _split(data: bytes) -> tuple[bytes, bytes]:
    """A file's bytes before its footer (pages, page indexes), and its footer with chunk ``file_offset`` zeroed.

    One writer puts 0 in the deprecated ColumnChunk.file_offset; the Assembler the chunk's start. Nothing
    reads it, so it is the one field left out of the comparison.
    """
    parsed = footer.footer_from_bytes(data, "file")
    for group in parsed.tree.get_structs(footer.FMD_ROW_GROUPS):
        for chunk in group.get_structs(footer.RG_COLUMNS):
            chunk.set(footer.CC_FILE_OFFSET, 0)
    return data[:parsed.start], thrift.dumps(parsed.tree)


@pytest.mark.parametrize("case", [*_PART_CASES, "nested"])
def test_stitched_parts_are_one_writers_file_byte_for_byte_but_a_deprecated_offset(case: str) -> None:
    plan, page_version, extra = _PART_CASES.get(case, _PART_CASES["dictionary-v1"])
    table = _nested_table(3000) if case == "nested" else _flat_table(3000)
    options = {**engine.part_options(1, engine.Layout(), plan, page_version), **extra}

    stitched, single = _stitched_and_single(table, 1000, options)

    assert _split(stitched) == _split(single)
    assert read(stitched).equals(table)
    assert pq.ParquetFile(pa.BufferReader(stitched)).schema.equals(pq.ParquetFile(pa.BufferReader(single)).schema)
    meta = footer.footer_from_bytes(stitched, "stitched").meta
    assert len(meta.row_groups) == 3
    chunk = meta.row_groups[2].columns[0]
    assert (chunk.column_index_offset is not None) == (case == "page-index"), "page index comes through, shifted"


def test_the_engines_parts_are_written_with_part_options() -> None:
    table = _flat_table(500)
    plan, page_version, _ = _PART_CASES["delta-v1"]
    single = pa.BufferOutputStream()
    pq.write_table(table, single, row_group_size=500, **engine.part_options(3, engine.Layout(), plan, page_version))

    part = engine.encode_part(table, 3, engine.Layout(), plan, page_version)

    assert part.to_pybytes() == single.getvalue().to_pybytes()


def _first_part_finishes_last(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the part holding row 0 wait until the part holding row 1000 is encoded; return the finish order."""
    original = engine.encode_part
    second_done = threading.Event()
    finished: list[int] = []

    def encode(table: pa.Table, *args: object) -> pa.Buffer:
        first_id = table.column("id")[0].as_py() if table.num_rows else -1
        if first_id == 0:
            assert second_done.wait(timeout=60), "the second part never ran beside the first"
        part = original(table, *args)  # type: ignore[arg-type]
        finished.append(first_id)
        if first_id == 1000:
            second_done.set()
        return part

    monkeypatch.setattr(engine, "encode_part", encode)
    return finished


@pytest.mark.parametrize("workers", [2, 4])
def test_the_same_input_gives_the_same_bytes_whatever_the_workers_and_the_order_parts_finish_in(
        workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = parquet_bytes(_flat_table(8000), row_group_size=700)
    alone = io.BytesIO()
    engine.recompress(data, alone, engine.Options(level=1, row_group_size=1000, workers=1))
    finished = _first_part_finishes_last(monkeypatch)
    together = io.BytesIO()

    outcome = engine.recompress(data, together, engine.Options(level=1, row_group_size=1000, workers=workers))

    assert finished.index(1000) < finished.index(0), "parts finished out of order"
    assert outcome.row_groups_written == 8
    assert together.getvalue() == alone.getvalue()
    assert_same_data(data, together.getvalue())


def test_four_workers_write_what_one_does_on_a_nested_table() -> None:
    data = parquet_bytes(_nested_table(6000), row_group_size=500)
    outputs = []
    for workers in (1, 2, 4):
        sink = io.BytesIO()
        engine.recompress(data, sink, engine.Options(level=1, row_group_size=1000, workers=workers))
        outputs.append(sink.getvalue())

    assert outputs[0] == outputs[1] == outputs[2]
    assert_same_data(data, outputs[0])


def test_a_part_failing_its_proof_on_a_worker_fails_the_run_naming_that_part(monkeypatch: pytest.MonkeyPatch) -> None:
    original = engine.encode_part

    def drop_a_row_of_the_third(table: pa.Table, *args: object) -> pa.Buffer:
        if table.num_rows and table.column("id")[0].as_py() == 2000:
            table = table.slice(1)
        return original(table, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "encode_part", drop_a_row_of_the_third)
    data = parquet_bytes(_flat_table(6000), row_group_size=1000)

    with pytest.raises(PartMismatchError, match=r"output row group 2 decodes to 999 rows, expected 1000"):
        engine.recompress(data, io.BytesIO(), engine.Options(level=1, row_group_size=1000, workers=4))


def test_row_groups_end_by_the_memory_budget_in_bytes_not_by_rows() -> None:
    wide = pa.table({f"c{i}": pa.array(np.arange(40_000, dtype=np.float64) + i) for i in range(100)})  # 32 MB
    data = parquet_bytes(wide, row_group_size=2000)
    budget = 64 * 1024**2
    sink = io.BytesIO()

    outcome = engine.recompress(data, sink, engine.Options(level=1, memory_budget=budget, workers=2))

    limit = engine.group_bytes(budget, max(engine.decode_bytes(footer.footer_from_bytes(data, "in").meta)))
    sizes = row_group_sizes(sink.getvalue())
    assert limit < wide.nbytes // 4
    assert outcome.row_groups_written == len(sizes) >= 4
    assert max(sizes) * 100 * 8 <= limit + 2000 * 100 * 8, "a group ends within one input batch of the limit"
    assert outcome.memory_peak is not None
    assert 0 < outcome.memory_peak <= budget // 2, "what is counted is held to half the budget"
    assert_same_data(data, sink.getvalue())


def test_the_report_says_how_much_of_the_budget_the_run_held() -> None:
    output, report = recompressed(parquet_bytes(sample_table(2000)), Settings(memory_budget=64 * 1024**2))

    assert report.memory_budget == 64 * 1024**2
    assert report.memory_peak is not None
    assert 0 < report.memory_peak <= report.memory_budget
    assert f"memory {human_bytes(report.memory_peak)} of 67.1 MB" in report.line()
    assert_same_data(parquet_bytes(sample_table(2000)), output)

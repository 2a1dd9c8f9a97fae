"""The reader policies: what each allows, and that re-encode obeys them (no Spark here: see ``make compat``)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared import encodings, readers
from shared import reencode as engine
from shared.errors import PartMismatchError
from shared.parquet import footer, pages
from shared.settings import Settings

BSS, DBA, DBP = "BYTE_STREAM_SPLIT", "DELTA_BYTE_ARRAY", "DELTA_BINARY_PACKED"


def floats(rows: int = 20_000) -> pa.Table:
    """Smooth floats, where BYTE_STREAM_SPLIT beats dictionary and PLAIN by far."""
    rng = np.random.default_rng(7)
    return pa.table({"x": np.cumsum(rng.normal(0, 1, rows)), "y": rng.normal(0, 1, rows).astype(np.float32),
                     "id": np.arange(rows, dtype=np.int64)})


def parquet_bytes(table: pa.Table, **options: object) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def reencoded(data: bytes, policy: str) -> pq.ParquetFile:
    sink = io.BytesIO()
    engine.recompress(data, sink, engine.Options(level=1, readers=policy))
    return pq.ParquetFile(io.BytesIO(sink.getvalue()))


def encodings_of(parquet: pq.ParquetFile, column: str) -> set[str]:
    index = parquet.schema_arrow.get_field_index(column)
    meta = parquet.metadata
    return {e for g in range(meta.num_row_groups) for e in meta.row_group(g).column(index).encodings}


def first_page_type(data: bytes) -> int:
    meta = footer.footer_from_bytes(memoryview(data), "t").meta
    column = meta.row_groups[0].columns[0].meta_data
    assert column is not None
    header, _ = pages.parse_header(data, column.data_page_offset, 0)
    page_type = header.get_int(pages.PH_TYPE)
    assert page_type is not None
    return page_type


# --------------------------------------------------------------------------- what each policy allows


def test_the_policies_are_input_then_the_profiles_and_input_is_the_default() -> None:
    assert readers.POLICIES == ("input", "spark3.3", "modern")
    assert Settings().readers == "input"
    assert Settings.from_env({"RECOMPRESS_READERS": "Modern"}).readers == "modern"


def test_input_allows_what_the_input_used_plus_plain_and_dictionary() -> None:
    allowed = readers.allowed("input", {"a": frozenset({"PLAIN", "RLE", DBP}), "b": frozenset({"RLE_DICTIONARY"})})
    assert allowed.for_column("a") == {"PLAIN", "DICTIONARY", DBP}
    assert allowed.for_column("b") == {"PLAIN", "DICTIONARY"}
    assert allowed.for_column("new") == {"PLAIN", "DICTIONARY"}, "a transform's column gets nothing new"


@pytest.mark.parametrize(("policy", "bss", "delta"), [("spark3.3", False, True), ("modern", True, True)])
def test_profiles_allow_their_own_set_whatever_the_input_used(policy: str, bss: bool, delta: bool) -> None:
    allowed = readers.allowed(policy, {"a": frozenset({"PLAIN", BSS})})
    for column in ("a", "new"):
        assert (BSS in allowed.for_column(column)) is bss
        assert (DBA in allowed.for_column(column)) is delta


def test_spark_profile_holds_spark_and_not_fastparquet_and_modern_holds_neither() -> None:
    assert {"spark3.4", "spark3.5"} <= set(readers.PROFILES["spark3.3"].readers)
    assert "fastparquet" not in readers.PROFILES["spark3.3"].readers
    assert not {"spark3.4", "spark3.5", "fastparquet"} & set(readers.PROFILES["modern"].readers)
    assert readers.readers_held("input", ["pyarrow", "fastparquet"]) == ["fastparquet", "pyarrow"]


@pytest.mark.parametrize(("policy", "used", "expected"), [
    ("input", frozenset({"1.0"}), "1.0"), ("input", frozenset({"2.0"}), "2.0"),
    ("input", frozenset(), "1.0"), ("modern", frozenset({"2.0"}), "2.0"), ("spark3.3", frozenset({"1.0"}), "1.0"),
])
def test_the_page_version_is_one_the_input_used(policy: str, used: frozenset[str], expected: str) -> None:
    assert readers.page_version(policy, used) == expected


def test_a_new_annotation_is_named_and_a_dropped_one_is_not() -> None:
    def schema(type_: pa.DataType) -> pq.ParquetSchema:
        return pq.ParquetFile(io.BytesIO(parquet_bytes(pa.table({"t": pa.array([], type_)})))).schema

    assert readers.new_annotation(schema(pa.int64()), schema(pa.timestamp("ms", tz="UTC"))) is not None
    assert readers.new_annotation(schema(pa.timestamp("ms", tz="UTC")), schema(pa.int64())) is None
    assert readers.new_annotation(schema(pa.string()), schema(pa.string())) is None


# --------------------------------------------------------------------------- the trial and the re-encode obey


def test_the_trial_never_tries_what_the_policy_forbids() -> None:
    table = floats()
    assert encodings.choose(table, 1, allowed=readers.allowed("input", {})).encodings.get("x") != BSS
    assert encodings.choose(table, 1, allowed=readers.allowed("modern", {})).encodings.get("x") == BSS


def test_floats_never_get_byte_stream_split_under_input_but_may_under_modern() -> None:
    data = parquet_bytes(floats())
    assert BSS not in encodings_of(reencoded(data, "input"), "x")
    assert BSS not in encodings_of(reencoded(data, "spark3.3"), "x")
    assert BSS in encodings_of(reencoded(data, "modern"), "x")


def test_input_keeps_byte_stream_split_where_the_input_had_it() -> None:
    data = parquet_bytes(floats(), use_dictionary=False, column_encoding={"x": BSS, "y": BSS, "id": "PLAIN"})
    assert BSS in encodings_of(reencoded(data, "input"), "x")
    assert BSS not in encodings_of(reencoded(data, "spark3.3"), "x"), "spark3.3 takes it out for Spark"


def test_input_keeps_v2_pages_and_v1_pages() -> None:
    for version, page_type in (("1.0", pages.DATA_PAGE), ("2.0", pages.DATA_PAGE_V2)):
        sink = io.BytesIO()
        engine.recompress(parquet_bytes(floats(), data_page_version=version), sink,
                          engine.Options(level=1, readers="input"))
        assert first_page_type(sink.getvalue()) == page_type


def test_a_part_the_policy_forbids_is_refused_as_a_failed_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    """The written part is checked, not trusted: a writer that used BYTE_STREAM_SPLIT anyway is caught."""
    original = engine.encode_part

    def disobey(table: pa.Table, level: int, layout: engine.Layout, plan: encodings.Plan,
                page_version: str = "1.0") -> pa.Buffer:
        forced = encodings.Plan([], {"x": BSS, "y": BSS, "id": "PLAIN"})
        return original(table, level, layout, forced, page_version)

    monkeypatch.setattr(engine, "encode_part", disobey)
    with pytest.raises(PartMismatchError, match=r"reader policy 'input'.*BYTE_STREAM_SPLIT"):
        reencoded(parquet_bytes(floats()), "input")

"""RECOMPRESS_TRANSFORM: the one place an operator may change the data on its way through.

Each test writes a small module into ``tmp_path``, puts that folder on
``sys.path`` and names the module's function in ``Settings.transform``, the
same way an operator would set ``RECOMPRESS_TRANSFORM=module:function``.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.errors import ConfigError, InputError, TransformError
from shared.pipeline import recompress_bytes
from shared.settings import Settings
from shared.transform import load_transform, wants_pandas
from tests.helpers import WriteModule, codec_of, parquet_bytes

SETTING = "RECOMPRESS_TRANSFORM"


def people(rows: int = 10) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "name": pa.array([f"person-{i}" for i in range(rows)], pa.string()),
        },
        metadata={"origin": "tests"},
    )


def run(data: bytes, spec: str) -> pa.Table:
    """Recompress ``data`` with the transform ``spec``; return the output as read back (and check it is zstd)."""
    buffer, _ = recompress_bytes(data, Settings(transform=spec))
    output = buffer.to_pybytes()
    if pq.ParquetFile(pa.BufferReader(output)).metadata.num_row_groups:
        assert codec_of(output) == {"ZSTD"}
    return pq.read_table(pa.BufferReader(output))


def empty_file_without_row_groups(schema: pa.Schema) -> bytes:
    sink = io.BytesIO()
    pq.ParquetWriter(sink, schema).close()
    return sink.getvalue()


ADD_DOUBLED = """
    import pyarrow as pa
    import pyarrow.compute as pc

    def add_doubled(batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.append_column("doubled", pc.multiply(batch.column("id"), 2))
"""

PANDAS_RECORDS_ITS_INPUT = """
    from __future__ import annotations

    import pandas as pd

    def record_input_type(frame: pd.DataFrame) -> pd.DataFrame:
        frame["received"] = type(frame).__name__ if isinstance(frame, pd.DataFrame) else "not pandas"
        return frame
"""


# --------------------------------------------------------------------------- transforms that work


def test_an_arrow_transform_can_add_a_column(write_module: WriteModule) -> None:
    module = write_module(ADD_DOUBLED)
    data = parquet_bytes(people(100), row_group_size=30)

    got = run(data, f"{module}:add_doubled")

    assert got.column_names == ["id", "name", "doubled"]
    assert got["doubled"].to_pylist() == [2 * i for i in range(100)]
    assert got.select(["id", "name"]).equals(people(100).select(["id", "name"]))


def test_an_unannotated_transform_receives_an_arrow_record_batch(write_module: WriteModule) -> None:
    module = write_module("""
        import pyarrow as pa

        def record_input_type(batch):
            kind = type(batch).__name__
            return batch.append_column("received", pa.array([kind] * batch.num_rows))
    """)

    got = run(parquet_bytes(people()), f"{module}:record_input_type")

    assert set(got["received"].to_pylist()) == {"RecordBatch"}


def test_a_transform_may_return_a_table_instead_of_a_batch(write_module: WriteModule) -> None:
    module = write_module("""
        import pyarrow as pa

        def keep_even(batch):
            return pa.Table.from_batches([batch]).filter(pa.compute.equal(pa.compute.bit_wise_and(batch["id"], 1), 0))
    """)

    got = run(parquet_bytes(people(10)), f"{module}:keep_even")

    assert got["id"].to_pylist() == [0, 2, 4, 6, 8]


def test_a_transform_annotated_with_a_dataframe_receives_pandas(write_module: WriteModule) -> None:
    module = write_module(PANDAS_RECORDS_ITS_INPUT)

    got = run(parquet_bytes(people(50), row_group_size=20), f"{module}:record_input_type")

    assert set(got["received"].to_pylist()) == {"DataFrame"}
    assert got["id"].to_pylist() == list(range(50))
    assert got["name"].to_pylist() == people(50)["name"].to_pylist()


def test_wants_pandas_reads_real_and_string_annotations(write_module: WriteModule) -> None:
    module = write_module("""
        import pandas as pd
        import pyarrow as pa

        def real(frame: pd.DataFrame) -> pd.DataFrame:
            return frame

        def text(frame: "pd.DataFrame") -> "pd.DataFrame":
            return frame

        def arrow(batch: pa.RecordBatch) -> pa.RecordBatch:
            return batch

        def bare(batch):
            return batch
    """)
    loaded = __import__(module)

    assert wants_pandas(loaded.real)
    assert wants_pandas(loaded.text)
    assert not wants_pandas(loaded.arrow)
    assert not wants_pandas(loaded.bare)


def test_a_dotted_attribute_path_is_followed(write_module: WriteModule) -> None:
    module = write_module("""
        class Transforms:
            @staticmethod
            def identity(batch):
                return batch
    """)
    data = parquet_bytes(people())

    assert run(data, f"{module}:Transforms.identity").equals(pq.read_table(pa.BufferReader(data)))


# --------------------------------------------------------------------------- zero rows


@pytest.mark.parametrize("row_groups", ["no-row-groups", "one-empty-row-group"])
def test_zero_rows_with_a_transform_writes_the_transforms_schema(write_module: WriteModule, row_groups: str) -> None:
    module = write_module(ADD_DOUBLED)
    empty = people(0)
    data = empty_file_without_row_groups(empty.schema) if row_groups == "no-row-groups" else parquet_bytes(empty)

    got = run(data, f"{module}:add_doubled")

    assert got.num_rows == 0
    assert got.column_names == ["id", "name", "doubled"]
    assert got.schema.field("doubled").type == pa.int64()


def test_zero_rows_with_a_pandas_transform_writes_a_valid_file(write_module: WriteModule) -> None:
    module = write_module(PANDAS_RECORDS_ITS_INPUT)

    got = run(empty_file_without_row_groups(people(0).schema), f"{module}:record_input_type")

    assert got.num_rows == 0
    assert got.column_names == ["id", "name", "received"]


# --------------------------------------------------------------------------- bad specs


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param("nocolon", "must look like package.module:function", id="no-colon"),
        pytest.param(":function", "must look like package.module:function", id="no-module"),
        pytest.param("module:", "must look like package.module:function", id="no-function"),
        pytest.param("no_such_module_for_tests:f", "cannot import module 'no_such_module_for_tests'",
                     id="missing-module"),
    ],
)
def test_a_malformed_or_unimportable_spec_is_a_one_line_config_error(spec: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_transform(spec)

    message = str(caught.value)
    assert message.startswith(f"{SETTING}: ")
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("attribute", "problem"),
    [
        pytest.param("missing", "has no attribute 'missing'", id="missing-attribute"),
        pytest.param("NOT_CALLABLE", "is not callable", id="not-callable"),
    ],
)
def test_a_spec_naming_no_function_is_a_one_line_config_error(
    write_module: WriteModule, attribute: str, problem: str
) -> None:
    module = write_module("NOT_CALLABLE = 3\n")

    with pytest.raises(ConfigError) as caught:
        load_transform(f"{module}:{attribute}")

    message = str(caught.value)
    assert message.startswith(f"{SETTING}: ")
    assert problem in message
    assert "\n" not in message


def test_a_bad_transform_fails_the_run_before_any_output(write_module: WriteModule) -> None:
    with pytest.raises(ConfigError, match=f"^{SETTING}: "):
        recompress_bytes(parquet_bytes(people()), Settings(transform="nocolon"))


@pytest.mark.parametrize(
    "source",
    [pytest.param("def broken(:\n", id="syntax-error"), pytest.param("raise RuntimeError('boom')\n", id="raises")],
)
def test_a_module_that_fails_to_import_is_a_config_error(write_module: WriteModule, source: str) -> None:
    module = write_module(source)

    with pytest.raises(ConfigError, match=f"^{SETTING}: "):
        load_transform(f"{module}:f")


# --------------------------------------------------------------------------- transforms that fail


def test_a_transform_that_raises_is_a_transform_error_naming_the_exception(write_module: WriteModule) -> None:
    module = write_module("""
        def explode(batch):
            raise KeyError("no such thing")
    """)

    with pytest.raises(TransformError) as caught:
        run(parquet_bytes(people()), f"{module}:explode")

    assert not isinstance(caught.value, InputError), "the operator's code is at fault, not the input"
    assert isinstance(caught.value.__cause__, KeyError), "the transform's own exception is chained"
    message = str(caught.value)
    assert "transform failed" in message
    assert "KeyError" in message
    assert "no such thing" in message


def test_a_multi_line_exception_message_is_cut_to_one_line(write_module: WriteModule) -> None:
    module = write_module("""
        def explode(batch):
            raise ValueError("first line\\nsecond line")
    """)

    with pytest.raises(TransformError) as caught:
        run(parquet_bytes(people()), f"{module}:explode")

    assert str(caught.value).endswith("ValueError: first line")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        pytest.param("def f(batch):\n    return 42\n", "returned int, expected a RecordBatch or Table", id="arrow"),
        pytest.param(
            "import pandas as pd\n\ndef f(frame: pd.DataFrame) -> dict:\n    return frame.to_dict()\n",
            "returned dict, expected a DataFrame",
            id="pandas",
        ),
    ],
)
def test_a_transform_returning_the_wrong_type_is_a_clear_transform_error(
    write_module: WriteModule, source: str, problem: str
) -> None:
    module = write_module(source)

    with pytest.raises(TransformError) as caught:
        run(parquet_bytes(people()), f"{module}:f")

    assert "TypeError" in str(caught.value)
    assert problem in str(caught.value)


def test_a_transform_that_changes_the_schema_between_batches_is_refused(write_module: WriteModule) -> None:
    module = write_module("""
        import pyarrow as pa

        def unstable(batch):
            first = batch["id"][0].as_py() == 0
            value = pa.array([1] * batch.num_rows) if first else pa.array(["one"] * batch.num_rows)
            return batch.append_column("extra", value)
    """)

    with pytest.raises(TransformError, match="changed the schema between batches"):
        run(parquet_bytes(people(20), row_group_size=10), f"{module}:unstable")

"""A bounded fuzz campaign: mutated Parquet bytes through ``pipeline.recompress_bytes``.

Starting from a few small valid files (several codecs, nested types,
dictionaries, INT96, page format v2), hypothesis flips bytes, overwrites
ranges, truncates, splices two files and duplicates regions. For every
mutant the engine must either return valid zstd Parquet holding as many rows
as ``pq.read_table`` reads from the mutant (when pyarrow can read it at all),
or raise one of the app's errors with a one-line message. Any other exception,
a hang or a crash fails the campaign. Inputs that once aborted the process,
escaped as raw exceptions or failed a valid file are pinned one by one by
regression tests on deterministic reproductions.

The mutants run in a worker process (the ``fuzz_worker`` fixture, a
``tests.helpers.Worker`` with tight limits): some mutants make pyarrow abort or
segfault the whole process, which in this process would end the test session
instead of failing one test. Its ``ru_maxrss`` counts only itself.

How many examples run is the Hypothesis profile's ``max_examples``: 400 by
default, many more with ``RECOMPRESS_FUZZ=long`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import resource
import struct
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.damaged import UNREADABLE_KINDS, case
from tests.helpers import Worker, parquet_bytes, sample_table

MAX_GROWTH_MIB = 500
NAME = Worker.NAME


# --------------------------------------------------------------------------- seeds


def nested_table() -> pa.Table:
    rows = 40
    return pa.table({
        "s": pa.array([{"a": i, "b": f"v{i % 3}"} if i % 5 else None for i in range(rows)],
                      pa.struct([("a", pa.int32()), ("b", pa.string())])),
        "l": pa.array([list(range(i % 4)) for i in range(rows)], pa.list_(pa.int64())),
        "m": pa.array([[("k", i)] for i in range(rows)], pa.map_(pa.string(), pa.int16())),
        "ls": pa.array([[{"x": float(i)}] * (i % 3) for i in range(rows)], pa.list_(pa.struct([("x", pa.float64())]))),
    })


def dictionary_table() -> pa.Table:
    rows = 120
    return pa.table({
        "d": pa.array([f"cat-{i % 6}" for i in range(rows)]).dictionary_encode(),
        "n": pa.array([i % 7 if i % 4 else None for i in range(rows)], pa.int8()),
    })


def int96_table() -> pa.Table:
    return pa.table({"t": pa.array(range(0, 50_000_000_000, 1_000_000_000), pa.timestamp("ns")),
                     "b": pa.array([bytes([i]) * (i % 5) for i in range(50)], pa.binary())})


SEEDS: list[bytes] = [
    parquet_bytes(sample_table(200), row_group_size=50),  # snappy, four row groups
    parquet_bytes(sample_table(150), compression="zstd", data_page_version="2.0", row_group_size=60),
    parquet_bytes(nested_table(), compression="gzip"),
    parquet_bytes(dictionary_table(), compression="none", row_group_size=40),
    parquet_bytes(int96_table(), compression="lz4", use_deprecated_int96_timestamps=True),
]

INTERESTING = [b"\x00" * 4, b"\xff" * 4, b"\x7f\xff\xff\xff", struct.pack("<q", 2**62), b"\xff\xff\xff\xff\x0f",
               b"PAR1", b"\x19\x1c", b"\x15\x00"]


# --------------------------------------------------------------------------- mutations


def position(data: st.DataObject, size: int, label: str) -> int:
    """Anywhere in the file, or near its end where the footer is."""
    if size <= 1:
        return 0
    anywhere = st.integers(0, size - 1)
    footer = st.integers(max(0, size - 700), size - 1)
    return int(data.draw(st.one_of(footer, anywhere), label=label))


def mutate(data: st.DataObject, body: bytes) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "overwrite", "truncate", "splice", "duplicate", "footer-length"]),
                     label="mutation")
    size = len(body)
    if kind == "flip":
        at = position(data, size, "at")
        count = data.draw(st.integers(1, 4), label="count")
        mask = data.draw(st.integers(1, 255), label="mask")
        mutated = bytearray(body)
        for offset in range(at, min(at + count, size)):
            mutated[offset] ^= mask
        return bytes(mutated)
    if kind == "overwrite":
        at = position(data, size, "at")
        patch = data.draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=16)), label="patch")
        return body[:at] + patch + body[at + len(patch):]
    if kind == "truncate":
        return body[:position(data, size, "cut")]
    if kind == "splice":
        other = SEEDS[data.draw(st.integers(0, len(SEEDS) - 1), label="other seed")]
        return body[:position(data, size, "head")] + other[position(data, len(other), "tail"):]
    if kind == "duplicate":
        start = position(data, size, "start")
        length = data.draw(st.integers(1, 256), label="length")
        return body[:start + length] + body[start:start + length] + body[start + length:]
    length = data.draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(max(0, size - 64), size + 64)),
                       label="footer length")
    return body[:-8] + struct.pack("<I", length) + body[-4:] if size >= 8 else body


# --------------------------------------------------------------------------- the property


def check(body: bytes, result: dict[str, Any]) -> None:
    """The property: valid zstd output with pyarrow's row count, or one of the app's one-line errors.

    "Valid" is Arrow's full validation of what the output decodes to, except that STRING values which
    were not UTF-8 in the input may stay so: the engine copies them byte for byte, as lossless should.
    """
    outcome = result["outcome"]
    if outcome == "refused":
        assert result["input_error"] or result["kind"] == "VerificationError", result
        message = result["message"]
        assert "\n" not in message, result
        assert message.startswith(f"{NAME}: "), result
        return
    assert outcome == "written", f"{len(body)} bytes: {result}"
    assert result["output_rows"] == result["rows"], result
    if result["pyarrow_rows"] is not None:
        assert result["rows"] == result["pyarrow_rows"], result
    assert set(result["codecs"]) <= {"ZSTD"}, result
    if result["output_invalid"] is not None:
        # Only text that was not UTF-8 in the input may stay so: a lossless copy keeps its bytes.
        assert "Invalid UTF8" in result["output_invalid"], result
        assert "Invalid UTF8" in (result["input_invalid"] or ""), result


# --------------------------------------------------------------------------- tests


SEED_IDS = ["snappy", "zstd-page-v2", "gzip-nested", "plain-dictionary", "lz4-int96"]


@pytest.mark.parametrize("index", range(len(SEED_IDS)), ids=SEED_IDS)
def test_every_seed_is_rewritten_whole(fuzz_worker: Worker, index: int) -> None:
    """The mutants start from files the engine handles, so a refusal means the mutation did it."""
    result = fuzz_worker.run(SEEDS[index])
    assert result["outcome"] == "written", result
    assert result["rows"] == result["pyarrow_rows"] > 0
    assert result["codecs"] == ["ZSTD"]
    assert result["output_invalid"] is None, result


def test_mutated_parquet_is_rewritten_or_refused_in_one_line(fuzz_worker: Worker) -> None:
    baseline = max(fuzz_worker.run(seed)["maxrss_kib"] for seed in SEEDS)
    own_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seen: dict[str, int] = {}
    peaks: list[int] = []
    examples = 0

    wanted = hypothesis_settings().max_examples  # the profile's: quick by default, RECOMPRESS_FUZZ=long for more

    @given(data=st.data())
    def campaign(data: st.DataObject) -> None:
        nonlocal examples
        examples += 1
        body = SEEDS[data.draw(st.integers(0, len(SEEDS) - 1), label="seed")]
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            body = mutate(data, body)
        result = fuzz_worker.run(body)
        if "maxrss_kib" in result:
            peaks.append(int(result["maxrss_kib"]))
        assert result["outcome"] != "died", f"the worker crashed on {len(body)} bytes: {result['stderr']}"
        check(body, result)
        key = result["outcome"] if result["outcome"] == "written" else result["kind"]
        seen[key] = seen.get(key, 0) + 1

    campaign()

    assert examples >= wanted, f"only {examples} of {wanted} examples ran"
    assert seen.get("written", 0) >= 10, f"too few mutants survived to be rewritten: {seen}"
    refused = sum(seen.get(kind, 0) for kind in UNREADABLE_KINDS)
    assert refused >= 100, f"too few mutants were refused: {seen}"
    growth_mib = (max(peaks) - baseline) / 1024
    assert growth_mib < MAX_GROWTH_MIB, f"the worker's peak RSS grew {growth_mib:.0f} MiB over the campaign"
    own_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - own_before) / 1024
    assert own_growth_mib < MAX_GROWTH_MIB, f"this process's peak RSS grew {own_growth_mib:.0f} MiB"


def assert_refused_as_unreadable(body: bytes, result: dict[str, Any]) -> None:
    """Refused as unreadable in one line: not a crash, an abort, a raw exception or a written file."""
    assert result["outcome"] == "refused", result.get("stderr") or result.get("message") or result
    assert result["kind"] in UNREADABLE_KINDS, result
    check(body, result)


def test_a_footer_that_makes_pyarrow_throw_cpp_exceptions_is_refused_without_aborting_the_process(
    fuzz_worker: Worker,
) -> None:
    """Size statistics that do not fit the schema make pyarrow's metadata accessors throw C++ exceptions."""
    body = case("required-column-with-optional-statistics").build()

    assert_refused_as_unreadable(body, fuzz_worker.run(body))


def test_a_damaged_int96_file_is_refused_in_one_line(fuzz_worker: Worker) -> None:
    body = case("int96-with-corrupt-page-header").build()

    assert_refused_as_unreadable(body, fuzz_worker.run(body))


@pytest.mark.parametrize("case_id", ["dictionary-indices-past-the-end", "dictionary-indices-past-the-end-crash"])
def test_dictionary_indices_past_the_end_are_refused(fuzz_worker: Worker, case_id: str) -> None:
    """pyarrow decodes such indices unchecked; they must not reach the writer or the output."""
    body = case(case_id).build()

    assert_refused_as_unreadable(body, fuzz_worker.run(body))


def test_a_valid_int96_file_is_rewritten_whole(fuzz_worker: Worker) -> None:
    """Legacy INT96 timestamps are written back as INT96, so they need an encoding INT96 supports."""
    body = SEEDS[SEED_IDS.index("lz4-int96")]
    result = fuzz_worker.run(body)

    assert result["outcome"] == "written", result
    assert result["rows"] == result["output_rows"] == result["pyarrow_rows"] == 50
    assert result["codecs"] == ["ZSTD"]
    assert result["output_invalid"] is None, result
    check(body, result)

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

The mutants run in a worker process: some mutants make pyarrow abort or
segfault the whole process, which in this process would end the test session
instead of failing one test. The worker is started through a tiny launcher so
its ``ru_maxrss`` counts only itself, not this (larger) process it was forked
from.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.settings import STORAGE_CONNECTION
from tests.helpers import parquet_bytes, sample_table

ROOT = Path(__file__).resolve().parents[2]

EXAMPLES = 400
EXAMPLE_SECONDS = 10  # the worker's own watchdog, per mutant
BACKSTOP_SECONDS = 30  # this process's watchdog, for a worker stuck where Python signals cannot reach
MAX_GROWTH_MIB = 500
NAME = "fuzz.parquet"

#: Tight limits, so a mutated footer cannot talk the engine into allocating much.
LIMITS = {
    "RECOMPRESS_MAX_ROW_GROUP_BYTES": "64MiB",
    "RECOMPRESS_MAX_ROWS": "10000000",
    "RECOMPRESS_MAX_COLUMNS": "1000",
}


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


# --------------------------------------------------------------------------- the worker

_LAUNCHER = """
import subprocess, sys
code = subprocess.call(sys.argv[1:])
sys.stderr.write(f"\\nworker exit status {code}\\n")
sys.exit(0 if code == 0 else 1)
"""

_WORKER = r"""
import faulthandler, json, resource, signal, struct, sys, traceback
faulthandler.enable()
import pyarrow as pa
import pyarrow.parquet as pq
from shared import pipeline
from shared.errors import InputError, RecompressError
from shared.settings import Settings

SETTINGS = Settings.from_env()
LIMIT = float(sys.argv[1])
timed_out = False


def alarm(signum, frame):
    global timed_out
    timed_out = True
    raise TimeoutError(f"one example took over {LIMIT:g} s")


signal.signal(signal.SIGALRM, alarm)


def examine(body):
    try:
        out, report = pipeline.recompress_bytes(body, SETTINGS, name=sys.argv[2])
    except RecompressError as exc:
        return {"outcome": "refused", "kind": type(exc).__name__, "input_error": isinstance(exc, InputError),
                "message": str(exc)}
    except Exception as exc:
        return {"outcome": "raised", "kind": type(exc).__name__, "message": traceback.format_exc()[-3000:]}
    try:
        written = pq.ParquetFile(pa.BufferReader(out))
        table = written.read()
        meta = written.metadata
        codecs = sorted({meta.row_group(r).column(c).compression
                         for r in range(meta.num_row_groups) for c in range(meta.num_columns)})
    except Exception as exc:
        return {"outcome": "bad-output", "kind": type(exc).__name__, "message": str(exc)}
    try:
        source = pq.read_table(pa.BufferReader(body))
    except Exception:
        source = None
    return {"outcome": "written", "rows": report.rows, "output_rows": table.num_rows, "codecs": codecs,
            "pyarrow_rows": None if source is None else source.num_rows,
            "output_invalid": invalid(table), "input_invalid": None if source is None else invalid(source)}


def invalid(table):
    try:
        table.validate(full=True)
    except Exception as exc:
        return str(exc)
    return None


source, sink = sys.stdin.buffer, sys.stdout
while True:
    head = source.read(8)
    if len(head) < 8:
        break
    body = source.read(struct.unpack("<Q", head)[0])
    timed_out = False
    signal.setitimer(signal.ITIMER_REAL, LIMIT)
    try:
        result = examine(body)
    except TimeoutError:
        result = {}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if timed_out:
        result = {"outcome": "timeout", "message": f"took over {LIMIT:g} s"}
    result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sink.write(json.dumps(result) + "\n")
    sink.flush()
"""


class _Backstop(Exception):
    """This process's watchdog fired: the worker did not answer at all."""


class Worker:
    """One long-lived process that runs mutants; restarted after it dies."""

    def __init__(self, stderr_path: Path) -> None:
        self._stderr_path = stderr_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMPRESS_", STORAGE_CONNECTION))}
        self._env = {**env, **LIMITS, "PYTHONPATH": str(ROOT)}

    def run(self, body: bytes) -> dict[str, Any]:
        """The worker's verdict on ``body``; ``{"outcome": "died", "stderr": ...}`` when it crashed."""
        proc = self._proc or self._start()
        assert proc.stdin is not None
        assert proc.stdout is not None
        previous = signal.signal(signal.SIGALRM, _backstop)
        signal.setitimer(signal.ITIMER_REAL, BACKSTOP_SECONDS)
        try:
            proc.stdin.write(struct.pack("<Q", len(body)) + body)
            proc.stdin.flush()
            line = proc.stdout.readline()
        except BrokenPipeError:
            line = b""
        except _Backstop:
            self.stop()
            raise TimeoutError(f"the worker gave no answer in {BACKSTOP_SECONDS} s") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if line:
            return dict(json.loads(line))
        self.stop()
        return {"outcome": "died", "stderr": self._stderr_path.read_text(errors="replace")[-4000:]}

    def stop(self) -> None:
        if self._proc is not None:
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=30)
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _start(self) -> subprocess.Popen[bytes]:
        self._stderr = self._stderr_path.open("wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, sys.executable, "-c", _WORKER, str(EXAMPLE_SECONDS), NAME],
            cwd=ROOT, env=self._env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            start_new_session=True,  # so stop() can kill the launcher and the worker together
        )
        return self._proc


def _backstop(signum: int, frame: FrameType | None) -> None:
    raise _Backstop


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    running = Worker(tmp_path_factory.mktemp("fuzz") / "worker-stderr.txt")
    yield running
    running.stop()


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
def test_every_seed_is_rewritten_whole(worker: Worker, index: int) -> None:
    """The mutants start from files the engine handles, so a refusal means the mutation did it."""
    result = worker.run(SEEDS[index])
    assert result["outcome"] == "written", result
    assert result["rows"] == result["pyarrow_rows"] > 0
    assert result["codecs"] == ["ZSTD"]
    assert result["output_invalid"] is None, result


def test_mutated_parquet_is_rewritten_or_refused_in_one_line(worker: Worker) -> None:
    baseline = max(worker.run(seed)["maxrss_kib"] for seed in SEEDS)
    own_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seen: dict[str, int] = {}
    peaks: list[int] = []
    examples = 0

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(data=st.data())
    def campaign(data: st.DataObject) -> None:
        nonlocal examples
        examples += 1
        body = SEEDS[data.draw(st.integers(0, len(SEEDS) - 1), label="seed")]
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            body = mutate(data, body)
        result = worker.run(body)
        if "maxrss_kib" in result:
            peaks.append(int(result["maxrss_kib"]))
        assert result["outcome"] != "died", f"the worker crashed on {len(body)} bytes: {result['stderr']}"
        check(body, result)
        key = result["outcome"] if result["outcome"] == "written" else result["kind"]
        seen[key] = seen.get(key, 0) + 1

    campaign()

    assert examples >= EXAMPLES, f"only {examples} examples ran"
    assert seen.get("written", 0) >= 10, f"too few mutants survived to be rewritten: {seen}"
    assert seen.get("NotParquetError", 0) >= 100, f"too few mutants were refused: {seen}"
    growth_mib = (max(peaks) - baseline) / 1024
    assert growth_mib < MAX_GROWTH_MIB, f"the worker's peak RSS grew {growth_mib:.0f} MiB over the campaign"
    own_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - own_before) / 1024
    assert own_growth_mib < MAX_GROWTH_MIB, f"this process's peak RSS grew {own_growth_mib:.0f} MiB"


def from_hostile(case_id: str) -> bytes:
    """A bad input built in test_hostile.py (imported late: it is a test module too)."""
    from tests.shared.test_hostile import CASES

    return next(case for case in CASES if case.id == case_id).build()


def assert_refused_as_unreadable(body: bytes, result: dict[str, Any]) -> None:
    """Refused with NotParquetError in one line: not a crash, an abort, a raw exception or a written file."""
    assert result["outcome"] == "refused", result.get("stderr") or result.get("message") or result
    assert result["kind"] == "NotParquetError", result
    check(body, result)


def test_a_footer_that_makes_pyarrow_throw_cpp_exceptions_is_refused_without_aborting_the_process(
    worker: Worker,
) -> None:
    """Size statistics that do not fit the schema make pyarrow's metadata accessors throw C++ exceptions."""
    body = from_hostile("required-column-with-optional-statistics")

    assert_refused_as_unreadable(body, worker.run(body))


def test_a_damaged_int96_file_is_refused_in_one_line(worker: Worker) -> None:
    body = from_hostile("int96-with-corrupt-page-header")

    assert_refused_as_unreadable(body, worker.run(body))


@pytest.mark.parametrize("case_id", ["dictionary-indices-past-the-end", "dictionary-indices-past-the-end-crash"])
def test_dictionary_indices_past_the_end_are_refused(worker: Worker, case_id: str) -> None:
    """pyarrow decodes such indices unchecked; they must not reach the writer or the output."""
    body = from_hostile(case_id)

    assert_refused_as_unreadable(body, worker.run(body))


def test_a_valid_int96_file_is_rewritten_whole(worker: Worker) -> None:
    """Legacy INT96 timestamps are written back as INT96, so they need an encoding INT96 supports."""
    body = SEEDS[SEED_IDS.index("lz4-int96")]
    result = worker.run(body)

    assert result["outcome"] == "written", result
    assert result["rows"] == result["output_rows"] == result["pyarrow_rows"] == 50
    assert result["codecs"] == ["ZSTD"]
    assert result["output_invalid"] is None, result
    check(body, result)

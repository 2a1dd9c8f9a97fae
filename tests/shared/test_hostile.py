"""Hostile and broken inputs end in one clear line, no output, and the input untouched.

Every bad input goes through the blob pipeline against a real Azurite (it must
be quarantined: an exact copy plus ``<name>.error.json``, nothing in the output
container, and a second run duplicates nothing) and through the command line
as a real process (exit status 2, one line on stderr naming the file and the
problem, no traceback, no DST). Limits are settings, so each case carries the
``RECOMPRESS_*`` values it needs and both paths read them the same way.

Flipped bytes are judged against pyarrow: a flip pyarrow notices must be
refused like any other bad input; a flip it does not notice may be rewritten,
and then the output must be valid Parquet with the rows pyarrow reads.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared import __version__, blobs, pipeline
from shared.limits import nesting_depth
from shared.report import Report
from shared.settings import STORAGE_CONNECTION, Settings
from tests.helpers import assert_same_data, codec_of, parquet_bytes, peak_rss_kib, sample_table

ROOT = Path(__file__).resolve().parents[2]

NOT_PARQUET = r"not a readable Parquet file \(.+\)"
UNREADABLE = rf"({NOT_PARQUET}|row group \d+ is unreadable \(.+\))"
REPORT_FIELDS = {"source", "error", "kind", "message", "source_etag", "source_size", "quarantined_at", "app_version"}

BOMB_ROWS = 20_000_000
BOMB_VALUE_BYTES = 60  # 20M x (4-byte length + 60 bytes) = 1.28 GB once decoded
BOMB_LIMIT = "16MiB"
BOMB_PEAK_RSS_MIB = 300

DEADLINE_SLEEP_SECONDS = 0.6
DEADLINE_ROW_GROUPS = 8


# --------------------------------------------------------------------------- building bad files


@functools.cache
def valid() -> bytes:
    """A small valid snappy file with four row groups, the base that truncation and flips damage."""
    return parquet_bytes(sample_table(1000), row_group_size=250)


@functools.cache
def valid_as(compression: str) -> bytes:
    """The same rows in another codec: uncompressed, a flipped value byte decodes to another value, unnoticed;
    gzip's CRC notices any flip."""
    return parquet_bytes(sample_table(1000), row_group_size=250, compression=compression)


def footer_span(data: bytes) -> tuple[int, int]:
    """Where the Thrift footer starts and how long it is, from the length before the closing magic."""
    (length,) = struct.unpack("<I", data[-8:-4])
    return len(data) - 8 - length, length


def random_bytes() -> bytes:
    return random.Random(7).randbytes(64 * 1024)


def random_between_magic() -> bytes:
    """Right magic at both ends, noise between: the footer length is whatever the noise says."""
    return b"PAR1" + random.Random(8).randbytes(4096) + b"PAR1"


def csv_renamed() -> bytes:
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(sample_table(200), sink)
    return bytes(sink.getvalue().to_pybytes())


def truncated(where: Callable[[int, int, int], int]) -> Callable[[], bytes]:
    """``valid()`` cut at ``where(size, footer_start, footer_length)``."""

    def build() -> bytes:
        data = valid()
        start, length = footer_span(data)
        return data[: where(len(data), start, length)]

    return build


TRUNCATIONS: list[tuple[str, Callable[[int, int, int], int]]] = [
    ("to-the-leading-magic", lambda n, s, f: 4),
    ("inside-the-first-page", lambda n, s, f: 100),
    ("at-a-quarter", lambda n, s, f: n // 4),
    ("at-half", lambda n, s, f: n // 2),
    ("just-before-the-footer", lambda n, s, f: s - 1),
    ("inside-the-footer", lambda n, s, f: s + f // 2),
    ("before-the-footer-length", lambda n, s, f: n - 8),
    ("inside-the-footer-length", lambda n, s, f: n - 6),
    ("before-the-closing-magic", lambda n, s, f: n - 4),
    ("by-the-last-byte", lambda n, s, f: n - 1),
]


def absurd_footer_length(length: int) -> Callable[[], bytes]:
    """``valid()`` whose little-endian footer length (before the closing PAR1) says ``length``."""

    def build() -> bytes:
        data = valid()
        return data[:-8] + struct.pack("<I", length) + b"PAR1"

    return build


def deeply_nested(depth: int = 8) -> bytes:
    type_: pa.DataType = pa.int32()
    value: object = 1
    for _ in range(depth - 1):
        type_ = pa.struct([("inner", type_)])
        value = {"inner": value}
    table = pa.table({"deep": pa.array([value, value], type_)})
    assert nesting_depth(table.schema) == depth
    return parquet_bytes(table)


@functools.cache
def thousands_of_columns(count: int = 3000) -> bytes:
    return parquet_bytes(pa.table({f"c{i}": pa.array([i % 100], pa.int8()) for i in range(count)}))


_BOMB_SCRIPT = """
import sys
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
rows, width = int(sys.argv[1]), int(sys.argv[2])
same = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int8)), pa.array(["x" * width]))
sink = pa.BufferOutputStream()
pq.write_table(pa.table({"same": same}), sink, compression="zstd", use_dictionary=False, row_group_size=rows,
               data_page_size=8 << 20, write_statistics=False)
sys.stdout.buffer.write(sink.getvalue().to_pybytes())
"""


@functools.cache
def decompression_bomb() -> bytes:
    """20 million identical strings in one row group: about 1.28 GB decoded, under 200 KB on disk.

    Written by a child process, so building it does not raise this process's peak memory.
    """
    done = subprocess.run([sys.executable, "-c", _BOMB_SCRIPT, str(BOMB_ROWS), str(BOMB_VALUE_BYTES)],
                          capture_output=True, check=True, timeout=120)
    return done.stdout


def deadline_file() -> bytes:
    return parquet_bytes(sample_table(800), row_group_size=800 // DEADLINE_ROW_GROUPS)


def required_column_with_optional_statistics() -> bytes:
    """``valid()`` with column ``id`` declared REQUIRED in the footer's schema.

    Its chunks still carry the size statistics of an OPTIONAL column (a
    definition-level histogram of two entries where REQUIRED expects one).
    In Thrift compact form the schema element holds ``25 02`` (field 3,
    repetition_type = OPTIONAL) followed by the name ``18 02 'id'``; ``25 00``
    makes it REQUIRED.
    """
    data = valid()
    start, length = footer_span(data)
    footer = data[start:start + length]
    optional_id = b"\x25\x02\x18\x02id"
    assert footer.count(optional_id) == 1, "the footer layout changed; find the schema element for 'id' anew"
    return data[:start] + footer.replace(optional_id, b"\x25\x00\x18\x02id") + data[start + length:]


def int96_with_corrupt_page_header() -> bytes:
    """A legacy INT96 timestamp column whose data page header is damaged (one byte flipped)."""
    table = pa.table({"t": pa.array(range(0, 50 * 10**9, 10**9), pa.timestamp("ns"))})
    data = bytearray(parquet_bytes(table, use_deprecated_int96_timestamps=True))
    assert pq.ParquetFile(pa.BufferReader(bytes(data))).schema.column(0).physical_type == "INT96"
    data[pq.ParquetFile(pa.BufferReader(bytes(data))).metadata.row_group(0).column(0).data_page_offset] ^= 0xFF
    return bytes(data)


def dictionary_indices_past_the_end(row_group: int, at: int, patch: bytes) -> Callable[[], bytes]:
    """A dictionary column (six values, three row groups) with bit-packed indices overwritten.

    Each data page of column ``d`` holds its definition levels (one RLE run
    of 1s, ending ``01``), the index bit width ``03`` and a bit-packed run of
    five groups of eight (``0b``): 15 bytes of 3-bit indices. Indices 6 and 7
    point past the six-entry dictionary; pyarrow decodes them unchecked.
    """

    def build() -> bytes:
        rows = 120
        table = pa.table({
            "d": pa.array([f"cat-{i % 6}" for i in range(rows)]).dictionary_encode(),
            "n": pa.array([i % 7 if i % 4 else None for i in range(rows)], pa.int8()),
        })
        data = parquet_bytes(table, compression="none", row_group_size=40)
        runs = [m.end() for m in re.finditer(re.escape(b"\x01\x03\x0b"), data)]
        assert len(runs) == 3, "the page layout changed; find the bit-packed indices anew"
        start = runs[row_group] + at
        return data[:start] + patch + data[start + len(patch):]

    return build


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Bad:
    """One bad input and what refusing it must say."""

    id: str
    build: Callable[[], bytes]
    kind: str  # the error class quarantine reports
    problem: str  # a regex the one-line message must hold after "<source>: "
    env: dict[str, str] = field(default_factory=dict)  # RECOMPRESS_* settings for the case
    slow_transform: bool = False


CASES: list[Bad] = [
    Bad("random-bytes", random_bytes, "NotParquetError", NOT_PARQUET),
    Bad("random-bytes-between-magic", random_between_magic, "NotParquetError", NOT_PARQUET),
    Bad("empty", lambda: b"", "NotParquetError", NOT_PARQUET),
    Bad("csv-renamed-parquet", csv_renamed, "NotParquetError", NOT_PARQUET),
    *(Bad(f"truncated-{name}", truncated(where), "NotParquetError", NOT_PARQUET) for name, where in TRUNCATIONS),
    Bad("footer-length-4GiB", absurd_footer_length(0xFFFF_FFF0), "NotParquetError", NOT_PARQUET),
    Bad("footer-length-2GiB", absurd_footer_length(2**31 - 1), "NotParquetError", NOT_PARQUET),
    Bad("footer-length-zero", absurd_footer_length(0), "NotParquetError", NOT_PARQUET),
    Bad("nested-8-deep-limit-5", deeply_nested, "LimitError",
        r"nests 8 levels deep, over the limit of 5 \(RECOMPRESS_MAX_NESTING_DEPTH\)",
        {"RECOMPRESS_MAX_NESTING_DEPTH": "5"}),
    Bad("3000-columns-limit-2000", thousands_of_columns, "LimitError",
        r"has 3000 columns, over the limit of 2000 \(RECOMPRESS_MAX_COLUMNS\)", {"RECOMPRESS_MAX_COLUMNS": "2000"}),
    Bad("1000-rows-limit-999", valid, "LimitError",
        r"declares 1000 rows, over the limit of 999 \(RECOMPRESS_MAX_ROWS\)", {"RECOMPRESS_MAX_ROWS": "999"}),
    Bad("decompression-bomb", decompression_bomb, "LimitError",
        r"row group 0 decompresses to \d{10} bytes, over the limit of 16777216 \(RECOMPRESS_MAX_ROW_GROUP_BYTES\)",
        {"RECOMPRESS_MAX_ROW_GROUP_BYTES": BOMB_LIMIT}),
    Bad("over-max-blob-size", valid, "LimitError",
        r"is \d+ bytes, over the limit of 4096 \(RECOMPRESS_MAX_BLOB_SIZE\)", {"RECOMPRESS_MAX_BLOB_SIZE": "4KiB"}),
    Bad("over-deadline", deadline_file, "LimitError", r"took longer than 1 s \(RECOMPRESS_DEADLINE_SECONDS\)",
        {"RECOMPRESS_DEADLINE_SECONDS": "1"}, slow_transform=True),
    # Inputs on which pyarrow throws C++ exceptions, raises bare errors or decodes invalid data unchecked.
    Bad("required-column-with-optional-statistics", required_column_with_optional_statistics,
        "NotParquetError", UNREADABLE),
    Bad("int96-with-corrupt-page-header", int96_with_corrupt_page_header, "NotParquetError", UNREADABLE),
    Bad("dictionary-indices-past-the-end", dictionary_indices_past_the_end(1, 0, b"\xff" * 15),
        "NotParquetError", UNREADABLE),
    Bad("dictionary-indices-past-the-end-crash", dictionary_indices_past_the_end(2, 1, bytes([22, 246, 178])),
        "NotParquetError", UNREADABLE),
]

@dataclass(frozen=True)
class Flip:
    """XOR ``mask`` into ``count`` bytes of ``base()`` from ``where(base)``."""

    id: str
    base: Callable[[], bytes]
    where: Callable[[bytes], int]
    mask: int = 0xFF
    count: int = 1

    def build(self) -> bytes:
        data = bytearray(self.base())
        start = self.where(bytes(data))
        for offset in range(start, start + self.count):
            data[offset] ^= self.mask
        return bytes(data)


def chunk(data: bytes, row_group: int, column: int) -> tuple[int, int, int]:
    """(chunk start, first data page, chunk end) of one column chunk."""
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(row_group).column(column)
    start = meta.dictionary_page_offset if meta.has_dictionary_page else meta.data_page_offset
    return start, meta.data_page_offset, start + meta.total_compressed_size


FLIPS: list[Flip] = [
    Flip("footer-first-byte", valid, lambda d: footer_span(d)[0]),
    Flip("footer-second-byte-low-bit", valid, lambda d: footer_span(d)[0] + 1, mask=0x01),
    Flip("footer-middle", valid, lambda d: footer_span(d)[0] + footer_span(d)[1] // 2),
    Flip("footer-eight-bytes-at-a-third", valid, lambda d: footer_span(d)[0] + footer_span(d)[1] // 3, count=8),
    Flip("footer-last-byte", valid, lambda d: len(d) - 9),
    Flip("data-page-header", valid, lambda d: chunk(d, 1, 0)[1] + 1),
    Flip("data-page-header-low-bit", valid, lambda d: chunk(d, 1, 0)[1] + 3, mask=0x01),
    Flip("snappy-page-middle", valid, lambda d: sum(chunk(d, 1, 0)[1:]) // 2),
    Flip("snappy-page-tail", valid, lambda d: chunk(d, 1, 0)[2] - 2),
    Flip("snappy-float-page", valid, lambda d: sum(chunk(d, 2, 4)[1:]) // 2),
    Flip("plain-int-values", lambda: valid_as("none"), lambda d: sum(chunk(d, 1, 0)[1:]) // 2),
    Flip("plain-float-values", lambda: valid_as("none"), lambda d: sum(chunk(d, 2, 4)[1:]) // 2, count=4),
    Flip("gzip-page-middle", lambda: valid_as("gzip"), lambda d: sum(chunk(d, 1, 0)[1:]) // 2),
    Flip("zstd-string-page-middle", lambda: valid_as("zstd"), lambda d: sum(chunk(d, 1, 2)[1:]) // 2),
]


def test_the_bad_inputs_are_counted() -> None:
    """The report quotes these numbers; keep them honest."""
    assert len(CASES) == 27
    assert len(FLIPS) == 14
    assert len({c.id for c in CASES} | {f.id for f in FLIPS}) == 27 + 14


def readable_rows(data: bytes) -> int | None:
    """The rows pyarrow reads from ``data``, or None when it refuses it."""
    try:
        return int(pq.read_table(pa.BufferReader(data)).num_rows)
    except (pa.ArrowException, OSError, ValueError):
        return None


def signal_in_child(body: bytes, settings: Settings) -> int | None:
    """Run pyarrow and the engine over ``body`` in a forked child: the signal that killed it, if any.

    Flipped footers can reach pyarrow code that aborts the process rather
    than raising; checking in a child first keeps such a case from taking the
    whole test run down with it.
    """
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            readable_rows(body)
            pipeline.recompress_bytes(body, settings)
        except BaseException:  # noqa: S110  # refusing is fine here; only a crash matters
            pass
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


# --------------------------------------------------------------------------- through the pipeline


def download(container: ContainerClient, name: str) -> bytes:
    return bytes(container.get_blob_client(name).download_blob().readall())


def blob_names(service: BlobServiceClient, container: str) -> list[str]:
    try:
        return sorted(b.name for b in service.get_container_client(container).list_blobs())
    except ResourceNotFoundError:
        return []


def pipeline_settings(storage_env: dict[str, str], env: dict[str, str], quarantine: str) -> Settings:
    return Settings.from_env({**storage_env, **env, "RECOMPRESS_QUARANTINE_CONTAINER": quarantine})


def slow_transform(folder: Path) -> str:
    """Write a transform that sleeps per batch into ``folder``; return its RECOMPRESS_TRANSFORM spec."""
    module = f"slow_batches_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(
        "import time\n\n\n"
        "def slow(batch):\n"
        f"    time.sleep({DEADLINE_SLEEP_SECONDS})\n"
        "    return batch\n"
    )
    return f"{module}:slow"


def case_env(case: Bad, tmp_path: Path) -> dict[str, str]:
    return {**case.env, "RECOMPRESS_TRANSFORM": slow_transform(tmp_path)} if case.slow_transform else case.env


def assert_one_line(message: str, subject: str, problem: str) -> None:
    assert "\n" not in message
    assert "Traceback" not in message
    assert re.fullmatch(rf"{re.escape(subject)}: {problem}", message), f"{message!r} !~ {problem!r}"


def assert_quarantined(report: Report, service: BlobServiceClient, containers: tuple[ContainerClient, ...],
                       quarantine: str, name: str, body: bytes, kind: str, problem: str) -> None:
    """Quarantined: an exact copy and a full error report aside, no output, the input untouched."""
    subject = f"{containers[0].container_name}/{name}"
    source = containers[0].get_blob_client(name).get_blob_properties()
    assert report.status == "quarantined", report
    assert report.error is not None
    assert_one_line(report.error, subject, problem)
    assert report.output == f"{quarantine}/{name}"
    assert blob_names(service, quarantine) == [name, f"{name}.error.json"]
    aside = service.get_container_client(quarantine)
    assert download(aside, name) == body
    error = json.loads(download(aside, f"{name}.error.json"))
    assert set(error) == REPORT_FIELDS
    assert error["source"] == subject
    assert error["kind"] == kind
    assert error["message"] == report.error == f"{subject}: {error['error']}"
    assert error["source_etag"] == str(source.etag).strip('"')
    assert error["source_size"] == len(body)
    assert datetime.fromisoformat(error["quarantined_at"]).tzinfo is not None
    assert error["app_version"] == __version__
    assert list(containers[1].list_blobs()) == []
    assert download(containers[0], name) == body, "the input must stay untouched"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_blob_is_quarantined_once_with_nothing_written(
    case: Bad, storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient],
    service: BlobServiceClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    quarantine = f"q-{uuid.uuid4().hex[:12]}"
    settings = pipeline_settings(storage_env, case_env(case, tmp_path), quarantine)
    body, name = case.build(), f"incoming/{case.id}.parquet"
    containers[0].get_blob_client(name).upload_blob(body)
    etag = containers[0].get_blob_client(name).get_blob_properties().etag

    first = blobs.process_blob(containers[0].get_blob_client(name), settings)

    assert_quarantined(first, service, containers, quarantine, name, body, case.kind, case.problem)
    copy = service.get_blob_client(quarantine, name).get_blob_properties()

    again = blobs.process_blob(containers[0].get_blob_client(name), settings)

    assert_quarantined(again, service, containers, quarantine, name, body, case.kind, case.problem)
    assert service.get_blob_client(quarantine, name).get_blob_properties().etag == copy.etag, "copied twice"
    assert containers[0].get_blob_client(name).get_blob_properties().etag == etag


@pytest.mark.parametrize("flip", FLIPS, ids=[f.id for f in FLIPS])
def test_a_flipped_blob_is_quarantined_or_rewritten_with_the_rows_pyarrow_reads(
    flip: Flip, storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient],
    service: BlobServiceClient,
) -> None:
    quarantine = f"q-{uuid.uuid4().hex[:12]}"
    settings = pipeline_settings(storage_env, {}, quarantine)
    body, name = flip.build(), f"flipped/{flip.id}.parquet"
    assert body != flip.base()
    assert signal_in_child(body, settings) is None, "reading this input kills the process"
    expected_rows = readable_rows(body)
    containers[0].get_blob_client(name).upload_blob(body)

    report = blobs.process_blob(containers[0].get_blob_client(name), settings)

    if expected_rows is None:
        assert_quarantined(report, service, containers, quarantine, name, body, "NotParquetError", UNREADABLE)
        return
    assert report.status == "written", report
    output = download(containers[1], name)
    assert pq.read_table(pa.BufferReader(output)).num_rows == expected_rows == report.rows
    assert_same_data(body, output)  # what pyarrow reads from the damaged input, kept losslessly
    assert codec_of(output) == {"ZSTD"}
    assert blob_names(service, quarantine) == []
    assert download(containers[0], name) == body


# --------------------------------------------------------------------------- through the command line


def cli_env(*extra: dict[str, str]) -> dict[str, str]:
    """This environment without app settings, plus ``extra``, importing the project from its root."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMPRESS_", STORAGE_CONNECTION))}
    merged = {**clean, "PYTHONPATH": str(ROOT)}
    for more in extra:
        merged.update(more)
    return merged


def run_cli(env: dict[str, str], src: str, dst: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared", "recompress", src, dst], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def assert_clean_exit(done: subprocess.CompletedProcess[str], subject: str, problem: str) -> None:
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    assert done.stdout == ""
    assert done.stderr.endswith("\n")
    assert done.stderr.startswith("error: ")
    assert_one_line(done.stderr[len("error: "):-1], subject, problem)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def local_env(case: Bad, tmp_path: Path) -> dict[str, str]:
    env = cli_env(case_env(case, tmp_path))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path)])
    return env


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_file_exits_2_in_one_line_and_leaves_no_dst(case: Bad, tmp_path: Path) -> None:
    src, out = tmp_path / "in" / f"{case.id}.parquet", tmp_path / "out"
    src.parent.mkdir()
    out.mkdir()
    body = case.build()
    src.write_bytes(body)

    done = run_cli(local_env(case, tmp_path), str(src), str(out / "result.parquet"))

    assert_clean_exit(done, str(src), case.problem)
    assert leftovers(out) == [], "no DST and no partial file"
    assert src.read_bytes() == body


BLOB_DST_CASES = [
    pytest.param("random-bytes", True, id="blob-to-blob-random-bytes"),
    pytest.param("decompression-bomb", False, id="file-to-blob-decompression-bomb"),
    pytest.param("over-max-blob-size", True, id="blob-to-blob-over-max-blob-size"),
]


@pytest.mark.parametrize(("case_id", "from_blob"), BLOB_DST_CASES)
def test_a_bad_file_leaves_no_blob_dst(case_id: str, from_blob: bool, storage_env: dict[str, str],
                                       containers: tuple[ContainerClient, ContainerClient], tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    body = case.build()
    if from_blob:
        containers[0].get_blob_client("bad.parquet").upload_blob(body)
        src = f"{containers[0].container_name}/bad.parquet"
    else:
        (tmp_path / "bad.parquet").write_bytes(body)
        src = str(tmp_path / "bad.parquet")
    dst = f"{containers[1].container_name}/result.parquet"

    done = run_cli(cli_env(storage_env, case.env), src, dst)

    assert_clean_exit(done, src, case.problem)
    assert list(containers[1].list_blobs()) == []
    assert (download(containers[0], "bad.parquet") if from_blob else (tmp_path / "bad.parquet").read_bytes()) == body


@pytest.mark.parametrize("flip", FLIPS, ids=[f.id for f in FLIPS])
def test_a_flipped_file_exits_2_or_is_rewritten_with_the_rows_pyarrow_reads(flip: Flip, tmp_path: Path) -> None:
    src, dst = tmp_path / "in.parquet", tmp_path / "out" / "result.parquet"
    dst.parent.mkdir()
    body = flip.build()
    src.write_bytes(body)
    expected_rows = readable_rows(body) if signal_in_child(body, Settings()) is None else None

    done = run_cli(cli_env(), str(src), str(dst))

    if expected_rows is None:
        assert_clean_exit(done, str(src), UNREADABLE)
        assert leftovers(dst.parent) == []
    else:
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert pq.read_table(dst).num_rows == expected_rows
        assert_same_data(body, dst)
        assert codec_of(dst.read_bytes()) == {"ZSTD"}
    assert src.read_bytes() == body


def test_a_decompression_bomb_is_refused_in_far_less_memory_than_it_inflates_to(tmp_path: Path) -> None:
    """The row-group limit is checked from the footer, so the refusal costs a footer read, not 1.28 GB."""
    body = decompression_bomb()
    meta = pq.ParquetFile(pa.BufferReader(body)).metadata
    assert (meta.num_rows, meta.num_row_groups) == (BOMB_ROWS, 1)
    inflated = meta.row_group(0).total_byte_size
    assert inflated > 1024**3
    assert len(body) < 1024**2, f"the bomb is {len(body)} bytes on disk"
    src, dst, err = tmp_path / "bomb.parquet", tmp_path / "out.parquet", tmp_path / "stderr.txt"
    src.write_bytes(body)
    env = cli_env({"RECOMPRESS_MAX_ROW_GROUP_BYTES": BOMB_LIMIT})
    # peak_rss_kib insists on exit 0; the shell turns "exit 2" (the expected refusal) into 0 and anything else into 1.
    script = '"$0" -m shared recompress "$1" "$2" 2>"$3"; test $? -eq 2'

    peak_kib = peak_rss_kib(["/bin/sh", "-c", script, sys.executable, str(src), str(dst), str(err)], env, ROOT)

    assert_one_line(err.read_text().removeprefix("error: ").removesuffix("\n"), str(src),
                    next(c for c in CASES if c.id == "decompression-bomb").problem)
    assert not dst.exists()
    assert peak_kib / 1024 < BOMB_PEAK_RSS_MIB, f"peak RSS {peak_kib / 1024:.0f} MiB refusing a {inflated} B bomb"

"""Hostile and broken inputs end in one clear line, no output, and the input untouched.

Every bad input of the corpus (``tests/damaged.py``) goes through the blob
pipeline against a real Azurite (it must be quarantined: an exact copy plus
the error report in its metadata, nothing in the output container, and a second run
duplicates nothing) and through the command line, in-process via
``shared.cli.main`` (the ``run_cli`` fixture; exit status 2, one line on stderr naming the file and the
problem, no traceback, no DST). A few cases also run the command as a real
process, the way a person runs it.

Flipped bytes are judged against pyarrow: a flip pyarrow notices must be
refused like any other bad input; a flip it does not notice may be rewritten,
and then the output must be valid Parquet with the rows pyarrow reads. Each
flipped file first goes to the sandbox worker (one long-lived process, see
``tests.helpers.Worker``): a flip that makes pyarrow abort fails its test there
instead of taking this process down.
"""

from __future__ import annotations

import re
import sys
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared import __version__, blobs
from shared.report import Report
from shared.settings import Settings
from tests.damaged import (
    BOMB_LIMIT,
    BOMB_PEAK_RSS_MIB,
    BOMB_ROWS,
    CASES,
    FLIPS,
    UNREADABLE,
    UNREADABLE_KINDS,
    Bad,
    Flip,
    case,
    case_env,
    decompression_bomb,
)
from tests.helpers import (
    Result,
    RunCli,
    Worker,
    app_free_env,
    assert_same_data,
    codec_of,
    measure_peak,
    partial_files,
    run_cli_process,
)

REPORT_FIELDS = {f"recompress_{key}" for key in ("error", "error_kind", "source_etag", "source_size", "quarantined_at",
                                                 "app_version")}


def survives(sandbox: Worker, body: bytes) -> int | None:
    """Run ``body`` through the engine and pyarrow in the sandbox; the rows pyarrow reads (None: refused).

    Fails the test when the input kills the process, before this process reads it.
    """
    verdict = sandbox.run(body)
    assert verdict["outcome"] != "died", f"reading this input kills the process: {verdict['stderr']}"
    rows = verdict["pyarrow_rows"]
    return None if rows is None else int(rows)


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


def assert_one_line(message: str, subject: str, problem: str) -> None:
    assert "\n" not in message
    assert "Traceback" not in message
    assert re.fullmatch(rf"{re.escape(subject)}: {problem}", message), f"{message!r} !~ {problem!r}"


def assert_quarantined(report: Report, service: BlobServiceClient, containers: tuple[ContainerClient, ...],
                       quarantine: str, name: str, body: bytes, kind: str | tuple[str, ...], problem: str) -> None:
    """Quarantined: an exact copy and a full error report aside, no output, the input untouched."""
    subject = f"{containers[0].container_name}/{name}"
    source = containers[0].get_blob_client(name).get_blob_properties()
    assert report.status == "quarantined", report
    assert report.error is not None
    assert_one_line(report.error, subject, problem)
    assert report.output == f"{quarantine}/{name}"
    assert blob_names(service, quarantine) == [name], "the report travels on the copy, so no name can collide"
    aside = service.get_container_client(quarantine).get_blob_client(name)
    assert aside.download_blob().readall() == body
    error = aside.get_blob_properties().metadata
    assert set(error) == REPORT_FIELDS
    assert error["recompress_error_kind"] in ((kind,) if isinstance(kind, str) else kind)
    assert report.error == f"{subject}: {unquote(error['recompress_error'])}"
    assert error["recompress_source_etag"] == str(source.etag).strip('"')
    assert error["recompress_source_size"] == str(len(body))
    assert datetime.fromisoformat(error["recompress_quarantined_at"]).tzinfo is not None
    assert error["recompress_app_version"] == __version__
    assert list(containers[1].list_blobs()) == []
    assert download(containers[0], name) == body, "the input must stay untouched"


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_a_bad_blob_is_quarantined_once_with_nothing_written(
    bad: Bad, storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient],
    service: BlobServiceClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    quarantine = f"q-{uuid.uuid4().hex[:12]}"
    settings = pipeline_settings(storage_env, case_env(bad, tmp_path), quarantine)
    body, name = bad.build(), f"incoming/{bad.id}.parquet"
    containers[0].get_blob_client(name).upload_blob(body)
    etag = containers[0].get_blob_client(name).get_blob_properties().etag

    first = blobs.process_blob(containers[0].get_blob_client(name), settings)

    assert_quarantined(first, service, containers, quarantine, name, body, bad.kind, bad.problem)
    copy = service.get_blob_client(quarantine, name).get_blob_properties()

    again = blobs.process_blob(containers[0].get_blob_client(name), settings)

    assert_quarantined(again, service, containers, quarantine, name, body, bad.kind, bad.problem)
    assert service.get_blob_client(quarantine, name).get_blob_properties().etag == copy.etag, "copied twice"
    assert containers[0].get_blob_client(name).get_blob_properties().etag == etag


@pytest.mark.parametrize("flip", FLIPS, ids=[f.id for f in FLIPS])
def test_a_flipped_blob_is_quarantined_or_rewritten_with_the_rows_pyarrow_reads(
    flip: Flip, storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient],
    service: BlobServiceClient, sandbox: Worker,
) -> None:
    quarantine = f"q-{uuid.uuid4().hex[:12]}"
    settings = pipeline_settings(storage_env, {}, quarantine)
    body, name = flip.build(), f"flipped/{flip.id}.parquet"
    assert body != flip.base()
    expected_rows = survives(sandbox, body)
    containers[0].get_blob_client(name).upload_blob(body)

    report = blobs.process_blob(containers[0].get_blob_client(name), settings)

    if expected_rows is None:
        assert_quarantined(report, service, containers, quarantine, name, body, UNREADABLE_KINDS, UNREADABLE)
        return
    assert report.status == "written", report
    output = download(containers[1], name)
    assert pq.read_table(pa.BufferReader(output)).num_rows == expected_rows == report.rows
    assert_same_data(body, output)  # what pyarrow reads from the damaged input, kept losslessly
    assert codec_of(output) == {"ZSTD"}
    assert blob_names(service, quarantine) == []
    assert download(containers[0], name) == body


# --------------------------------------------------------------------------- through the command line


def assert_clean_exit(done: Result, subject: str, problem: str) -> None:
    assert done.code == 2, f"exit {done.code}: {done.err.strip()[-300:]}"
    assert done.out == ""
    assert done.err.endswith("\n")
    assert done.err.startswith("error: ")
    assert_one_line(done.err[len("error: "):-1], subject, problem)


def assert_nothing_written(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == [], "no DST and no partial file"


def local_files(bad: Bad, tmp_path: Path) -> tuple[Path, Path, bytes]:
    """SRC holding ``bad``'s bytes, an empty folder for DST, and the bytes."""
    src, out = tmp_path / "in" / f"{bad.id}.parquet", tmp_path / "out"
    src.parent.mkdir()
    out.mkdir()
    body = bad.build()
    src.write_bytes(body)
    return src, out, body


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_a_bad_file_exits_2_in_one_line_and_leaves_no_dst(
    bad: Bad, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out, body = local_files(bad, tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for key, value in case_env(bad, tmp_path).items():
        monkeypatch.setenv(key, value)

    done = run_cli(src, out / "result.parquet")

    assert_clean_exit(done, str(src), bad.problem)
    assert_nothing_written(out)
    assert partial_files(tmp_path) == []
    assert src.read_bytes() == body


@pytest.mark.parametrize("case_id", ["empty", "dictionary-indices-past-the-end-crash", "nested-8-deep-limit-5"])
def test_a_bad_file_exits_2_in_one_line_as_a_real_process(case_id: str, tmp_path: Path) -> None:
    """A few cases as a real process too: what reaches stderr and the exit status outside pytest's capture."""
    bad = case(case_id)
    src, out, body = local_files(bad, tmp_path)

    done = run_cli_process(src, out / "result.parquet", env=app_free_env(case_env(bad, tmp_path)))

    assert_clean_exit(done, str(src), bad.problem)
    assert_nothing_written(out)
    assert src.read_bytes() == body


BLOB_DST_CASES = [
    pytest.param("random-bytes", True, id="blob-to-blob-random-bytes"),
    pytest.param("decompression-bomb", False, id="file-to-blob-decompression-bomb"),
    pytest.param("over-max-blob-size", True, id="blob-to-blob-over-max-blob-size"),
]


@pytest.mark.parametrize(("case_id", "from_blob"), BLOB_DST_CASES)
def test_a_bad_file_leaves_no_blob_dst(case_id: str, from_blob: bool, storage_env: dict[str, str],
                                       containers: tuple[ContainerClient, ContainerClient], tmp_path: Path) -> None:
    bad = case(case_id)
    body = bad.build()
    if from_blob:
        containers[0].get_blob_client("bad.parquet").upload_blob(body)
        src = f"{containers[0].container_name}/bad.parquet"
    else:
        (tmp_path / "bad.parquet").write_bytes(body)
        src = str(tmp_path / "bad.parquet")
    dst = f"{containers[1].container_name}/result.parquet"

    done = run_cli_process(src, dst, env=app_free_env(storage_env, bad.env))

    assert_clean_exit(done, src, bad.problem)
    assert list(containers[1].list_blobs()) == []
    assert (download(containers[0], "bad.parquet") if from_blob else (tmp_path / "bad.parquet").read_bytes()) == body


@pytest.mark.parametrize("flip", FLIPS, ids=[f.id for f in FLIPS])
def test_a_flipped_file_exits_2_or_is_rewritten_with_the_rows_pyarrow_reads(
    flip: Flip, tmp_path: Path, run_cli: RunCli, sandbox: Worker
) -> None:
    src, dst = tmp_path / "in.parquet", tmp_path / "out" / "result.parquet"
    dst.parent.mkdir()
    body = flip.build()
    src.write_bytes(body)
    expected_rows = survives(sandbox, body)

    done = run_cli(src, dst)

    if expected_rows is None:
        assert_clean_exit(done, str(src), UNREADABLE)
        assert_nothing_written(dst.parent)
    else:
        assert done.code == 0, done.err
        assert done.err == ""
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
    src, dst = tmp_path / "bomb.parquet", tmp_path / "out.parquet"
    src.write_bytes(body)
    env = app_free_env({"RECOMPRESS_MAX_ROW_GROUP_BYTES": BOMB_LIMIT})

    run = measure_peak([sys.executable, "-m", "shared", "recompress", str(src), str(dst)], env)

    assert_clean_exit(Result(run.code, run.stdout, run.stderr), str(src), case("decompression-bomb").problem)
    assert not dst.exists()
    peak_mib = run.peak_kib / 1024
    assert peak_mib < BOMB_PEAK_RSS_MIB, f"peak RSS {peak_mib:.0f} MiB refusing a {inflated} B bomb"

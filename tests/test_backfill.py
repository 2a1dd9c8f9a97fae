"""Backfill end to end: the job API of `make run`'s local host, its queue triggers, worker processes that are
killed mid-blob and mid-listing, and the CLI twin, all against a real Azurite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from bench.writers import WRITERS, written_by
from devhost.azurite import Azurite, connection_string
from shared import backfill
from shared.settings import STORAGE_CONNECTION, Settings
from tests.faults import Fault, FaultProxy
from tests.helpers import ROOT, RunningHost, app_free_env, assert_same_data, parquet_bytes, sample_table, wait_for

COUNTS = ("state", "total", "written", "skipped", "superseded", "quarantined", "failed")


def _writer_bytes(i: int) -> bytes:
    """Inputs from three writers in turn: pyarrow, polars and DuckDB."""
    return written_by(WRITERS[i % 3], sample_table(40 + i))


def _counts(status: dict[str, Any]) -> dict[str, Any]:
    return {key: status[key] for key in COUNTS}


def _run_job(host: RunningHost, body: dict[str, Any]) -> dict[str, Any]:
    started = host.request("POST", "/api/backfill", json.dumps(body).encode())
    assert started.status == 202, started.body
    answer = json.loads(started.body)
    assert answer["status_url"].endswith(f"/api/backfill/{answer['id']}")

    def finished() -> dict[str, Any] | None:
        status = json.loads(host.request("GET", f"/api/backfill/{answer['id']}").body)
        return status if status["state"] in ("done", "failed") else None

    return wait_for(finished, f"backfill job {answer['id']} to finish", timeout=180)


def test_a_backfill_writes_what_is_missing_skips_what_is_current_and_counts_the_quarantined(
        host: RunningHost) -> None:
    names = [f"fill/{i:03d}.parquet" for i in range(100)]
    for i, name in enumerate(names):
        host.input.upload_blob(name, _writer_bytes(i))
    for bad in ("fill/notes.parquet", "fill/zz-truncated.parquet"):
        host.input.upload_blob(bad, b"PAR1 this is not a Parquet file")
    wait_for(lambda: True if sum(1 for _ in host.output.list_blobs(name_starts_with="fill/")) == 100
             and sum(1 for _ in host.quarantine.list_blobs(name_starts_with="fill/")) == 2 else None,
             "the trigger to process all 102 uploads", timeout=180)
    for name in names[::2]:
        host.output.delete_blob(name)

    dry = _run_job(host, {"prefix": "fill/", "dry_run": True})
    assert sum(1 for _ in host.output.list_blobs(name_starts_with="fill/")) == 50, "a dry run writes nothing"
    real = _run_job(host, {"prefix": "fill/"})

    expected = {"state": "done", "total": 102, "written": 50, "skipped": 50, "superseded": 0, "quarantined": 2,
                "failed": 0}
    assert _counts(dry) == expected
    assert dry["dry_run"] is True
    assert _counts(real) == expected
    assert real["bytes_in"] == dry["bytes_in"] > real["bytes_out"] > 0
    for i, name in enumerate(names):
        output = host.output_blob(name)
        assert output is not None, name
        assert_same_data(_writer_bytes(i), output)
    listed = json.loads(host.request("GET", "/api/backfill").body)["jobs"]
    assert [job["id"] for job in listed[:2]] == [real["id"], dry["id"]]

    for name in names[::2]:
        host.output.delete_blob(name)
    twin = subprocess.run([sys.executable, "-m", "shared", "backfill", "--prefix", "fill/", "--json"], cwd=ROOT,
                          env=app_free_env(host.env), capture_output=True, text=True, timeout=300, check=False)
    assert twin.returncode == 0, twin.stderr
    assert _counts(json.loads(twin.stdout)) == expected


@pytest.mark.parametrize(("body", "problem"), [
    (b"not json", "must be JSON like"),
    (b'{"prefix": 3}', '"prefix" must be a string'),
    (b'{"prefix": "a", "dry_run": "yes"}', '"dry_run" true or false'),
    (b'{"prefix": "a", "extra": 1}', "must be a JSON object like"),
    (b'{"prefix": "a/../b"}', "must not contain '.' or '..' segments"),
    (b'{"prefix": "https://x.blob.core.windows.net/c/"}', "not a URL or path"),
])
def test_bad_job_requests_get_400_with_one_line(host: RunningHost, body: bytes, problem: str) -> None:
    response = host.request("POST", "/api/backfill", body)

    assert response.status == 400
    assert problem in json.loads(response.body)["error"]


def test_an_unknown_job_is_404(host: RunningHost) -> None:
    response = host.request("GET", "/api/backfill/20260101T000000Z-000000")

    assert response.status == 404
    assert "does not exist" in json.loads(response.body)["error"]


# --------------------------------------------------------------------------- worker processes killed mid-way


@pytest.fixture
def workers(backfill_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop_all()


class Workers:
    """``python -m devhost.worker`` processes: the local equivalent of Functions instances on one queue."""

    LEASE = 2

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "devhost.worker", "--lease", str(self.LEASE)], cwd=ROOT,
                                   env=app_free_env(env), stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def _kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _done(settings: Settings, job: str) -> Any:
    status = backfill.status(settings, job)
    return status if status.state == "done" else None


def test_a_worker_killed_mid_blob_leaves_it_to_another_exactly_once(
        backfill_env: dict[str, str], workers: Workers, tmp_path: Path,
        containers: tuple[ContainerClient, ContainerClient]) -> None:
    marker = tmp_path / "started"
    (tmp_path / "hang_here.py").write_text(
        "import pathlib, threading\n"
        f"def hang(batch):\n    pathlib.Path({str(marker)!r}).touch()\n    threading.Event().wait()\n")
    containers[0].upload_blob("k/a.parquet", parquet_bytes(sample_table(100)))
    settings = Settings.from_env(backfill_env)
    job = backfill.start(settings, "k/")
    doomed = workers.start({**backfill_env, "RECOMPRESS_TRANSFORM": "hang_here:hang",
                            "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"})
    wait_for(lambda: True if marker.exists() else None, "the first worker to be mid-blob", timeout=60)

    _kill(doomed)
    workers.start(backfill_env)

    status = wait_for(lambda: _done(settings, job), "the job to finish on the second worker", timeout=90)
    assert (status.total, status.written, status.failed) == (1, 1, 0)
    assert [b.name for b in containers[1].list_blobs()] == ["k/a.parquet"]
    [row] = backfill.jobs_for(settings).outcomes(job)
    assert row["status"] == "written"


def test_a_worker_killed_mid_listing_resumes_without_counting_a_blob_twice(
        backfill_env: dict[str, str], workers: Workers, azurite: Azurite,
        containers: tuple[ContainerClient, ContainerClient]) -> None:
    names = [f"m/{i:02d}.parquet" for i in range(12)]
    for name in names:
        containers[0].upload_blob(name, parquet_bytes(sample_table(30)))
    env = {**backfill_env, "RECOMPRESS_BACKFILL_PAGE_SIZE": "4"}
    settings = Settings.from_env(env)
    job = backfill.start(settings, "m/")
    proxy = FaultProxy(azurite.table_port)
    # Hold the write that marks page 0 finished: by then its blobs and the next page are queued.
    held = Fault("PATCH", "page-000000000", "hold")
    proxy.faults.append(held)
    try:
        doomed = workers.start({**env, STORAGE_CONNECTION: connection_string(
            azurite.blob_port, azurite.queue_port, proxy.port)})
        wait_for(lambda: True if held.held.is_set() else None, "the listing to be mid-page", timeout=60)
        _kill(doomed)
    finally:
        proxy.stop()
    workers.start(env)

    status = wait_for(lambda: _done(settings, job), "the job to finish", timeout=120)
    assert (status.total, status.written, status.skipped, status.failed, status.pages) == (12, 12, 0, 0, 3)
    assert sorted(row["name"] for row in backfill.jobs_for(settings).outcomes(job)) == names
    assert sorted(b.name for b in containers[1].list_blobs()) == names


def test_storage_errors_while_counting_are_retried_and_the_counts_add_up(
        backfill_env: dict[str, str], azurite: Azurite, proxy: FaultProxy,
        containers: tuple[ContainerClient, ContainerClient]) -> None:
    for i in range(6):
        containers[0].upload_blob(f"r/{i}.parquet", parquet_bytes(sample_table(10)))
    table_proxy = FaultProxy(azurite.table_port)
    table_proxy.faults.append(Fault("POST", "$batch", "status", times=4, status=503))
    table_proxy.faults.append(Fault("POST", "$batch", "reset-before", times=2))
    env = {**backfill_env, "RECOMPRESS_RETRY_BACKOFF": "0.01",
           STORAGE_CONNECTION: connection_string(azurite.blob_port, azurite.queue_port, table_proxy.port)}
    try:
        status = backfill.run_here(Settings.from_env(env), "r/", workers=2)
    finally:
        table_proxy.stop()

    assert table_proxy.injected == 6
    assert (status.state, status.total, status.written, status.counted) == ("done", 6, 6, 6)

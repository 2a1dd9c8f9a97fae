"""`python -m devhost`, as `make run` starts it: Azurite, the app and events; Ctrl-C stops all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.__main__ import load_local_settings
from devhost.azurite import Azurite, connection_string, free_port, port_open
from shared.settings import STORAGE_CONNECTION
from tests.helpers import ROOT, app_free_env, assert_same_data, parquet_bytes, sample_table, wait_for


def download_or_none(service: BlobServiceClient, container: str, name: str) -> bytes | None:
    try:
        return bytes(service.get_blob_client(container, name).download_blob().readall())
    except ResourceNotFoundError:
        return None


def test_make_run_serves_the_app_turns_an_upload_into_an_output_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    app_port, blob_port, queue_port = free_port(), free_port(), free_port()
    env = app_free_env()
    log = tmp_path / "run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--func", "never", "--port", str(app_port),
             "--blob-port", str(blob_port), "--queue-port", str(queue_port), "--location", str(tmp_path / "data"),
             "--poll", "0.1"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: process.poll() is not None or "ready:" in log.read_text() or None, "make run to be ready",
                 timeout=60)
        assert process.poll() is None, log.read_text()
        service = BlobServiceClient.from_connection_string(connection_string(blob_port, queue_port))
        data = parquet_bytes(sample_table(100))
        service.get_blob_client("input", "hello.parquet").upload_blob(data)

        output = wait_for(lambda: download_or_none(service, "output", "hello.parquet"), "the output", timeout=60)

        assert_same_data(data, output)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)

    assert code == 0, log.read_text()
    assert not port_open(blob_port), "Azurite's blob service outlived Ctrl-C"
    assert not port_open(queue_port), "Azurite's queue service outlived Ctrl-C"
    assert not port_open(app_port)


def test_a_taken_port_is_reported_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "devhost", "--func", "never", "--port", str(free_port()),
             "--blob-port", str(port), "--queue-port", str(free_port()), "--location", str(tmp_path)],
            cwd=ROOT, env=app_free_env(), capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 1
    assert f"port {port} is taken" in result.stderr
    assert "Traceback" not in result.stderr


def start_devhost(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
                  log_name: str = "run.log") -> tuple[subprocess.Popen[bytes], Path]:
    """``python -m devhost --func never --poll 0.1 ARGS`` as its own process, output in a log file."""
    log = tmp_path / log_name
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "devhost", "--func", "never", "--poll", "0.1", *args],
                                   cwd=ROOT, env=env or app_free_env(), stdout=sink, stderr=subprocess.STDOUT)
    return process, log


def wait_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    wait_for(lambda: process.poll() is not None or "ready:" in log.read_text() or None, "the host to be ready",
             timeout=90)
    assert process.poll() is None, log.read_text()


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    return process.wait(timeout=30)


def test_after_a_kill_9_azurite_goes_too_and_make_run_starts_again(tmp_path: Path) -> None:
    blob_port, queue_port = free_port(), free_port()
    args = ("--blob-port", str(blob_port), "--queue-port", str(queue_port), "--location", str(tmp_path / "data"))
    first, log = start_devhost(tmp_path, "--port", str(free_port()), *args)
    try:
        wait_ready(first, log)
        first.kill()
        first.wait(timeout=30)
        wait_for(lambda: not (port_open(blob_port) or port_open(queue_port)) or None,
                 "Azurite to stop once its parent was killed")
    finally:
        stop(first)

    second, log = start_devhost(tmp_path, "--port", str(free_port()), *args, log_name="again.log")
    try:
        wait_ready(second, log)
    finally:
        assert stop(second) == 0, log.read_text()


def test_a_taken_app_port_is_one_line_and_azurite_is_stopped_again(tmp_path: Path) -> None:
    blob_port, queue_port = free_port(), free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "devhost", "--func", "never", "--port", str(port), "--blob-port", str(blob_port),
             "--queue-port", str(queue_port), "--location", str(tmp_path)],
            cwd=ROOT, env=app_free_env(), capture_output=True, text=True, timeout=120, check=False,
        )

    assert result.returncode == 1, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: port {port} is taken; is another `make run` running? Stop it or pick another with --port"
    ]
    assert "Traceback" not in result.stderr
    assert "stopping azurite" in result.stderr, "Azurite had started: it must be stopped"
    assert not port_open(blob_port)
    assert not port_open(queue_port)


def test_a_bad_setting_is_one_line_with_status_2_and_nothing_left_running(tmp_path: Path) -> None:
    blob_port, queue_port = free_port(), free_port()
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--func", "never", "--port", str(free_port()),
         "--blob-port", str(blob_port), "--queue-port", str(queue_port), "--location", str(tmp_path)],
        cwd=ROOT, env=app_free_env({"RECOMPRESS_ZSTD_LEVEL": "40"}), capture_output=True, text=True, timeout=120,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        "error: RECOMPRESS_ZSTD_LEVEL: must be from 1 to 22, got 40"
    ]
    assert "Traceback" not in result.stderr
    assert not port_open(blob_port)
    assert not port_open(queue_port)


def test_a_blob_uploaded_while_the_host_was_down_is_processed_when_it_starts(
    tmp_path: Path, azurite: Azurite, service: BlobServiceClient, containers: tuple[ContainerClient, ContainerClient],
) -> None:
    source, output = containers
    data = parquet_bytes(sample_table(50))
    source.get_blob_client("missed.parquet").upload_blob(data)
    env = app_free_env({
        STORAGE_CONNECTION: azurite.connection_string, "AzureWebJobsStorage": azurite.connection_string,
        "RECOMPRESS_INPUT_CONTAINER": source.container_name, "RECOMPRESS_OUTPUT_CONTAINER": output.container_name,
        "RECOMPRESS_QUARANTINE_CONTAINER": f"q-{source.container_name}",
    })
    process, log = start_devhost(tmp_path, "--no-azurite", "--port", str(free_port()), env=env)
    try:
        wait_ready(process, log)
        written = wait_for(lambda: download_or_none(service, output.container_name, "missed.parquet"),
                           "the output of the blob uploaded before the start", timeout=60)
    finally:
        assert stop(process) == 0, log.read_text()

    assert_same_data(data, written)


def test_settings_already_in_the_environment_win_over_local_settings(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A telemetry endpoint (or any setting) exported before `make run` is the one the app sees."""
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://from-the-file:4318", "RECOMPRESS_ZSTD_LEVEL": "9"}}))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-the-shell:4318")
    monkeypatch.setenv("RECOMPRESS_ZSTD_LEVEL", "")  # recorded, so the value loaded below is undone afterwards
    monkeypatch.delenv("RECOMPRESS_ZSTD_LEVEL")

    loaded = load_local_settings(tmp_path)

    assert loaded == tmp_path / "local.settings.json"
    assert os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://from-the-shell:4318"
    assert os.environ["RECOMPRESS_ZSTD_LEVEL"] == "9"

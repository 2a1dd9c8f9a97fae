"""`python -m devhost`, as `make run` starts it: Azurite, the app and events; Ctrl-C stops all."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devhost.azurite import connection_string, free_port, port_open
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

"""The project's Azurite: a leftover from an earlier run on the same folder never blocks the next start."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.azurite import PID_FILE, Azurite, free_port


def test_an_azurite_left_running_on_the_same_folder_is_stopped_and_replaced(tmp_path: Path) -> None:
    ports = free_port(), free_port()
    table_port = free_port()
    leftover = Azurite(tmp_path, *ports, log_file=tmp_path / "first.log", table_port=table_port)
    leftover.start()  # and never stopped, as after a kill -9 of the process that started it
    leftover_procs = list(leftover._procs)
    fresh = Azurite(tmp_path, *ports, log_file=tmp_path / "second.log", table_port=table_port)
    try:
        try:
            fresh.start()
        except RuntimeError as exc:  # say why, with what both Azurites logged
            logs = "\n".join(f"{name}:\n{(tmp_path / name).read_text(errors='replace')[-2000:]}"
                             for name in ("first.log", "second.log") if (tmp_path / name).exists())
            pytest.fail(f"{exc}\n{logs}")

        assert [proc.wait(timeout=30) is not None for proc in leftover_procs] == [True, True, True]
        service = BlobServiceClient.from_connection_string(fresh.connection_string)
        service.get_container_client("alive").create_container()
        assert (tmp_path / PID_FILE).exists()
    finally:
        fresh.stop()
        leftover.stop()

    assert not (tmp_path / PID_FILE).exists(), "a clean stop leaves no pid file"


def test_a_pid_file_naming_some_other_process_is_ignored(tmp_path: Path) -> None:
    (tmp_path / PID_FILE).write_text(json.dumps({"blob": os.getpid(), "queue": 1}))
    server = Azurite(tmp_path, free_port(), free_port(), log_file=tmp_path / "azurite.log")
    try:
        server.start()
    finally:
        server.stop()

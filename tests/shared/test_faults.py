"""Storage faults lose nothing and publish nothing partial.

A proxy of our own (tests/faults.py) sits between the pipeline and a real
Azurite and injects 503s, 500s, delays, dropped connections and cut-off bodies
at chosen points: while downloading, while staging a block, at the commit.
For every case the outcome must be one of: a complete, verified output; or no
output and an error the host would retry. The input is always intact.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.azurite import Azurite, connection_string, free_port
from shared import blobs
from shared.errors import StorageError
from shared.settings import STORAGE_CONNECTION, Settings
from tests.faults import Fault, FaultProxy
from tests.helpers import assert_same_data, noisy_table, parquet_bytes


def settings_via(proxy: FaultProxy, storage_env: dict[str, str], **extra: str) -> Settings:
    env = {
        **storage_env,
        STORAGE_CONNECTION: connection_string(proxy.port, free_port()),
        "RECOMPRESS_RETRY_TOTAL": "3",
        "RECOMPRESS_RETRY_BACKOFF": "0.05",
        "RECOMPRESS_READ_TIMEOUT": "5",
        **extra,
    }
    return Settings.from_env(env)


def output_or_none(container: ContainerClient, name: str) -> bytes | None:
    try:
        return bytes(container.get_blob_client(name).download_blob().readall())
    except ResourceNotFoundError:
        return None


SMALL = {"RECOMPRESS_BLOCK_SIZE": "64KiB"}  # several blocks per output, so staging can fail midway
RANGED = {"RECOMPRESS_RANGED_READ_THRESHOLD": "1KiB", **SMALL}

# (id, faults, extra settings, whether retries can absorb the fault)
CASES: list[tuple[str, list[Fault], dict[str, str], bool]] = [
    ("503-on-download", [Fault("GET", "in-", "status", status=503)], {}, True),
    ("500-on-download", [Fault("GET", "in-", "status", status=500)], {}, True),
    ("reset-before-download", [Fault("GET", "in-", "reset-before")], {}, True),
    ("truncated-download", [Fault("GET", "in-", "truncate")], {}, True),
    ("delay-on-download", [Fault("GET", "in-", "delay", seconds=0.5)], {}, True),
    ("503-on-range", [Fault("GET", "in-", "status", status=503, skip=2)], RANGED, True),
    ("truncated-range", [Fault("GET", "in-", "truncate", skip=2)], RANGED, True),
    ("reset-on-range", [Fault("GET", "in-", "reset-before", skip=3)], RANGED, True),
    ("503-mid-stage-block", [Fault("PUT", "comp=block&", "status", status=503, skip=2)], SMALL, True),
    ("500-mid-stage-block", [Fault("PUT", "comp=block&", "status", status=500, skip=1)], SMALL, True),
    ("reset-mid-stage-block", [Fault("PUT", "comp=block&", "reset-before", skip=2)], SMALL, True),
    ("503-at-commit", [Fault("PUT", "comp=blocklist", "status", status=503)], SMALL, True),
    ("reset-after-commit", [Fault("PUT", "comp=blocklist", "reset-after")], SMALL, True),
    ("503-server-busy-at-single-upload", [Fault("PUT", "out-", "status", status=503)], {}, True),
    # Blob Storage throttles with 503 ServerBusy; the SDK's storage policy does not retry a 429,
    # so the run fails cleanly and the Functions host retries the whole file later.
    ("429-at-single-upload", [Fault("PUT", "out-", "status", status=429)], {}, False),
    ("reset-after-single-upload", [Fault("PUT", "out-", "reset-after")], {}, True),
    ("persistent-503-on-download", [Fault("GET", "in-", "status", status=503, times=99)], {}, False),
    ("persistent-503-mid-stage-block",
     [Fault("PUT", "comp=block&", "status", status=503, times=99, skip=2)], SMALL, False),
    ("persistent-500-at-commit", [Fault("PUT", "comp=blocklist", "status", status=500, times=99)], SMALL, False),
    ("persistent-reset-at-upload", [Fault("PUT", "out-", "reset-before", times=99)], {}, False),
]


@pytest.mark.parametrize(("faults", "extra", "recoverable"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_storage_fault_yields_a_complete_output_or_none(
    proxy: FaultProxy, storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient],
    faults: list[Fault], extra: dict[str, str], recoverable: bool,
) -> None:
    data = parquet_bytes(noisy_table(40_000), row_group_size=5_000)
    source_blob = containers[0].get_blob_client("f.parquet")
    source_blob.upload_blob(data)
    settings = settings_via(proxy, storage_env, **extra)
    service = BlobServiceClient.from_connection_string(settings.connection.connection_string or "")
    proxy.faults = [f.fresh() for f in faults]

    try:
        report = blobs.process_blob(service.get_blob_client(containers[0].container_name, "f.parquet"), settings)
    except StorageError:
        report = None

    assert proxy.injected >= 1, "the fault never fired: the case tests nothing"
    output = output_or_none(containers[1], "f.parquet")
    if recoverable:
        assert report is not None
        assert report.status in ("written", "skipped")
    if report is None:
        assert output is None, "a failed run must leave no output"
    else:
        assert output is not None
        assert_same_data(data, output)
    assert bytes(source_blob.download_blob().readall()) == data, "the input must be intact"


def test_azurite_killed_and_restarted_mid_run_leaves_a_whole_output_or_none(
    tmp_path: Path,
) -> None:
    """Storage vanishes while blocks are being staged, then comes back on the same ports."""
    location = tmp_path / "azurite"
    server = Azurite(location, free_port(), free_port())
    server.start()
    proxy = FaultProxy(server.blob_port)
    try:
        service = BlobServiceClient.from_connection_string(server.connection_string)
        for name in ("in-kill", "out-kill"):
            service.create_container(name)
        data = parquet_bytes(noisy_table(60_000), row_group_size=5_000)
        service.get_blob_client("in-kill", "k.parquet").upload_blob(data)
        settings = Settings.from_env({
            STORAGE_CONNECTION: connection_string(proxy.port, server.queue_port),
            "RECOMPRESS_INPUT_CONTAINER": "in-kill", "RECOMPRESS_OUTPUT_CONTAINER": "out-kill",
            "RECOMPRESS_BLOCK_SIZE": "64KiB", "RECOMPRESS_RETRY_TOTAL": "8", "RECOMPRESS_RETRY_BACKOFF": "0.5",
        })
        # Hold the third block, take storage down under it, let the block meet the dead storage, then restart.
        hold = Fault("PUT", "comp=block&", "hold", skip=2)
        proxy.faults = [hold]
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["report"] = blobs.process_named_blob("k.parquet", settings)
            except StorageError as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        hold.wait_held(worker)
        server.stop()
        hold.release()
        assert hold.answered.wait(60), "the held block was never answered"
        server.start()
        worker.join(timeout=120)
        assert not worker.is_alive()

        output = output_or_none(service.get_container_client("out-kill"), "k.parquet")
        if "error" in outcome:
            assert output is None
        else:
            assert output is not None
            assert_same_data(data, output)
        assert bytes(service.get_blob_client("in-kill", "k.parquet").download_blob().readall()) == data
    finally:
        proxy.stop()
        server.stop()

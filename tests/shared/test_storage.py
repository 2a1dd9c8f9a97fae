"""Storage I/O against a real Azurite: both read paths, atomic block writes, metadata, memory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared import blobs, pipeline, reencode
from shared.errors import ConfigError, CredentialError, NotFoundError, NotParquetError
from shared.settings import STORAGE_CONNECTION, Settings
from shared.storage import BlockBlobSink, RangedBlobFile, open_blob, redact, service_client
from tests.helpers import app_free_env, assert_same_data, codec_of, measure_peak, parquet_bytes, sample_table


def upload(container: ContainerClient, name: str, data: bytes) -> None:
    container.get_blob_client(name).upload_blob(data, overwrite=True)


def download(container: ContainerClient, name: str) -> bytes:
    return bytes(container.get_blob_client(name).download_blob().readall())


def test_small_blob_is_read_in_one_download(settings: Settings, containers: tuple[ContainerClient, ...]) -> None:
    upload(containers[0], "small.parquet", parquet_bytes(sample_table()))
    opened = open_blob(containers[0].get_blob_client("small.parquet"), settings)
    assert not opened.ranged
    assert pq.ParquetFile(opened.file).metadata.num_rows == 1000


def test_blob_over_threshold_is_read_by_ranges_not_whole(
    settings: Settings, containers: tuple[ContainerClient, ...]
) -> None:
    table = sample_table(200_000)
    data = parquet_bytes(table, row_group_size=20_000)
    upload(containers[0], "big.parquet", data)
    client = containers[0].get_blob_client("big.parquet")
    ranged = RangedBlobFile(client, len(data), str(client.get_blob_properties().etag), settings)

    parquet = pq.ParquetFile(pa.PythonFile(ranged, mode="r"), pre_buffer=True)
    first = parquet.read_row_group(0)

    assert first.num_rows == 20_000
    assert ranged.requests <= 4, "footer and one row group should take a few coalesced requests"
    assert ranged.bytes_fetched < len(data) / 3, "one row group must not fetch the whole file"


def test_ranged_path_output_equals_input(settings: Settings, containers: tuple[ContainerClient, ...]) -> None:
    data = parquet_bytes(sample_table(100_000), row_group_size=10_000)
    upload(containers[0], "ranged.parquet", data)
    small_threshold = settings.with_overrides(ranged_read_threshold=1024)

    report = blobs.process_blob(containers[0].get_blob_client("ranged.parquet"), small_threshold)

    output = download(containers[1], "ranged.parquet")
    assert_same_data(data, output)
    assert codec_of(output) == {"ZSTD"}
    assert report.rows == 100_000


def test_output_carries_the_source_version_in_its_metadata(
    settings: Settings, containers: tuple[ContainerClient, ...]
) -> None:
    upload(containers[0], "dir/a b.parquet", parquet_bytes(sample_table()))
    source = containers[0].get_blob_client("dir/a b.parquet")
    etag = str(source.get_blob_properties().etag).strip('"')

    blobs.process_blob(source, settings)

    props = containers[1].get_blob_client("dir/a b.parquet").get_blob_properties()
    assert props.metadata == {
        "recompress_source": f"{containers[0].container_name}/dir/a%20b.parquet",
        "recompress_source_etag": etag,
        "recompress_source_size": str(source.get_blob_properties().size),
        "recompress_rows": "1000",
        "recompress_codec": "zstd",
        "recompress_level": str(reencode.DEFAULT_LEVEL),
        "recompress_mode": "reencode",
        "recompress_mode_reason": "reencode: provably identical, encodings chosen per column",
        "recompress_proof": "full",
        "recompress_readers": "input",
    }
    assert props.content_settings.content_type == "application/vnd.apache.parquet"


def test_large_output_is_staged_in_blocks_and_appears_only_on_commit(
    settings: Settings, containers: tuple[ContainerClient, ...]
) -> None:
    target = containers[1].get_blob_client("blocks.bin")
    sink = BlockBlobSink(target, settings.with_overrides(block_size=64 * 1024))
    payload = os.urandom(300 * 1024)
    for start in range(0, len(payload), 10_000):
        sink.write(payload[start:start + 10_000])

    with pytest.raises(ResourceNotFoundError):
        target.get_blob_properties()  # staged blocks are not a blob
    sink.commit({"k": "v"})

    assert download(containers[1], "blocks.bin") == payload
    committed, _ = target.get_block_list("committed")
    assert len(committed) == 5


def test_aborted_write_leaves_no_blob(settings: Settings, containers: tuple[ContainerClient, ...]) -> None:
    target = containers[1].get_blob_client("aborted.bin")
    sink = BlockBlobSink(target, settings.with_overrides(block_size=64 * 1024))
    sink.write(os.urandom(200 * 1024))
    sink.abort()
    with pytest.raises(ResourceNotFoundError):
        target.get_blob_properties()


@pytest.mark.parametrize("payload", [b"", b"PAR1", b"not parquet at all", b"a,b\n1,2\n"], ids=repr)
def test_unreadable_blob_is_reported_and_writes_no_output(
    payload: bytes, settings: Settings, containers: tuple[ContainerClient, ...]
) -> None:
    upload(containers[0], "bad.parquet", payload)
    report = blobs.process_blob(containers[0].get_blob_client("bad.parquet"), settings)
    assert report.status == "quarantined"
    assert report.error is not None
    assert report.error.startswith(f"{containers[0].container_name}/bad.parquet: not a readable Parquet file")
    assert list(containers[1].list_blobs()) == []
    assert download(containers[0], "bad.parquet") == payload, "the input must stay untouched"


def test_the_engine_error_for_unreadable_bytes_names_the_source() -> None:
    with pytest.raises(NotParquetError, match=r"x\.parquet: not a readable Parquet file"):
        pipeline.recompress_bytes(b"nope", Settings(), name="x.parquet")


def test_missing_blob_is_named(settings: Settings) -> None:
    with pytest.raises(NotFoundError, match=r"/nope.parquet: does not exist"):
        blobs.process_named_blob("nope.parquet", settings)


def test_missing_connection_says_what_to_set() -> None:
    with pytest.raises(ConfigError) as caught:
        service_client(Settings.from_env({}))
    message = str(caught.value)
    assert "\n" not in message
    assert f"{STORAGE_CONNECTION}__serviceUri" in message
    assert "UseDevelopmentStorage=true" in message


def test_managed_identity_off_azure_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Point the identity endpoint at a closed loopback port: as unreachable as IMDS off Azure.
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "x")
    env = {
        f"{STORAGE_CONNECTION}__serviceUri": "https://127.0.0.1:9/devstoreaccount1",
        f"{STORAGE_CONNECTION}__credential": "managedidentity",
    }
    with pytest.raises(CredentialError) as caught:
        blobs.process_named_blob("x.parquet", Settings.from_env(env))
    message = str(caught.value)
    assert "\n" not in message
    assert "managed identity" in message
    assert f"set {STORAGE_CONNECTION} to a connection string" in message


def test_identity_settings_need_https() -> None:
    env = {f"{STORAGE_CONNECTION}__serviceUri": "http://example.invalid/"}
    with pytest.raises(ConfigError, match="__serviceUri: must be an https:// URL"):
        service_client(Settings.from_env(env))


def test_secrets_are_masked_in_messages() -> None:
    text = "https://a.blob.core.windows.net/c/b?sv=2024&sig=abc%2Bdef&se=2030 AccountKey=Zm9v;"
    masked = redact(text)
    assert "abc%2Bdef" not in masked
    assert "Zm9v" not in masked


# --------------------------------------------------------------------------- memory


def _incompressible(rows: int) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table({"a": rng.integers(0, 2**62, rows), "b": rng.random(rows)})


@pytest.mark.slow
def test_peak_memory_stays_flat_as_the_blob_grows(
    storage_env: dict[str, str], containers: tuple[ContainerClient, ...], tmp_path: Path
) -> None:
    sizes = {"small": 1_000_000, "large": 6_000_000}  # about 16 MB and 96 MB of random data
    env = app_free_env(storage_env, {
        "RECOMPRESS_RANGED_READ_THRESHOLD": "1MiB",
        "RECOMPRESS_ROW_GROUP_SIZE": "250000",
        "RECOMPRESS_ZSTD_LEVEL": "1",
        "RECOMPRESS_BLOCK_SIZE": "1MiB",  # both files fill the upload pipeline, so only file size differs
    })
    peaks, bytes_in = {}, {}
    for label, rows in sizes.items():
        path = tmp_path / f"{label}.parquet"
        pq.write_table(_incompressible(rows), path, row_group_size=250_000, compression="none")
        bytes_in[label] = path.stat().st_size
        with path.open("rb") as handle:
            containers[0].get_blob_client(path.name).upload_blob(handle, overwrite=True)
        source = f"{containers[0].container_name}/{path.name}"
        target = f"{containers[1].container_name}/{path.name}"
        run = measure_peak([sys.executable, "-m", "shared", "recompress", source, target], env)
        assert run.code == 0, run.stderr
        peaks[label] = run.peak_kib
        path.unlink()

    growth_mib = (peaks["large"] - peaks["small"]) / 1024
    file_growth_mib = (bytes_in["large"] - bytes_in["small"]) / 1024**2
    assert file_growth_mib > 70
    assert growth_mib < file_growth_mib / 4, (
        f"peak RSS grew {growth_mib:.0f} MiB while the file grew {file_growth_mib:.0f} MiB: {peaks}"
    )

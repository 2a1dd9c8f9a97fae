"""Blob processing is idempotent and race-safe: at-least-once delivery yields exactly one output."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.azurite import Azurite, connection_string, free_port
from shared import blobs
from shared.errors import InputError, MissingContainerError, TransformError
from shared.report import Report
from shared.settings import STORAGE_CONNECTION, Settings
from tests.faults import Fault, FaultProxy
from tests.helpers import WriteModule, assert_same_data, noisy_table, parquet_bytes, sample_table


def upload(container: ContainerClient, name: str, data: bytes) -> None:
    container.get_blob_client(name).upload_blob(data, overwrite=True)


def output(container: ContainerClient, name: str) -> bytes:
    return bytes(container.get_blob_client(name).download_blob().readall())


def process_until_held(fault: Fault, container: ContainerClient, name: str,
                       settings: Settings) -> tuple[threading.Thread, list[Report]]:
    """Start processing ``name`` in a thread through the proxy; return once ``fault`` (a hold) holds the run."""
    service = BlobServiceClient.from_connection_string(settings.connection.connection_string or "")
    results: list[Report] = []
    worker = threading.Thread(target=lambda: results.append(
        blobs.process_blob(service.get_blob_client(container.container_name, name), settings)))
    worker.start()
    fault.wait_held(worker)
    return worker, results


def test_the_same_version_delivered_again_is_skipped_without_rewriting(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    upload(containers[0], "once.parquet", parquet_bytes(sample_table(100)))
    source = containers[0].get_blob_client("once.parquet")

    first = blobs.process_blob(source, settings)
    etag_after_first = containers[1].get_blob_client("once.parquet").get_blob_properties().etag
    second = blobs.process_blob(source, settings)

    assert (first.status, second.status) == ("written", "skipped")
    assert second.rows == 100
    assert containers[1].get_blob_client("once.parquet").get_blob_properties().etag == etag_after_first


def test_a_new_version_of_the_input_replaces_the_output(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    upload(containers[0], "v.parquet", parquet_bytes(sample_table(10)))
    blobs.process_blob(containers[0].get_blob_client("v.parquet"), settings)
    newer = parquet_bytes(sample_table(25))
    upload(containers[0], "v.parquet", newer)

    report = blobs.process_blob(containers[0].get_blob_client("v.parquet"), settings)

    assert report.status == "written"
    assert_same_data(newer, output(containers[1], "v.parquet"))


def test_many_runs_of_one_version_at_once_publish_exactly_once(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    data = parquet_bytes(sample_table(20_000))
    upload(containers[0], "race.parquet", data)
    wide_open = settings.with_overrides(max_concurrent_files=16, block_size=64 * 1024)

    with ThreadPoolExecutor(max_workers=8) as pool:
        reports = list(pool.map(
            lambda _: blobs.process_blob(containers[0].get_blob_client("race.parquet"), wide_open), range(8)
        ))

    statuses = Counter(r.status for r in reports)
    assert statuses["written"] == 1, statuses
    assert statuses["skipped"] == 7, statuses
    assert_same_data(data, output(containers[1], "race.parquet"))


def test_an_input_overwritten_while_it_is_processed_never_publishes_the_old_version(
    azurite: Azurite, storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient]
) -> None:
    proxy = FaultProxy(azurite.blob_port)
    try:
        settings = Settings.from_env({**storage_env, STORAGE_CONNECTION: connection_string(proxy.port, free_port()),
                                      "RECOMPRESS_BLOCK_SIZE": "64KiB"})
        old, new = parquet_bytes(noisy_table(30_000)), parquet_bytes(noisy_table(31_000, seed=2))
        upload(containers[0], "moving.parquet", old)
        hold = Fault("PUT", "comp=block&", "hold")  # hold the first run mid-write
        proxy.faults = [hold]
        worker, results = process_until_held(hold, containers[0], "moving.parquet", settings)
        upload(containers[0], "moving.parquet", new)  # the re-upload lands mid-run
        hold.release()
        worker.join(timeout=60)

        assert not worker.is_alive()

        assert results[0].status == "superseded"
        with pytest.raises(ResourceNotFoundError):
            containers[1].get_blob_client("moving.parquet").get_blob_properties()
        latest = blobs.process_blob(containers[0].get_blob_client("moving.parquet"), settings)
        assert latest.status == "written"
        assert_same_data(new, output(containers[1], "moving.parquet"))
    finally:
        proxy.stop()


def test_the_source_is_kept_unless_deletion_is_asked_for(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    upload(containers[0], "keep.parquet", parquet_bytes(sample_table(5)))
    upload(containers[0], "drop.parquet", parquet_bytes(sample_table(5)))

    blobs.process_blob(containers[0].get_blob_client("keep.parquet"), settings)
    blobs.process_blob(containers[0].get_blob_client("drop.parquet"), settings.with_overrides(delete_source=True))

    names = {b.name for b in containers[0].list_blobs()}
    assert names == {"keep.parquet"}
    assert {b.name for b in containers[1].list_blobs()} == {"keep.parquet", "drop.parquet"}


def test_a_quarantined_input_is_never_deleted_even_when_deletion_is_on(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    upload(containers[0], "junk.parquet", b"junk")

    report = blobs.process_blob(containers[0].get_blob_client("junk.parquet"),
                                   settings.with_overrides(delete_source=True))

    assert report.status == "quarantined"
    assert output(containers[0], "junk.parquet") == b"junk"


@pytest.mark.parametrize(
    "name",
    ["../output/x.parquet", "a/../../b.parquet", "./x.parquet", "https://evil.example/x.parquet",
     "/input/x.parquet", "a\\b.parquet", "bad\nname.parquet", "tab\tname", "x" * 1025, "   "],
    ids=["dotdot", "nested-dotdot", "dot", "url", "absolute", "backslash", "newline", "tab", "too-long", "blank"],
)
def test_process_refuses_names_outside_the_input_container(name: str, settings: Settings) -> None:
    with pytest.raises(InputError) as caught:
        blobs.process_named_blob(name, settings)
    assert str(caught.value).startswith("blob name: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["a.parquet", "deep/er/a b.parquet", "x" * 1024, "ünïcode/файл.parquet"])
def test_ordinary_names_pass_the_check(name: str) -> None:
    assert blobs.check_blob_name(name) == name


def test_a_run_that_loses_the_commit_race_to_a_newer_version_reports_superseded(
    azurite: Azurite, storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient]
) -> None:
    proxy = FaultProxy(azurite.blob_port)
    try:
        via_proxy = Settings.from_env({**storage_env, STORAGE_CONNECTION: connection_string(proxy.port, free_port())})
        direct = Settings.from_env(storage_env)
        old, new = parquet_bytes(sample_table(10)), parquet_bytes(sample_table(20))
        upload(containers[0], "race2.parquet", old)
        hold = Fault("PUT", containers[1].container_name, "hold")  # hold the old run's commit
        proxy.faults = [hold]
        worker, results = process_until_held(hold, containers[0], "race2.parquet", via_proxy)
        upload(containers[0], "race2.parquet", new)  # the newer version lands and publishes first
        assert blobs.process_blob(containers[0].get_blob_client("race2.parquet"), direct).status == "written"
        hold.release()
        worker.join(timeout=60)

        assert not worker.is_alive()

        assert results[0].status == "superseded"
        assert_same_data(new, output(containers[1], "race2.parquet"))
    finally:
        proxy.stop()


# ------------------------------------------------------------------- the output follows the input's current version


def quarantined_settings(settings: Settings) -> Settings:
    return settings.with_overrides(quarantine_container=f"q-{settings.output_container}")


def test_a_quarantined_new_version_retires_the_old_versions_output(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient], service: BlobServiceClient,
) -> None:
    settings = quarantined_settings(settings)
    upload(containers[0], "v.parquet", parquet_bytes(sample_table()))
    assert blobs.process_blob(containers[0].get_blob_client("v.parquet"), settings).status == "written"
    upload(containers[0], "v.parquet", b"not parquet at all")

    report = blobs.process_blob(containers[0].get_blob_client("v.parquet"), settings)

    assert report.status == "quarantined"
    assert report.detail == f"removed {containers[1].container_name}/v.parquet, made from an older version"
    assert list(containers[1].list_blobs()) == [], "output/ must not serve v1 as if it were current"


def test_a_good_new_version_clears_the_old_versions_quarantine_copy(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient], service: BlobServiceClient,
) -> None:
    settings = quarantined_settings(settings)
    upload(containers[0], "v.parquet", b"not parquet at all")
    assert blobs.process_blob(containers[0].get_blob_client("v.parquet"), settings).status == "quarantined"
    upload(containers[0], "v.parquet", parquet_bytes(sample_table()))

    report = blobs.process_blob(containers[0].get_blob_client("v.parquet"), settings)

    assert report.status == "written"
    assert list(service.get_container_client(settings.quarantine_container).list_blobs()) == []


def test_inputs_whose_names_would_collide_with_a_report_each_keep_their_own(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient], service: BlobServiceClient,
) -> None:
    settings = quarantined_settings(settings)
    names = ["coll.parquet", "coll.parquet.error.json", "x" * 1016 + ".parquet"]
    for index, name in enumerate(names):
        upload(containers[0], name, f"bad input {index}".encode())

    reports = [blobs.process_blob(containers[0].get_blob_client(name), settings) for name in names]

    assert [r.status for r in reports] == ["quarantined"] * 3
    aside = service.get_container_client(settings.quarantine_container)
    assert sorted(b.name for b in aside.list_blobs()) == sorted(names)
    for index, name in enumerate(names):
        assert output_of(aside, name) == f"bad input {index}".encode()


def output_of(container: ContainerClient, name: str) -> bytes:
    return bytes(container.get_blob_client(name).download_blob().readall())


# --------------------------------------------------------------------------- events that cannot be processed


def test_an_event_for_a_deleted_blob_ends_as_gone_without_a_retry(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient],
) -> None:
    report = blobs.process_blob(containers[0].get_blob_client("deleted.parquet"), settings)

    assert report.status == "gone"
    assert report.error is None
    assert report.detail == "deleted before it could be processed"


@pytest.mark.parametrize("name", ["a/../b.parquet", "./c.parquet", "d/./e.parquet"])
def test_a_name_the_sdk_cannot_address_is_reported_by_name_without_a_retry(
    name: str, settings: Settings, containers: tuple[ContainerClient, ContainerClient],
) -> None:
    report = blobs.process_blob(containers[0].get_blob_client(name), settings)

    assert report.status == "unprocessable"
    assert report.error is not None
    assert report.error.startswith(f"blob name {name!r} has '.' or '..' segments")


def test_a_skipped_run_is_not_an_error(settings: Settings, containers: tuple[ContainerClient, ContainerClient]) -> None:
    upload(containers[0], "s.parquet", parquet_bytes(sample_table()))
    blobs.process_blob(containers[0].get_blob_client("s.parquet"), settings)

    again = blobs.process_blob(containers[0].get_blob_client("s.parquet"), settings)

    assert again.status == "skipped"
    assert again.error is None
    assert again.detail == "this version was already recompressed"
    assert "error" not in again.line()


def test_a_failing_transform_fails_the_run_loudly_and_quarantines_nothing(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient], service: BlobServiceClient,
    write_module: WriteModule,
) -> None:
    module = write_module("""
        def explode(batch):
            raise KeyError("a bug in the operator's code")
    """)
    settings = quarantined_settings(settings).with_overrides(transform=f"{module}:explode")
    upload(containers[0], "t.parquet", parquet_bytes(sample_table()))

    with pytest.raises(TransformError, match="KeyError"):
        blobs.process_blob(containers[0].get_blob_client("t.parquet"), settings)

    assert list(containers[1].list_blobs()) == []
    assert not service.get_container_client(settings.quarantine_container).exists(), "a bug is not bad input"


def test_a_missing_output_container_is_named_as_such_not_blamed_on_the_blob(
    settings: Settings, containers: tuple[ContainerClient, ContainerClient],
) -> None:
    upload(containers[0], "c.parquet", parquet_bytes(sample_table()))
    settings = settings.with_overrides(output_container="no-such-output")

    with pytest.raises(MissingContainerError) as caught:
        blobs.process_named_blob("c.parquet", settings)

    assert str(caught.value).startswith("container 'no-such-output': does not exist; create it")

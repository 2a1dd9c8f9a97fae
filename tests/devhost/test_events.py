"""The event pump turns new blobs in Azurite into Event Grid BlobCreated notifications."""

from __future__ import annotations

from collections.abc import Callable

from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.events import EventPump, Subscription, event_grid_backoff
from shared.report import SOURCE_ETAG_KEY
from tests.helpers import FlakyRig, Recorder, pump_for


def test_blobs_present_before_start_fire_nothing(service: BlobServiceClient, containers: tuple[ContainerClient, ...],
                                                 recorder: Recorder) -> None:
    containers[0].get_blob_client("old.parquet").upload_blob(b"x")
    pump = pump_for(service, containers[0], recorder.url)
    assert pump.poll_once() == 0
    assert recorder.received == []


def test_a_new_blob_is_posted_as_an_event_grid_blob_created_event(
    service: BlobServiceClient, containers: tuple[ContainerClient, ...], recorder: Recorder
) -> None:
    pump = pump_for(service, containers[0], recorder.url)
    blob = containers[0].get_blob_client("dir/new file.parquet")
    blob.upload_blob(b"12345")

    assert pump.poll_once() == 1

    [(headers, events)] = recorder.received
    assert headers["aeg-event-type"] == "Notification"
    [event] = events
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    container = containers[0].container_name
    assert event["subject"] == f"/blobServices/default/containers/{container}/blobs/dir/new file.parquet"
    assert event["data"]["url"] == blob.url
    assert event["data"]["contentLength"] == 5
    assert event["data"]["eTag"].strip("\"") == blob.get_blob_properties().etag.strip("\"")


def test_each_blob_version_fires_once(service: BlobServiceClient, containers: tuple[ContainerClient, ...],
                                      recorder: Recorder) -> None:
    pump = pump_for(service, containers[0], recorder.url)
    blob = containers[0].get_blob_client("v.parquet")
    blob.upload_blob(b"one")
    pump.poll_once()
    pump.poll_once()
    blob.upload_blob(b"two", overwrite=True)
    pump.poll_once()

    assert [events[0]["data"]["contentLength"] for _, events in recorder.received] == [3, 3]


def test_a_failed_delivery_is_retried_after_the_backoff(
    containers: tuple[ContainerClient, ...], flaky_rig: Callable[[int], FlakyRig]
) -> None:
    rig = flaky_rig(1)
    containers[0].get_blob_client("retry.parquet").upload_blob(b"x")

    rig.pump.start()
    delivered = rig.webhook.posted.wait(20)
    rig.pump.stop()

    assert delivered, "the event was never delivered"
    assert (len(rig.webhook.received), rig.webhook.refused) == (1, 1)
    assert rig.waited == [1], "one failed attempt, one backoff"


def test_a_delivery_that_keeps_failing_is_given_up_after_the_last_attempt(
    containers: tuple[ContainerClient, ...], flaky_rig: Callable[[int], FlakyRig]
) -> None:
    rig = flaky_rig(99)
    containers[0].get_blob_client("lost.parquet").upload_blob(b"x")

    assert rig.pump.poll_once() == 1  # no pool started: delivery happens here, retries included

    assert (len(rig.webhook.received), rig.webhook.refused) == (0, 3)
    assert rig.waited == [1, 2], "a backoff between attempts, none after the last"


def test_the_default_backoff_doubles_up_to_thirty_seconds() -> None:
    assert [event_grid_backoff(attempt) for attempt in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 30, 30]


def test_at_start_every_input_without_a_current_output_or_quarantine_copy_fires(
    service: BlobServiceClient, containers: tuple[ContainerClient, ...], recorder: Recorder
) -> None:
    source, output = containers[0], containers[1]
    quarantine = service.get_container_client(f"q-{source.container_name}")
    quarantine.create_container()

    def upload(name: str) -> str:
        return str(source.get_blob_client(name).upload_blob(b"x" * len(name), overwrite=True)["etag"]).strip('"')

    upload("new.parquet")  # uploaded while the host was down
    output.get_blob_client("done.parquet").upload_blob(b"out", metadata={SOURCE_ETAG_KEY: upload("done.parquet")})
    old = upload("changed.parquet")
    output.get_blob_client("changed.parquet").upload_blob(b"out", metadata={SOURCE_ETAG_KEY: old})
    upload("changed.parquet")  # a new version since its output was written
    quarantine.get_blob_client("bad.parquet").upload_blob(b"copy", metadata={SOURCE_ETAG_KEY: upload("bad.parquet")})
    pump = EventPump(service, [Subscription("f", source.container_name, recorder.url)],
                     done_in=(output.container_name, quarantine.container_name))

    assert pump.snapshot() == 2
    assert pump.poll_once() == 2

    fired = sorted(events[0]["subject"].rsplit("/", 1)[1] for _, events in recorder.received)
    assert fired == ["changed.parquet", "new.parquet"]
    quarantine.delete_container()


def test_at_start_a_missing_output_container_means_nothing_is_done_yet(
    service: BlobServiceClient, containers: tuple[ContainerClient, ...], recorder: Recorder
) -> None:
    containers[0].get_blob_client("first.parquet").upload_blob(b"x")
    pump = EventPump(service, [Subscription("f", containers[0].container_name, recorder.url)],
                     done_in=("no-such-container", "nor-this-one"))

    assert pump.snapshot() == 1

"""The event pump turns new blobs in Azurite into Event Grid BlobCreated notifications."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.events import EventPump, Subscription, event_grid_backoff


class Recorder:
    """A webhook that records what it is sent; ``fail_first`` answers 500 that many times first.

    ``posted`` is set once it has accepted an event, ``refused`` counts the 500s it answered.
    """

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], Any]] = []
        self.fail_first = fail_first
        self.refused = 0
        self.posted = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if recorder.fail_first > 0:
                    recorder.fail_first -= 1
                    recorder.refused += 1
                    self.send_response(500)
                else:
                    recorder.received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if recorder.received:
                    recorder.posted.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/runtime/webhooks/blobs?functionName=Host.Functions.f"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.server.shutdown()


def pump_for(service: BlobServiceClient, container: ContainerClient, url: str) -> EventPump:
    pump = EventPump(service, [Subscription("f", container.container_name, url)], interval=0.05)
    pump.snapshot()
    return pump


def no_wait(attempts: list[int]) -> Callable[[int], float]:
    """A backoff that records the attempts it follows and waits not at all."""

    def backoff(attempt: int) -> float:
        attempts.append(attempt)
        return 0.0

    return backoff


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
    service: BlobServiceClient, containers: tuple[ContainerClient, ...]
) -> None:
    flaky = Recorder(fail_first=1)
    waited: list[int] = []
    try:
        pump = pump_for(service, containers[0], flaky.url)
        pump.attempts = 3
        pump.backoff = no_wait(waited)
        containers[0].get_blob_client("retry.parquet").upload_blob(b"x")
        pump.start()
        assert flaky.posted.wait(20), "the event was never delivered"
        pump.stop()
        assert len(flaky.received) == 1
        assert flaky.refused == 1
        assert waited == [1], "one failed attempt, one backoff"
    finally:
        flaky.server.shutdown()


def test_a_delivery_that_keeps_failing_is_given_up_after_the_last_attempt(
    service: BlobServiceClient, containers: tuple[ContainerClient, ...]
) -> None:
    failing = Recorder(fail_first=99)
    waited: list[int] = []
    try:
        pump = pump_for(service, containers[0], failing.url)
        pump.attempts = 3
        pump.backoff = no_wait(waited)
        containers[0].get_blob_client("lost.parquet").upload_blob(b"x")

        assert pump.poll_once() == 1  # no pool started: delivery happens here, retries included

        assert failing.refused == 3
        assert failing.received == []
        assert waited == [1, 2], "a backoff between attempts, none after the last"
    finally:
        failing.server.shutdown()


def test_the_default_backoff_doubles_up_to_thirty_seconds() -> None:
    assert [event_grid_backoff(attempt) for attempt in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 30, 30]

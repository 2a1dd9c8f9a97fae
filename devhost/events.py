"""Event Grid for a laptop: notice new blobs in Azurite and post ``BlobCreated`` events.

Azurite emits no Event Grid events, so a blob trigger on the Event Grid source
never fires locally, under ``func start`` or the local host alike. The pump
lists the watched container, and for every blob that is new or has a new ETag
since it last looked, posts the event the storage account would have sent to
the host's blob webhook, retrying a failed delivery a few times as Event Grid
does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient

from shared.report import records_version

log = logging.getLogger("devhost.events")


@dataclass
class Subscription:
    """One blob-trigger function: its container and its webhook URL."""

    function: str
    container: str
    webhook: str


def blob_created_event(
    client: ContainerClient, name: str, etag: str, size: int, content_type: str
) -> dict[str, object]:
    """The Event Grid (schema 1.0) notification a storage account sends after a Put Blob."""
    blob = client.get_blob_client(name)
    return {
        "id": str(uuid.uuid4()),
        "topic": f"/subscriptions/local/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/"
                 f"{client.account_name}",
        "subject": f"/blobServices/default/containers/{client.container_name}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": datetime.now(UTC).isoformat(),
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {
            "api": "PutBlob",
            "eTag": etag,
            "contentType": content_type,
            "contentLength": size,
            "blobType": "BlockBlob",
            "url": blob.url,
            "sequencer": f"{time.time_ns():032x}",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
    }


def event_grid_backoff(attempt: int) -> float:
    """Seconds to wait after failed delivery ``attempt`` (1, 2, ...): doubling, at most 30."""
    return min(2.0**attempt, 30.0)


@dataclass
class EventPump:
    """Polls containers and delivers one event per new blob version to each subscriber.

    ``backoff`` says how long to wait after a failed delivery attempt; tests pass one that does not wait.
    ``done_in`` names the containers whose blobs record (``recompress_source_etag``, see
    :func:`shared.report.records_version`) the input version they were made from, under the input's own
    name: the app's output and quarantine containers. :meth:`snapshot` uses them to tell what is done.
    """

    service: BlobServiceClient
    subscriptions: list[Subscription]
    interval: float = 0.5
    attempts: int = 4
    parallel: int = 4
    backoff: Callable[[int], float] = event_grid_backoff
    seen: dict[tuple[str, str], str] = field(default_factory=dict)
    done_in: tuple[str, ...] = ()
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _pool: ThreadPoolExecutor | None = None

    def snapshot(self) -> int:
        """Remember what exists now, so that only what is new or not yet processed fires.

        Without ``done_in`` every existing blob counts as seen. With it, a blob counts as seen only when
        one of those containers holds a blob of its name recording its current ETag; every other blob
        (uploaded while the host was down, or changed since its output was written) fires on the next
        poll, as the storage account's event would have. Returns how many will.
        """
        recorded = self._recorded()
        pending = 0
        for container in {s.container for s in self.subscriptions}:
            for blob in self.service.get_container_client(container).list_blobs():
                etag = str(blob.etag)
                if self.done_in and not any(records_version(r, etag) for r in recorded.get(blob.name, ())):
                    pending += 1
                    continue
                self.seen[(container, blob.name)] = etag
        return pending

    def _recorded(self) -> dict[str, list[BlobProperties]]:
        """The blobs of the ``done_in`` containers, with their metadata, by name."""
        found: dict[str, list[BlobProperties]] = {}
        for container in self.done_in:
            try:
                for blob in self.service.get_container_client(container).list_blobs(include=["metadata"]):
                    found.setdefault(blob.name, []).append(blob)
            except ResourceNotFoundError:  # no output or quarantine yet: nothing is done there
                continue
        return found

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="deliver")
        self._thread = threading.Thread(target=self._loop, name="event-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def poll_once(self) -> int:
        """Deliver events for everything new; returns how many blobs were new."""
        fresh = 0
        for container in {s.container for s in self.subscriptions}:
            client = self.service.get_container_client(container)
            for blob in client.list_blobs():
                key, etag = (container, blob.name), str(blob.etag)
                if self.seen.get(key) == etag:
                    continue
                self.seen[key] = etag
                fresh += 1
                content_type = blob.content_settings.content_type or "application/octet-stream"
                event = blob_created_event(client, blob.name, etag, int(blob.size), content_type)
                for sub in self.subscriptions:
                    if sub.container == container:
                        if self._pool is None:
                            self._deliver(sub, event)
                        else:  # events are independent: deliver several at once, as Event Grid does
                            self._pool.submit(self._deliver, sub, event)
        return fresh

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # storage restarting, say: keep pumping
                log.warning("event pump: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            self._stop.wait(self.interval)

    def _deliver(self, sub: Subscription, event: dict[str, object]) -> None:
        body = json.dumps([event]).encode()
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(
                sub.webhook, data=body, method="POST",
                headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
            )
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    if response.status < 300:
                        return
            except urllib.error.HTTPError as exc:
                log.warning("%s: delivery %d of %d failed with HTTP %d", sub.function, attempt, self.attempts,
                            exc.code)
            except OSError as exc:
                log.warning("%s: delivery %d of %d failed: %s", sub.function, attempt, self.attempts, exc)
            if attempt < self.attempts and self._stop.wait(self.backoff(attempt)):
                return
        log.error("%s: gave up delivering %s", sub.function, event["subject"])

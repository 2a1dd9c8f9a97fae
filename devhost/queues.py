"""Queue triggers for a laptop: poll Storage queues and call the app's functions the way the host does.

The Functions host's queue listener receives a batch of messages, keeps each invisible while its
function runs (renewing the lease), deletes it on success, makes it visible again after
``visibilityTimeout`` on failure, and moves it to ``<queue>-poison`` once it has been dequeued
``maxDequeueCount`` times. It fetches a new batch when no more than ``newBatchThreshold`` messages are
still running, and backs off up to ``maxPollingInterval`` while the queue is empty. This runner does the
same, reading those knobs from the project's ``host.json``, so a backfill behaves locally as on Azure.

A message whose worker dies (the process is killed) is never deleted: it reappears once its lease ends,
with its dequeue count raised, as it would on Azure.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions.queue as func_queue
from azure.core.exceptions import ResourceExistsError

from devhost.host import QueueFunction, storage_for

log = logging.getLogger("devhost.queues")

POISON_SUFFIX = "-poison"
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


def timespan_seconds(text: str) -> float:
    """host.json's ``[d.]hh:mm:ss[.fff]`` as seconds."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise ValueError(f"not a host.json time span: {text!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    """host.json's ``extensions.queues``, with the host's own defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5

    @classmethod
    def from_host_json(cls, path: Path) -> QueueOptions:
        queues: dict[str, Any] = json.loads(path.read_text()).get("extensions", {}).get("queues", {})
        batch = int(queues.get("batchSize", cls.batch_size))
        return cls(
            batch_size=batch,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch // 2)),
            max_polling_interval=timespan_seconds(queues.get("maxPollingInterval", "00:01:00")),
            visibility_timeout=timespan_seconds(queues.get("visibilityTimeout", "00:00:00")),
            max_dequeue_count=int(queues.get("maxDequeueCount", cls.max_dequeue_count)),
        )


class QueueRunner:
    """Runs every queue-triggered function of an app against real queues, until :meth:`stop`.

    ``lease_seconds`` is how long a received message stays invisible before it is renewed (or, if
    this process died, reappears); the host uses ten minutes, tests a few seconds.
    """

    def __init__(self, functions: list[QueueFunction], options: QueueOptions, *, lease_seconds: float = 30.0,
                 min_poll: float = 0.1) -> None:
        self.functions = functions
        self.options = options
        self.lease_seconds = lease_seconds
        self.min_poll = min_poll
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for function in self.functions:
            thread = threading.Thread(target=self._poll, args=(function,), name=f"queue-{function.name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop fetching, and let messages already running finish (a message cut short just reappears)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    # ------------------------------------------------------------------ one function's listener

    def _poll(self, function: QueueFunction) -> None:
        storage = storage_for(function.connection)
        queue = storage.queue(function.queue, raw=True)  # decoded one by one in _run, as the host does
        poison = storage.queue(function.queue + POISON_SUFFIX, raw=True)
        running = _Running()
        idle = self.min_poll
        with ThreadPoolExecutor(self.options.batch_size + self.options.new_batch_threshold,
                                thread_name_prefix=f"run-{function.name}") as pool:
            while not self._stop.is_set():
                try:
                    batch = self._receive(queue)
                except Exception as exc:  # storage down: keep polling, as the host does
                    log.warning("%s: receiving from %s failed: %s", function.name, function.queue, exc)
                    batch = []
                if not batch:
                    self._stop.wait(idle)
                    idle = min(idle * 2, self.options.max_polling_interval)
                    continue
                idle = self.min_poll
                for message in batch:
                    running.add()
                    pool.submit(self._run, function, queue, poison, message, running.done)
                running.wait_until_at_most(self.options.new_batch_threshold, self._stop)

    def _receive(self, queue: Any) -> list[Any]:
        return list(queue.receive_messages(messages_per_page=self.options.batch_size,
                                           max_messages=self.options.batch_size,
                                           visibility_timeout=max(1, int(self.lease_seconds))))

    def _run(self, function: QueueFunction, queue: Any, poison: Any, message: Any, done: Callable[[], None]) -> None:
        lease = _Lease(queue, message, self.lease_seconds)
        try:
            if message.dequeue_count > self.options.max_dequeue_count:  # its worker died every time
                self._to_poison(function, queue, poison, lease)
                return
            try:
                body = base64.b64decode(str(message.content), validate=True)
            except ValueError:  # host.json says base64; no delivery would make this readable
                log.error("%s: message %s is not base64 (messageEncoding in host.json)", function.name, message.id)
                self._to_poison(function, queue, poison, lease)
                return
            lease.start()
            try:
                function.call(**{function.arg_name: _as_trigger_message(message, body)})
            except Exception:
                log.exception("%s failed on message %s (delivery %d)", function.name, message.id,
                              message.dequeue_count)
                lease.stop()
                if message.dequeue_count >= self.options.max_dequeue_count:
                    self._to_poison(function, queue, poison, lease)
                else:
                    lease.release_after(self.options.visibility_timeout)
                return
            lease.stop()
            lease.delete()
        except Exception as exc:  # the queue itself failed us: the message reappears when its lease ends
            log.warning("%s: message %s left to reappear: %s", function.name, message.id, exc)
        finally:
            done()

    def _to_poison(self, function: QueueFunction, queue: Any, poison: Any, lease: _Lease) -> None:
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue()
        poison.send_message(lease.message.content)
        lease.delete()
        log.error("%s: message %s moved to %s after %d deliveries", function.name, lease.message.id,
                  function.queue + POISON_SUFFIX, lease.message.dequeue_count)


class _Running:
    """How many messages of one function are running; the listener fetches again when few are."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def add(self) -> None:
        with self._changed:
            self._count += 1

    def done(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def wait_until_at_most(self, count: int, stop: threading.Event) -> None:
        with self._changed:
            while self._count > count and not stop.is_set():
                self._changed.wait(0.5)  # woken by done(); the timeout only notices stop()


class _Lease:
    """Keeps one received message invisible while it runs, renewing before the lease runs out."""

    def __init__(self, queue: Any, message: Any, seconds: float) -> None:
        self.queue = queue
        self.message = message
        self.seconds = max(1, int(seconds))
        self._receipt = message.pop_receipt
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"lease-{self.message.id}")
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def delete(self) -> None:
        with self._lock:
            self.queue.delete_message(self.message.id, self._receipt)

    def release_after(self, seconds: float) -> None:
        """Let the message reappear after ``seconds`` (host.json's visibilityTimeout) for its next delivery."""
        with self._lock:
            self.queue.update_message(self.message.id, self._receipt, visibility_timeout=int(seconds))

    def _renew(self) -> None:
        while not self._done.wait(self.seconds / 2):
            try:
                with self._lock:
                    renewed = self.queue.update_message(self.message.id, self._receipt,
                                                        visibility_timeout=self.seconds)
                    self._receipt = renewed.pop_receipt
            except Exception as exc:  # a lost lease only means a second delivery, which the app tolerates
                log.warning("renewing the lease of message %s failed: %s", self.message.id, exc)


def _as_trigger_message(message: Any, body: bytes) -> func_queue.QueueMessage:
    """The ``func.QueueMessage`` the Python worker hands a queue-triggered function."""
    return func_queue.QueueMessage(  # type: ignore[no-untyped-call]
        id=message.id, body=body, dequeue_count=message.dequeue_count,
        expiration_time=message.expires_on, insertion_time=message.inserted_on,
        time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt,
    )

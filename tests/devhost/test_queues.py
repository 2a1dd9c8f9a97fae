"""The local host's queue triggers against Azurite's queue service: delivery, retries and the poison queue
behave as host.json says they do under the Functions host."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import Azurite
from devhost.host import QueueFunction, storage_for
from devhost.queues import QueueOptions, QueueRunner, timespan_seconds
from tests.helpers import ROOT, wait_for

CONNECTION = "TestQueues"


@pytest.fixture
def queue_name(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(CONNECTION, azurite.connection_string)
    name = f"q-{uuid.uuid4().hex[:12]}"
    storage_for(CONNECTION).queue(name).create_queue()
    return name


@pytest.fixture
def run_queue(queue_name: str) -> Iterator[Callable[[Callable[[Any], None], QueueOptions], QueueRunner]]:
    started: list[QueueRunner] = []

    def run(handler: Callable[[Any], None], options: QueueOptions) -> QueueRunner:
        function = QueueFunction("under_test", queue_name, CONNECTION, handler, "message")
        runner = QueueRunner([function], options, lease_seconds=5, min_poll=0.05)
        runner.start()
        started.append(runner)
        return runner

    yield run
    for runner in started:
        runner.stop()


QUICK = QueueOptions(batch_size=4, new_batch_threshold=2, max_polling_interval=0.2, visibility_timeout=0,
                     max_dequeue_count=3)


def _send(queue: str, *texts: str) -> None:
    client = storage_for(CONNECTION).queue(queue)
    for text in texts:
        client.send_message(text)


def _visible(queue: str) -> list[str]:
    return [m.content for m in storage_for(CONNECTION).queue(queue).peek_messages(max_messages=32)]


def test_each_message_reaches_the_function_once_and_is_deleted(queue_name: str, run_queue: Any) -> None:
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def handler(message: Any) -> None:
        with lock:
            seen.append((message.get_body().decode(), message.dequeue_count))

    run_queue(handler, QUICK)
    _send(queue_name, *[json.dumps({"n": i}) for i in range(10)])

    wait_for(lambda: True if len(seen) == 10 else None, "ten deliveries")
    wait_for(lambda: True if not _visible(queue_name) else None, "the queue to be empty")
    assert sorted(seen) == sorted((json.dumps({"n": i}), 1) for i in range(10))


def test_a_failing_message_is_retried_then_moved_to_the_poison_queue(queue_name: str, run_queue: Any) -> None:
    deliveries: list[int] = []

    def handler(message: Any) -> None:
        deliveries.append(message.dequeue_count)
        raise RuntimeError("always fails")

    run_queue(handler, QUICK)
    _send(queue_name, "doomed")

    poison = f"{queue_name}-poison"
    wait_for(lambda: True if _queue_exists(poison) and _visible(poison) == ["doomed"] else None,
             "the message in the poison queue")
    assert deliveries == [1, 2, 3], "maxDequeueCount deliveries, then poison"
    assert _visible(queue_name) == []


def test_a_message_whose_workers_kept_dying_goes_to_poison_uncalled(queue_name: str, run_queue: Any) -> None:
    client = storage_for(CONNECTION).queue(queue_name)
    client.send_message("crashes its worker")
    for _ in range(QUICK.max_dequeue_count):  # each receive without a delete is a worker that died mid-message
        [message] = list(client.receive_messages(max_messages=1, visibility_timeout=1))
        client.update_message(message, visibility_timeout=0)
    called: list[Any] = []

    run_queue(called.append, QUICK)

    poison = f"{queue_name}-poison"
    wait_for(lambda: True if _queue_exists(poison) and _visible(poison) else None, "the poison queue")
    assert called == []


def test_a_message_that_is_not_base64_goes_to_poison_and_its_batch_runs(queue_name: str, run_queue: Any) -> None:
    storage_for(CONNECTION).queue(queue_name, raw=True).send_message('{"not": "base64"}')
    _send(queue_name, "one", "two", "three")
    seen: list[str] = []
    lock = threading.Lock()

    def handler(message: Any) -> None:
        with lock:
            seen.append(message.get_body().decode())

    run_queue(handler, QUICK)

    poison = f"{queue_name}-poison"
    wait_for(lambda: True if sorted(seen) == ["one", "three", "two"] else None, "the three good messages")
    wait_for(lambda: True if _queue_exists(poison) and _raw_visible(poison) == ['{"not": "base64"}'] else None,
             "the bad message in the poison queue")


def _raw_visible(queue: str) -> list[str]:
    return [m.content for m in storage_for(CONNECTION).queue(queue, raw=True).peek_messages(max_messages=32)]


def _queue_exists(name: str) -> bool:
    try:
        storage_for(CONNECTION).queue(name).get_queue_properties()
    except Exception:
        return False
    return True


def test_the_options_come_from_the_projects_host_json() -> None:
    options = QueueOptions.from_host_json(ROOT / "host.json")
    declared = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]

    assert options.batch_size == declared["batchSize"]
    assert options.max_dequeue_count == declared["maxDequeueCount"]
    assert options.visibility_timeout == timespan_seconds(declared["visibilityTimeout"])


def test_host_defaults_apply_to_what_host_json_leaves_out(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text('{"version": "2.0", "extensions": {"queues": {"batchSize": 8}}}')

    options = QueueOptions.from_host_json(tmp_path / "host.json")

    assert (options.batch_size, options.new_batch_threshold, options.max_dequeue_count) == (8, 4, 5)
    assert (options.max_polling_interval, options.visibility_timeout) == (60.0, 0.0)


@pytest.mark.parametrize(("text", "seconds"), [("00:00:10", 10), ("00:01:00", 60), ("1.02:00:00", 93600),
                                               ("00:00:00.5", 0.5)])
def test_time_spans_read_as_the_host_reads_them(text: str, seconds: float) -> None:
    assert timespan_seconds(text) == seconds


def test_a_malformed_time_span_is_named() -> None:
    with pytest.raises(ValueError, match=r"not a host\.json time span: '10s'"):
        timespan_seconds("10s")

"""Backfill jobs against Azurite's real blobs, queues and tables, with the queue handlers called in-process
(the way the host would call them); the local host and worker processes are tested in tests/test_backfill.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from shared import backfill, blobs
from shared.backfill import BlobMessage, PageMessage
from shared.errors import InputError, MissingContainerError
from shared.jobs import JobStatus
from shared.report import records_version
from shared.settings import Settings
from shared.storage import context
from tests.helpers import assert_same_data, parquet_bytes, sample_table


def _queued(settings: Settings, queue: str) -> list[Any]:
    """Every message now visible on ``queue``, received and deleted (the test then plays the host)."""
    client = context(settings).queue(queue)
    taken = []
    while batch := list(client.receive_messages(max_messages=32, messages_per_page=32)):
        for message in batch:
            client.delete_message(message)
            taken.append(message)
    return taken


def _drain(settings: Settings) -> int:
    """Deliver every listing and blob message until both queues are empty; how many were handled."""
    handled = 0
    while True:
        messages = _queued(settings, settings.backfill_list_queue) + _queued(settings, settings.backfill_blob_queue)
        if not messages:
            return handled
        for message in messages:
            backfill.handle(message.content, settings)
            handled += 1


def _upload(container: ContainerClient, names: list[str], data: bytes | None = None) -> None:
    body = parquet_bytes(sample_table(50)) if data is None else data
    for name in names:
        container.upload_blob(name, body, overwrite=True)


def _counts(status: JobStatus) -> tuple[Any, ...]:
    return status.state, status.total, status.written, status.skipped, status.superseded, status.quarantined, \
        status.failed


@pytest.fixture
def inputs(containers: tuple[ContainerClient, ContainerClient]) -> ContainerClient:
    return containers[0]


@pytest.fixture
def outputs(containers: tuple[ContainerClient, ContainerClient]) -> ContainerClient:
    return containers[1]


def test_a_job_writes_what_is_missing_and_skips_what_is_current(backfill_settings: Settings, inputs: ContainerClient,
                                                                outputs: ContainerClient) -> None:
    settings = Settings.from_env({**_env(backfill_settings), "RECOMPRESS_BACKFILL_PAGE_SIZE": "3"})
    _upload(inputs, [f"day/{i}.parquet" for i in range(7)] + ["other/x.parquet"])
    job = backfill.start(settings, "day/")
    _drain(settings)  # a first job writes all seven
    for i in range(3):
        outputs.delete_blob(f"day/{i}.parquet")

    second = backfill.start(settings, "day/")
    handled = _drain(settings)

    status = backfill.status(settings, second)
    assert _counts(status) == ("done", 7, 3, 4, 0, 0, 0)
    assert (status.pages, handled) == (3, 3 + 7), "three listing pages, one message per blob"
    assert backfill.status(settings, job).written == 7
    assert not outputs.get_blob_client("other/x.parquet").exists(), "outside the prefix"
    for i in range(7):
        assert_same_data(inputs.download_blob(f"day/{i}.parquet").readall(),
                         outputs.download_blob(f"day/{i}.parquet").readall())


def test_a_dry_run_counts_the_same_split_and_writes_nothing(backfill_settings: Settings, inputs: ContainerClient,
                                                            outputs: ContainerClient) -> None:
    _upload(inputs, [f"d/{i}.parquet" for i in range(4)])
    _upload(inputs, ["d/bad.parquet"], b"not parquet at all")
    backfill.start(backfill_settings, "d/")
    _drain(backfill_settings)
    outputs.delete_blob("d/0.parquet")
    before = sorted(b.name for b in outputs.list_blobs())

    job = backfill.start(backfill_settings, "d/", dry_run=True)
    _drain(backfill_settings)

    status = backfill.status(backfill_settings, job)
    assert _counts(status) == ("done", 5, 1, 3, 0, 1, 0)
    assert status.dry_run
    assert status.bytes_in == inputs.get_blob_client("d/0.parquet").get_blob_properties().size
    assert sorted(b.name for b in outputs.list_blobs()) == before, "a dry run writes nothing"


def test_a_blob_message_delivered_twice_is_processed_and_counted_once(backfill_settings: Settings,
                                                                      inputs: ContainerClient,
                                                                      outputs: ContainerClient) -> None:
    _upload(inputs, ["twice.parquet"])
    job = backfill.start(backfill_settings, "twice")
    listing = _queued(backfill_settings, backfill_settings.backfill_list_queue)
    backfill.handle(listing[0].content, backfill_settings)
    [message] = _queued(backfill_settings, backfill_settings.backfill_blob_queue)

    backfill.handle(message.content, backfill_settings)
    etag = outputs.get_blob_client("twice.parquet").get_blob_properties().etag
    backfill.handle(message.content, backfill_settings)

    assert _counts(backfill.status(backfill_settings, job)) == ("done", 1, 1, 0, 0, 0, 0)
    assert outputs.get_blob_client("twice.parquet").get_blob_properties().etag == etag, "written once"


def test_a_page_listed_again_queues_only_what_it_counted_and_counts_the_vanished(
        backfill_settings: Settings, inputs: ContainerClient) -> None:
    _upload(inputs, ["v/a.parquet", "v/b.parquet"])
    job = backfill.start(backfill_settings, "v/")
    [page] = _queued(backfill_settings, backfill_settings.backfill_list_queue)
    backfill.handle(page.content, backfill_settings)
    first_round = _queued(backfill_settings, backfill_settings.backfill_blob_queue)
    # The worker "died" before marking the page done; meanwhile one blob went and one came.
    table = context(backfill_settings).table(backfill_settings.backfill_table)
    table.update_entity({"PartitionKey": job, "RowKey": "page-000000000", "next_sent": False})
    inputs.delete_blob("v/b.parquet")
    _upload(inputs, ["v/c.parquet"])

    backfill.handle(page.content, backfill_settings)
    second_round = _queued(backfill_settings, backfill_settings.backfill_blob_queue)
    for message in first_round + second_round:
        backfill.handle(message.content, backfill_settings)

    assert [json.loads(m.content)["name"] for m in second_round] == ["v/a.parquet"]
    status = backfill.status(backfill_settings, job)
    assert _counts(status) == ("done", 2, 1, 1, 0, 0, 0), "v/b counted once, as skipped; v/c is the trigger's"


def test_a_poisoned_blob_counts_as_failed_with_its_last_error(backfill_settings: Settings,
                                                              inputs: ContainerClient) -> None:
    _upload(inputs, ["p/a.parquet"])
    job = backfill.start(backfill_settings, "p/")
    [page] = _queued(backfill_settings, backfill_settings.backfill_list_queue)
    backfill.handle(page.content, backfill_settings)
    [message] = _queued(backfill_settings, backfill_settings.backfill_blob_queue)
    broken = Settings.from_env({**_env(backfill_settings), "RECOMPRESS_TRANSFORM": "no_such_module:f"})
    for _ in range(2):
        with pytest.raises(Exception, match="no_such_module"):
            backfill.handle(message.content, broken)
    assert backfill.status(backfill_settings, job).state == "running"

    backfill.handle_poison(message.content, backfill_settings)
    backfill.handle_poison(message.content, backfill_settings)

    status = backfill.status(backfill_settings, job)
    assert _counts(status) == ("done", 1, 0, 0, 0, 0, 1)
    [row] = backfill.jobs_for(backfill_settings).outcomes(job)
    assert "no_such_module" in row["error"]


def test_a_poisoned_listing_fails_the_job(backfill_settings: Settings) -> None:
    job = backfill.start(backfill_settings, "")
    [page] = _queued(backfill_settings, backfill_settings.backfill_list_queue)

    backfill.handle_poison(page.content, backfill_settings)

    status = backfill.status(backfill_settings, job)
    assert status.state == "failed"
    assert "listing page 0" in (status.error or "")


def test_a_blob_already_quarantined_for_this_version_is_not_processed_again(
        backfill_settings: Settings, inputs: ContainerClient) -> None:
    _upload(inputs, ["q/bad.parquet"], b"PAR1 but not really")
    first = backfill.start(backfill_settings, "q/")
    _drain(backfill_settings)
    quarantine = context(backfill_settings).blob(backfill_settings.quarantine_container, "q/bad.parquet")
    etag = quarantine.get_blob_properties().etag

    second = backfill.start(backfill_settings, "q/")
    _drain(backfill_settings)

    for job in (first, second):
        assert _counts(backfill.status(backfill_settings, job)) == ("done", 1, 0, 0, 0, 1, 0)
    assert quarantine.get_blob_properties().etag == etag, "the quarantine copy was not made again"


def test_the_cli_twin_keeps_the_same_record(backfill_settings: Settings, inputs: ContainerClient,
                                            outputs: ContainerClient) -> None:
    _upload(inputs, [f"c/{i}.parquet" for i in range(5)])
    _upload(inputs, ["c/bad.parquet"], b"nope")
    seen: list[int] = []

    status = backfill.run_here(backfill_settings, "c/", workers=3, on_progress=lambda t: seen.append(t.done))

    assert _counts(status) == ("done", 6, 5, 0, 0, 1, 0)
    assert backfill.status(backfill_settings, status.id) == status
    assert sorted(seen) == list(range(1, 7))
    assert all(records_version(outputs.get_blob_client(f"c/{i}.parquet").get_blob_properties(),
                               inputs.get_blob_client(f"c/{i}.parquet").get_blob_properties().etag)
               for i in range(5))


def test_an_empty_prefix_match_is_done_with_nothing_found(backfill_settings: Settings) -> None:
    job = backfill.start(backfill_settings, "nothing-here/")
    _drain(backfill_settings)

    assert _counts(backfill.status(backfill_settings, job)) == ("done", 0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("prefix", ["../up", "a/./b", "https://elsewhere/x", "bad\x00name"])
def test_a_bad_prefix_is_refused_before_anything_is_recorded(backfill_settings: Settings, prefix: str) -> None:
    with pytest.raises(InputError, match="blob name"):
        backfill.start(backfill_settings, prefix)

    assert backfill.recent(backfill_settings) == []


def test_a_missing_queue_names_the_queue_and_the_setting(backfill_settings: Settings) -> None:
    settings = Settings.from_env({**_env(backfill_settings), "RECOMPRESS_BACKFILL_LIST_QUEUE": "no-such-queue"})

    with pytest.raises(MissingContainerError, match=r"queue .no-such-queue.: does not exist.*RECOMPRESS_BACKFILL"):
        backfill.start(settings, "")


@pytest.mark.parametrize("text", ["", "{}", "[1]", '{"kind": "page"}', '{"kind": "other", "job": "j"}', "\x00"])
def test_a_message_that_is_not_ours_is_dropped_in_one_line(backfill_settings: Settings, text: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    backfill.handle(text, backfill_settings)

    assert "dropped a message that is not ours" in caplog.text


def test_messages_read_back_as_written() -> None:
    job = "20261126T140003Z-b822b5"
    page, blob = PageMessage(job, 3, "tok"), BlobMessage(job, "a/b.parquet", dry_run=True)

    assert backfill.parse_message(page.text()) == page
    assert backfill.parse_message(blob.text()) == blob


def _env(settings: Settings) -> dict[str, str]:
    """The environment that made ``settings`` (connection and the per-test names)."""
    return {
        "ParquetStorage": settings.connection.connection_string or "",
        "RECOMPRESS_INPUT_CONTAINER": settings.input_container,
        "RECOMPRESS_OUTPUT_CONTAINER": settings.output_container,
        "RECOMPRESS_QUARANTINE_CONTAINER": settings.quarantine_container,
        "RECOMPRESS_BACKFILL_LIST_QUEUE": settings.backfill_list_queue,
        "RECOMPRESS_BACKFILL_BLOB_QUEUE": settings.backfill_blob_queue,
        "RECOMPRESS_BACKFILL_TABLE": settings.backfill_table,
    }


def test_a_page_listed_again_after_uploads_into_its_range_still_reaches_every_blob_it_counted(
        backfill_settings: Settings, inputs: ContainerClient, outputs: ContainerClient) -> None:
    settings = Settings.from_env({**_env(backfill_settings), "RECOMPRESS_BACKFILL_PAGE_SIZE": "3"})
    _upload(inputs, ["a", "c", "e", "g"])
    job = backfill.start(settings, "")
    [page] = _queued(settings, settings.backfill_list_queue)
    names, token = backfill.list_page(settings, "", None)  # a first delivery lists and counts [a, c, e] ...
    backfill.jobs_for(settings).commit_page(job, 0, names, token)  # ... and dies before queueing them
    _upload(inputs, ["b"])  # an upload into the page's range pushes "e" off the same token's next listing

    backfill.handle(page.content, settings)
    _drain(settings)

    status = backfill.status(settings, job)
    assert _counts(status) == ("done", 4, 4, 0, 0, 0, 0)
    assert {"a", "c", "e", "g"} <= {b.name for b in outputs.list_blobs()}


def test_a_blob_published_by_a_delivery_that_died_before_counting_counts_as_written(
        backfill_settings: Settings, inputs: ContainerClient) -> None:
    _upload(inputs, ["died/a.parquet"])
    job = backfill.start(backfill_settings, "died/")
    [page] = _queued(backfill_settings, backfill_settings.backfill_list_queue)
    backfill.handle(page.content, backfill_settings)
    [message] = _queued(backfill_settings, backfill_settings.backfill_blob_queue)
    source = context(backfill_settings).blob(backfill_settings.input_container, "died/a.parquet")
    first = blobs.process_blob(source, backfill_settings, metadata={backfill.JOB_KEY: job})  # then it died

    backfill.handle(message.content, backfill_settings)  # the redelivery

    status = backfill.status(backfill_settings, job)
    assert _counts(status) == ("done", 1, 1, 0, 0, 0, 0)
    assert (status.bytes_in, status.bytes_out) == (first.bytes_in, first.bytes_out)


def test_a_cli_run_that_stops_marks_its_job_failed(backfill_settings: Settings, inputs: ContainerClient) -> None:
    _upload(inputs, ["stop/a.parquet", "stop/b.parquet"])

    def interrupt(_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill.run_here(backfill_settings, "stop/", workers=1, on_progress=interrupt)

    [job] = backfill.recent(backfill_settings)
    assert job.state == "failed"
    assert "the command-line run stopped" in (job.error or "")


def test_a_message_for_no_job_this_app_made_is_dropped(backfill_settings: Settings, inputs: ContainerClient,
                                                       outputs: ContainerClient,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    _upload(inputs, ["x.parquet"])

    backfill.handle(BlobMessage("x' or PartitionKey ne '", "x.parquet").text(), backfill_settings)

    assert "names no job this app made" in caplog.text
    assert list(outputs.list_blobs()) == []

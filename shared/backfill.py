"""Backfill: recompress what already sits in the input container, fanned out over Storage queues.

Blob events only fire for new uploads. A job (``POST /api/backfill`` or ``python -m shared backfill``)
works through everything under a prefix:

1. :func:`start` records the job (:mod:`shared.jobs`) and queues its first listing message.
2. Each listing message lists one page of blobs, counts it into the job once, queues one message per
   blob and then the next page's message. No invocation lists more than a page, so ten million blobs
   never need one long run, and a worker dying mid-listing leaves a message that resumes the page.
3. Each blob message runs the trigger's own protocol (:func:`shared.blobs.process_blob`: idempotent,
   quarantine, proof) and records the outcome once, however often the message is delivered.
4. Messages that keep failing reach the host's poison queues (``<queue>-poison``); their handlers
   count the blob as failed with its last error, or mark the listing as failed.

A dry run walks the same path but only reads: each blob counts as what a real run would do with it.
The CLI twin (:func:`run_here`) does the same work in one process, without queues, with the same record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

from shared import blobs, telemetry
from shared.errors import InputError, MissingContainerError, NotFoundError, RecompressError
from shared.jobs import Jobs, JobStatus, Outcome, Page, name_key, valid_job_id
from shared.quarantine import ERROR_KEY
from shared.report import Report, records_version
from shared.settings import Settings
from shared.storage import StorageContext, context

log = logging.getLogger("shared.backfill")

#: Senders per listing page: a page of 1,000 blob messages goes out in about a tenth of the time.
_SEND_THREADS = 8
#: Output metadata naming the backfill job that wrote it: a worker that died after publishing but before
#: counting leaves an output its redelivered message recognises as this job's own work.
JOB_KEY = "recompress_backfill_job"
#: Outcomes of a report's status: a blob gone before its turn counts as skipped (nothing to do).
_STATUS_OUTCOME = {"written": "written", "skipped": "skipped", "gone": "skipped", "superseded": "superseded",
                   "quarantined": "quarantined", "unprocessable": "failed"}


@dataclass(frozen=True)
class PageMessage:
    """List page ``page`` of job ``job`` from ``token`` (None: the first page)."""

    job: str
    page: int
    token: str | None = None
    #: The trace context of whoever queued it (``traceparent``), so a job's work is one trace.
    trace: dict[str, str] = field(default_factory=dict, compare=False)

    def text(self) -> str:
        return json.dumps({"kind": "page", "job": self.job, "page": self.page, "token": self.token,
                           "trace": self.trace})


@dataclass(frozen=True)
class BlobMessage:
    """Process (or, in a dry run, assess) one input blob for job ``job``."""

    job: str
    name: str
    dry_run: bool = False
    trace: dict[str, str] = field(default_factory=dict, compare=False)

    def text(self) -> str:
        return json.dumps({"kind": "blob", "job": self.job, "name": self.name, "dry_run": self.dry_run,
                           "trace": self.trace})


def parse_message(text: str) -> PageMessage | BlobMessage:
    """Read a queue message; anything else is an InputError naming what is wrong (it then goes to poison)."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        trace = {str(k): str(v) for k, v in dict(data.get("trace") or {}).items()}
        if data["kind"] == "page":
            token = data.get("token")
            return _checked(PageMessage(str(data["job"]), int(data["page"]), None if token is None else str(token),
                                        trace))
        if data["kind"] == "blob":
            return _checked(BlobMessage(str(data["job"]), str(data["name"]), bool(data.get("dry_run", False)),
                                        trace))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError("backfill message", f"is not one this app writes ({type(exc).__name__}: {exc})") from exc
    raise InputError("backfill message", f"has an unknown kind {data.get('kind')!r}")


def _checked(message: PageMessage | BlobMessage) -> PageMessage | BlobMessage:
    if not valid_job_id(message.job):
        raise InputError("backfill message", f"names no job this app made ({message.job!r})")
    return message


def check_prefix(prefix: str) -> str:
    """A prefix is checked like a blob name, except that it may be empty (the whole container)."""
    return blobs.check_blob_name(prefix) if prefix else ""


# --------------------------------------------------------------------------- starting and reading jobs


def jobs_for(settings: Settings) -> Jobs:
    return Jobs(context(settings), settings.backfill_table, retries=settings.retry_total,
                backoff=settings.retry_backoff)


def start(settings: Settings, prefix: str, *, dry_run: bool = False) -> str:
    """Record a job and queue its first listing page; returns the job id at once, before any listing."""
    prefix = check_prefix(prefix)
    jobs = jobs_for(settings)
    job_id = jobs.create(prefix, dry_run, settings.input_container, settings.output_container)
    _send(settings, settings.backfill_list_queue, [PageMessage(job_id, 0, trace=telemetry.inject()).text()])
    log.info("backfill %s: started for %s", job_id, f"prefix {prefix!r}" if prefix else "the whole container")
    return job_id


def status(settings: Settings, job_id: str) -> JobStatus:
    return jobs_for(settings).status(job_id)


def recent(settings: Settings, limit: int = 20) -> list[JobStatus]:
    return jobs_for(settings).recent(limit)


# --------------------------------------------------------------------------- queue handlers


def handle(text: str, settings: Settings) -> None:
    """One message from either backfill queue; raises to make the host retry it."""
    try:
        message = parse_message(text)
    except InputError as exc:  # no retry would make it readable
        log.error("backfill: dropped a message that is not ours: %s", exc)
        return
    with telemetry.continued_from(message.trace):
        if isinstance(message, PageMessage):
            handle_page(message, settings)
        else:
            handle_blob(message, settings)


def handle_page(message: PageMessage, settings: Settings) -> None:
    """List one page, count it once, queue its blobs, then the next page."""
    jobs = jobs_for(settings)
    recorded = jobs.page(message.job, message.page)
    if recorded is not None and recorded.next_sent:
        return  # a second delivery of a page already finished
    job = jobs.describe(message.job)
    prefix = str(job["prefix"])
    names, next_token = list_page(settings, prefix, message.token)
    page = jobs.commit_page(message.job, message.page, names, next_token)
    dry_run = bool(job.get("dry_run"))
    queued = [n for n in _through(settings, prefix, names, next_token, page.last) if name_key(n) in page.keys]
    trace = telemetry.inject()
    _send(settings, settings.backfill_blob_queue, [BlobMessage(message.job, n, dry_run, trace).text()
                                                   for n in queued])
    _count_vanished(jobs, message.job, page, queued)
    if page.next_token is not None:
        _send(settings, settings.backfill_list_queue, [PageMessage(message.job, page.number + 1,
                                                                   page.next_token, trace).text()])
    jobs.mark_next_sent(message.job, page.number)
    log.info("backfill %s: page %d listed, %d blob(s) queued%s", message.job, page.number, len(queued),
             "" if page.next_token else "; listing done")


def handle_blob(message: BlobMessage, settings: Settings) -> None:
    """Process one blob (or assess it, in a dry run) and count its outcome once."""
    jobs = jobs_for(settings)
    key = name_key(message.name)
    if jobs.has_outcome(message.job, key):
        return  # delivered again after it was counted
    try:
        outcome = assess(message.name, settings) if message.dry_run else process(message.name, settings,
                                                                                  message.job)
    except Exception as exc:
        jobs.note_error(message.job, key, message.name, _error_text(exc))
        raise
    jobs.record(message.job, key, message.name, outcome)


def handle_poison(text: str, settings: Settings) -> None:
    """A message failed every delivery: count its blob as failed, or fail the listing, with the last error."""
    try:
        message = parse_message(text)
    except InputError as exc:
        log.error("backfill: dropped a poison message that is not ours: %s", exc)
        return
    jobs = jobs_for(settings)
    try:
        if isinstance(message, PageMessage):
            jobs.fail(message.job, f"listing page {message.page} failed on every delivery; see the logs")
            log.error("backfill %s: listing failed at page %d", message.job, message.page)
            return
        key = name_key(message.name)
        error = jobs.last_error(message.job, key) or "failed on every delivery; see the function's logs"
        if jobs.record(message.job, key, message.name, Outcome("failed", error=error)):
            log.error("backfill %s: %s failed: %s", message.job, message.name, error)
    except NotFoundError as exc:  # the job's record is gone: nothing left to count into, and no retry brings it
        log.error("backfill: dropped a poison message of a job without a record: %s", exc)


def _through(settings: Settings, prefix: str, names: list[str], token: str | None, last: str) -> list[str]:
    """The names now listed from a page's start up to ``last``, the page's last name when first listed.

    The same continuation token need not give the same page twice: blobs uploaded into its range push
    names off its end, and the service may return short pages. Listing on to ``last`` finds every name
    the page counted that still exists, so only a blob really deleted is counted as gone.
    """
    names = list(names)
    while (not names or max(names) < last) and token is not None:
        more, token = list_page(settings, prefix, token)
        names.extend(more)
    return [n for n in names if n <= last]


def _count_vanished(jobs: Jobs, job_id: str, page: Page, queued: list[str]) -> None:
    """Blobs an earlier listing of this page counted but this one no longer sees were deleted since."""
    for key in sorted(page.keys - {name_key(n) for n in queued}):
        jobs.record(job_id, key, "", Outcome("skipped", detail="deleted before it could be processed"))


def list_page(settings: Settings, prefix: str, token: str | None) -> tuple[list[str], str | None]:
    """One page of input blob names from ``token``, and the token of the next page (None at the end)."""
    storage = context(settings)
    container = storage.service.get_container_client(settings.input_container)

    def one_page() -> tuple[list[str], str | None]:
        pages: Any = container.list_blobs(name_starts_with=prefix or None,
                                     results_per_page=settings.backfill_page_size).by_page(continuation_token=token)
        names = [str(b.name) for b in next(iter(pages), [])]
        return names, pages.continuation_token or None

    return storage.call(settings.input_container, one_page)


# --------------------------------------------------------------------------- one blob


def process(name: str, settings: Settings, job: str) -> Outcome:
    """What the trigger does with this blob, unless its current version is already quarantined.

    The output records ``job``: if this job's own earlier delivery published it and died before
    counting, the blob counts as written, with its sizes, rather than as skipped.
    """
    storage = context(settings)
    source = storage.blob(settings.input_container, name)
    props = storage.properties_or_none(source)
    if props is None:
        return Outcome("skipped", detail="deleted before it could be processed")
    held = _quarantined(storage, settings, name, str(props.etag))
    if held is not None:
        return Outcome("quarantined", int(props.size), error=held)
    outcome = outcome_of(blobs.process_blob(source, settings, metadata={JOB_KEY: job}))
    if outcome.status == "skipped" and _written_by(storage, settings, name, job):
        return replace(outcome, status="written", detail="published by an earlier delivery of this job")
    return outcome


def _written_by(storage: StorageContext, settings: Settings, name: str, job: str) -> bool:
    output = storage.properties_or_none(storage.blob(settings.output_container, name))
    return output is not None and (output.metadata or {}).get(JOB_KEY) == job


def assess(name: str, settings: Settings) -> Outcome:
    """A dry run's verdict: what :func:`process` would do, from metadata alone."""
    if blobs.unaddressable(name) is not None:
        return Outcome("failed", error=blobs.unaddressable(name))
    storage = context(settings)
    props = storage.properties_or_none(storage.blob(settings.input_container, name))
    if props is None:
        return Outcome("skipped", detail="deleted before it could be processed")
    etag, size = str(props.etag), int(props.size)
    output = storage.properties_or_none(storage.blob(settings.output_container, name))
    if records_version(output, etag):
        return Outcome("skipped", size, int(output.size), detail="this version was already recompressed")
    held = _quarantined(storage, settings, name, etag)
    if held is not None:
        return Outcome("quarantined", size, error=held)
    return Outcome("written", size, detail="would be recompressed")


def outcome_of(report: Report) -> Outcome:
    status = _STATUS_OUTCOME.get(report.status, "failed")
    written = status in ("written", "skipped")
    return Outcome(status, report.bytes_in, report.bytes_out if written else 0, report.error, report.detail)


def _quarantined(storage: StorageContext, settings: Settings, name: str, etag: str) -> str | None:
    """The recorded error when this exact version is already quarantined, else None."""
    try:
        copy = storage.properties_or_none(storage.blob(settings.quarantine_container, name))
    except MissingContainerError:
        return None
    if not records_version(copy, etag):
        return None
    return unquote((copy.metadata or {}).get(ERROR_KEY, "")) or "quarantined"


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, RecompressError) else f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- queues


def _send(settings: Settings, queue: str, texts: list[str]) -> None:
    """Queue messages, several at a time; a missing queue is a setting or deployment problem, said so."""
    if not texts:
        return
    client = context(settings).queue(queue)
    storage = context(settings)

    def send(text: str) -> None:
        try:
            storage.call(f"queue {queue!r}", lambda: client.send_message(text))
        except NotFoundError as exc:
            raise MissingContainerError(f"queue {queue!r}", "does not exist; create it (azd up and make run do), "
                                        "or point the RECOMPRESS_BACKFILL_*_QUEUE setting at one that does") from exc

    if len(texts) == 1:
        send(texts[0])
        return
    with ThreadPoolExecutor(_SEND_THREADS, thread_name_prefix="backfill-send") as pool:
        for future in [pool.submit(send, t) for t in texts]:
            future.result()


# --------------------------------------------------------------------------- the CLI twin


@dataclass
class Tally:
    """Live progress of a job run here, for the CLI's progress bar."""

    found: int = 0
    done: int = 0


def run_here(settings: Settings, prefix: str, *, dry_run: bool = False, workers: int = 2,
             on_progress: Callable[[Tally], None] | None = None) -> JobStatus:
    """Run a whole job in this process: the same listing, outcomes and record, with ``workers`` threads.

    A blob that fails here counts as failed at once (after the storage client's own retries): there is
    no queue to deliver it again. The in-flight work is bounded, so a huge container streams through.
    """
    settings = replace(settings, max_concurrent_files=workers)
    prefix = check_prefix(prefix)
    jobs = jobs_for(settings)
    job_id = jobs.create(prefix, dry_run, settings.input_container, settings.output_container)
    tally = Tally()
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(workers * 4)

    def one(name: str) -> None:
        try:
            key = name_key(name)
            try:
                outcome = assess(name, settings) if dry_run else process(name, settings, job_id)
            except (RecompressError, OSError) as exc:
                outcome = Outcome("failed", error=_error_text(exc))
            jobs.record(job_id, key, name, outcome)
        finally:
            slots.release()
            with lock:
                tally.done += 1
            if on_progress:
                on_progress(tally)

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="backfill") as pool:
            futures: list[Future[None]] = []
            for page in _pages_here(settings, jobs, job_id, prefix):
                with lock:
                    tally.found += len(page)
                for name in page:
                    slots.acquire()
                    futures.append(pool.submit(one, name))
                futures = _reap(futures)
            for future in futures:
                future.result()
    except BaseException as exc:  # Ctrl-C, or the record unreachable: the job must not look as if it runs on
        with contextlib.suppress(Exception):
            jobs.fail(job_id, f"the command-line run stopped: {_error_text(exc) or type(exc).__name__}")
        raise
    return jobs.status(job_id)


def _reap(futures: list[Future[None]]) -> list[Future[None]]:
    """Drop finished work, raising what it raised (a bug, or the job record unreachable)."""
    for future in futures:
        if future.done():
            future.result()
    return [f for f in futures if not f.done()]


def _pages_here(settings: Settings, jobs: Jobs, job_id: str, prefix: str) -> Iterator[list[str]]:
    number, token = 0, None
    while True:
        names, next_token = list_page(settings, prefix, token)
        page = jobs.commit_page(job_id, number, names, next_token)
        jobs.mark_next_sent(job_id, number)
        yield [n for n in names if name_key(n) in page.keys]
        if page.next_token is None:
            return
        number, token = number + 1, page.next_token

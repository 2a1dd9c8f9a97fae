"""The backfill's job record in Table Storage: exact counts under many concurrent writers, cheap to read.

One partition per job (PartitionKey = job id) holds:

- ``job``: what was asked (prefix, dry run, containers), and listing progress: pages, ``total``, ``listed``;
  a listing that failed for good records its error here.
- ``page-<n>``: one row per listed page, created once: how many blobs it held, the hashes of their names
  and the continuation token after it. A page listed again (its message came twice, or a worker died
  mid-listing) finds its row and reuses what was recorded, so ``total`` counts each page once and the
  blobs enqueued are exactly those counted.
- ``blob-<hash>``: one row per blob with an outcome. It is created, never replaced, in one transaction
  with a counter update: a message delivered twice finds the row and counts nothing.
- ``count-<shard>``: the counters, split over :data:`SHARDS` rows so concurrent workers rarely race
  for one entity (a single counter updated by every worker would be a hot spot); a status read is one
  query of :data:`SHARDS` rows, whatever the number of blobs.
- ``error-<hash>``: the last error of a blob whose message is still being retried, kept for the
  poison handler to report.

Partition ``jobs`` indexes the jobs newest first, so listing recent jobs is one small query.

This module only keeps records; it never lists, processes or queues blobs.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions

from shared.errors import ConflictError, MissingContainerError, NotFoundError, StorageError

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from shared.storage import StorageContext

#: What a blob can end as; once a job is done, these add up to its ``total``.
OUTCOMES = ("written", "skipped", "superseded", "quarantined", "failed")
#: Counter rows per job: enough that two dozen workers seldom collide on one.
SHARDS = 16
JOB_ROW = "job"
INDEX_PARTITION = "jobs"
#: Hex digits of a name's SHA-256 kept as its key: 128 bits, no collision in any container.
KEY_HEX = 32
#: Hashes per string property of a page row: 32,000 characters, within Table Storage's 32K limit.
_HASHES_PER_PROPERTY = 1000
_JOB_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
_COUNTER_FIELDS = (*OUTCOMES, "bytes_in", "bytes_out")
#: Attempts at a counter update before giving up; each collision re-reads another shard.
_ATTEMPTS = 64


def name_key(name: str) -> str:
    """The key of a blob name: row keys cannot hold ``/`` or run to 1,024 characters, a hash can."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_HEX]


def new_job_id(now: datetime | None = None) -> str:
    """Sortable by start time, and unguessable enough that two jobs never share one."""
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def valid_job_id(text: str) -> bool:
    return bool(_JOB_ID.fullmatch(text))


@dataclass(frozen=True)
class Outcome:
    """How one blob ended; ``bytes_out`` only for written ones."""

    status: str
    bytes_in: int = 0
    bytes_out: int = 0
    error: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Page:
    """One listed page as first recorded: the blobs it counted and where the next page starts."""

    number: int
    keys: frozenset[str]
    next_token: str | None
    next_sent: bool
    #: The last name the page held when first listed: a later listing of the same token is read up to
    #: here, however many blobs were added or removed in the range meanwhile.
    last: str = ""


@dataclass(frozen=True)
class JobStatus:
    """A job as ``GET /api/backfill/<id>`` and the CLI show it."""

    id: str
    prefix: str
    dry_run: bool
    state: str
    total: int
    written: int
    skipped: int
    superseded: int
    quarantined: int
    failed: int
    bytes_in: int
    bytes_out: int
    pages: int
    started: str
    finished: str | None
    input_container: str
    output_container: str
    error: str | None = None

    @property
    def counted(self) -> int:
        return sum(getattr(self, name) for name in OUTCOMES)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for logs and the CLI's summary."""
        parts = ", ".join(f"{getattr(self, name)} {name}" for name in OUTCOMES)
        what = "dry run " if self.dry_run else ""
        scope = self.prefix or "whole container"
        return f"backfill {what}{self.id} ({scope}): {self.state}, {self.total} found: {parts}"


class Jobs:
    """The job records of one table; every call goes through the storage context's error translation."""

    def __init__(self, storage: StorageContext, table_name: str, *, retries: int = 5, backoff: float = 1.0) -> None:
        self._storage = storage
        self._name = table_name
        self._table: TableClient = storage.table(table_name)
        self._retries = retries
        self._backoff = backoff

    # ------------------------------------------------------------------ jobs

    def create(self, prefix: str, dry_run: bool, input_container: str, output_container: str) -> str:
        """Record a new job with zeroed counters, in one transaction, and index it."""
        job_id = new_job_id()
        now = _now()
        job = {"PartitionKey": job_id, "RowKey": JOB_ROW, "prefix": prefix, "dry_run": dry_run,
               "input_container": input_container, "output_container": output_container, "started": now,
               "pages": 0, "total": _int64(0), "listed": False, "listed_at": "", "error": ""}
        counters = [{"PartitionKey": job_id, "RowKey": _shard_key(i), "updated": "",
                     **{f: _int64(0) for f in _COUNTER_FIELDS}} for i in range(SHARDS)]
        with contextlib.suppress(_AlreadyCounted):  # a retry of our own create that had applied: the id is new
            self._transact([("create", e) for e in (job, *counters)])
        index = {"PartitionKey": INDEX_PARTITION, "RowKey": f"{10**13 - int(time.time() * 1000):013d}-{job_id}",
                 "job": job_id}
        with contextlib.suppress(ConflictError):  # likewise
            self._writing(lambda: self._table.create_entity(index))
        return job_id

    def status(self, job_id: str) -> JobStatus:
        """The job as of now: its record plus the sum of its counter shards."""
        if not valid_job_id(job_id):
            raise NotFoundError(f"backfill job {job_id!r}", "does not exist")
        job = self._get(job_id, JOB_ROW)
        if job is None:
            raise NotFoundError(f"backfill job {job_id!r}", "does not exist")
        sums = dict.fromkeys(_COUNTER_FIELDS, 0)
        updated = [str(job.get("listed_at") or "")]
        for shard in self._query(f"PartitionKey eq '{job_id}' and RowKey ge 'count-' and RowKey lt 'count.'"):
            for name in _COUNTER_FIELDS:
                sums[name] += _value(shard.get(name))
            updated.append(str(shard.get("updated") or ""))
        total = _value(job.get("total"))
        counted = sum(sums[name] for name in OUTCOMES)
        error = str(job.get("error") or "") or None
        if error:
            state = "failed"
        elif not job.get("listed"):
            state = "listing"
        elif counted < total:
            state = "running"
        else:
            state = "done"
        return JobStatus(
            id=job_id, prefix=str(job.get("prefix") or ""), dry_run=bool(job.get("dry_run")), state=state,
            total=total, pages=_value(job.get("pages")), started=str(job.get("started")),
            finished=max(updated) if state == "done" else None,
            input_container=str(job.get("input_container")), output_container=str(job.get("output_container")),
            error=error, **{name: sums[name] for name in _COUNTER_FIELDS},
        )

    def recent(self, limit: int = 20) -> list[JobStatus]:
        """The newest jobs first."""
        rows = self._call(lambda: list(self._table.query_entities(
            f"PartitionKey eq '{INDEX_PARTITION}'", results_per_page=limit).by_page().__next__()))
        found = []
        for row in rows[:limit]:
            try:
                found.append(self.status(str(row["job"])))
            except NotFoundError:  # indexed, then removed by hand
                continue
        return found

    def describe(self, job_id: str) -> dict[str, Any]:
        """The job row itself (prefix, dry run, containers): what a worker needs to act on a message."""
        job = self._get(job_id, JOB_ROW)
        if job is None:
            raise NotFoundError(f"backfill job {job_id!r}", "does not exist")
        return dict(job)

    def fail(self, job_id: str, error: str) -> None:
        """The job gave up for good (listing failed, or the CLI running it stopped): it says why."""
        self._merge({"PartitionKey": job_id, "RowKey": JOB_ROW, "error": error[:4000]})

    # ------------------------------------------------------------------ pages

    def page(self, job_id: str, number: int) -> Page | None:
        row = self._get(job_id, _page_key(number))
        return None if row is None else _page_from(number, row)

    def commit_page(self, job_id: str, number: int, names: Sequence[str], next_token: str | None) -> Page:
        """Count a listed page into the job once; a page already recorded wins over this listing of it.

        The page row and the job's new total are one transaction, so a worker dying between them
        cannot count a page twice or lose it; two deliveries committing at once both return the row
        that won.
        """
        keys = sorted({name_key(n) for n in names})
        last = max(names, default="")
        while True:
            found = self.page(job_id, number)
            if found is not None:
                return found
            job = self._get(job_id, JOB_ROW)
            if job is None:
                raise NotFoundError(f"backfill job {job_id!r}", "does not exist")
            page = {"PartitionKey": job_id, "RowKey": _page_key(number), "count": len(keys), "last": last,
                    "next_token": next_token or "", "next_sent": False, **_hash_properties(keys)}
            job_update = {"PartitionKey": job_id, "RowKey": JOB_ROW, "total": _int64(_value(job["total"]) + len(keys)),
                          "pages": _value(job.get("pages")) + 1, "listed": next_token is None,
                          "listed_at": _now() if next_token is None else ""}
            try:
                if self._transact([("create", page), ("update", job_update, _if_match(job))]):
                    return Page(number, frozenset(keys), next_token, False, last)
            except _AlreadyCounted:  # another delivery (or our own retried write) recorded it: read it back
                continue

    def mark_next_sent(self, job_id: str, number: int) -> None:
        self._merge({"PartitionKey": job_id, "RowKey": _page_key(number), "next_sent": True})

    # ------------------------------------------------------------------ outcomes

    def has_outcome(self, job_id: str, key: str) -> bool:
        return self._get(job_id, f"blob-{key}") is not None

    def record(self, job_id: str, key: str, name: str, outcome: Outcome) -> bool:
        """Count one blob's outcome; False when it was counted before (a message delivered twice)."""
        row = {"PartitionKey": job_id, "RowKey": f"blob-{key}", "name": name, "status": outcome.status,
               "bytes_in": _int64(outcome.bytes_in), "bytes_out": _int64(outcome.bytes_out),
               "error": (outcome.error or "")[:4000], "detail": (outcome.detail or "")[:1000], "at": _now()}
        for attempt in range(_ATTEMPTS):
            shard = self._get(job_id, _shard_key(secrets.randbelow(SHARDS)))
            if shard is None:
                raise NotFoundError(f"backfill job {job_id!r}", "has no counters; was it created by this app?")
            update = {"PartitionKey": job_id, "RowKey": shard["RowKey"], "updated": _now(),
                      **{f: _int64(_value(shard.get(f)) + _delta(outcome, f)) for f in _COUNTER_FIELDS}}
            try:
                if self._transact([("create", row), ("update", update, _if_match(shard))]):
                    return True
            except _AlreadyCounted:
                return False
            # another worker took this shard: back off a little, then try another
            time.sleep(secrets.randbelow(10 * (attempt + 1)) / 1000)
        raise StorageError(f"backfill job {job_id!r}", f"counters stayed contended for {_ATTEMPTS} attempts")

    def note_error(self, job_id: str, key: str, name: str, error: str) -> None:
        """Keep a blob's latest error, for the poison handler to report once retries run out."""
        self._writing(lambda: self._table.upsert_entity({"PartitionKey": job_id, "RowKey": f"error-{key}",
                                                         "name": name, "error": error[:4000], "at": _now()}))

    def last_error(self, job_id: str, key: str) -> str | None:
        row = self._get(job_id, f"error-{key}")
        return None if row is None else str(row.get("error") or "") or None

    def outcomes(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Every per-blob row of a job (for audits and tests; a million rows is a long read)."""
        if not valid_job_id(job_id):
            raise NotFoundError(f"backfill job {job_id!r}", "does not exist")
        yield from self._query(f"PartitionKey eq '{job_id}' and RowKey ge 'blob-' and RowKey lt 'blob.'")

    # ------------------------------------------------------------------ plumbing

    def _transact(self, operations: list[Any]) -> bool:
        """True when applied; False when the update lost an ETag race; _AlreadyCounted when the create found a row."""
        from azure.data.tables import TableTransactionError

        try:
            self._writing(lambda: self._table.submit_transaction(operations))
            return True
        except StorageError as exc:
            cause = exc.__cause__
            if not isinstance(cause, TableTransactionError):
                raise
            code = str(getattr(cause, "error_code", "") or "")
            if code == "EntityAlreadyExists" or (cause.status_code == 409 and cause.index == 0):
                raise _AlreadyCounted from None
            if code == "UpdateConditionNotSatisfied" or cause.status_code == 412:
                return False
            raise

    def _writing(self, action: Any) -> Any:
        """Run a write, retrying what the SDK will not: a POST or PATCH that met a 5xx or a dropped connection.

        azure-core retries those only for idempotent methods. Every write here is safe to repeat: a
        transaction's create fails if its row exists and its update is conditional on an ETag, so a
        repeat of one that did apply is refused rather than counted twice; merges set the same values.
        """
        for attempt in range(self._retries + 1):
            try:
                return self._call(action)
            except StorageError as exc:
                if attempt == self._retries or not _transient(exc):
                    raise
                time.sleep(self._backoff * 2**attempt if self._backoff >= 1 else self._backoff)
        raise AssertionError("unreachable")

    def _get(self, partition: str, row: str) -> Any:
        try:
            return self._call(lambda: self._table.get_entity(partition, row))
        except NotFoundError:
            return None

    def _merge(self, entity: dict[str, Any]) -> None:
        from azure.data.tables import UpdateMode

        self._writing(lambda: self._table.update_entity(entity, mode=UpdateMode.MERGE))

    def _query(self, text: str) -> Iterator[Any]:
        yield from self._call(lambda: list(self._table.query_entities(text)))

    def _call(self, action: Any) -> Any:
        try:
            return self._storage.call(f"table {self._name!r}", action)
        except StorageError as exc:
            if "TableNotFound" in f"{exc.code} {exc.problem}":
                raise MissingContainerError(f"table {self._name!r}", "does not exist; create it (azd up and "
                                            "make run do), or set RECOMPRESS_BACKFILL_TABLE") from exc
            raise


def _transient(exc: StorageError) -> bool:
    """A server error or a lost connection, as opposed to the service refusing the request (4xx)."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    cause = exc.__cause__
    if isinstance(cause, ServiceRequestError | ServiceResponseError):
        return True
    return isinstance(cause, HttpResponseError) and (cause.status_code or 0) >= 500


class _AlreadyCounted(Exception):
    """The outcome row exists: this blob was counted by an earlier delivery."""


def _page_from(number: int, row: Any) -> Page:
    keys: set[str] = set()
    index = 0
    while f"h{index}" in row:
        text = str(row[f"h{index}"])
        keys.update(text[i:i + KEY_HEX] for i in range(0, len(text), KEY_HEX))
        index += 1
    return Page(number, frozenset(keys), str(row.get("next_token") or "") or None, bool(row.get("next_sent")),
                str(row.get("last") or ""))


def _hash_properties(keys: list[str]) -> dict[str, str]:
    chunks = [keys[i:i + _HASHES_PER_PROPERTY] for i in range(0, len(keys), _HASHES_PER_PROPERTY)]
    return {f"h{i}": "".join(chunk) for i, chunk in enumerate(chunks)}


def _delta(outcome: Outcome, field: str) -> int:
    """What one outcome adds to a counter: bytes count only for blobs written (or, dry, to be written)."""
    if field in OUTCOMES:
        return 1 if outcome.status == field else 0
    return int(getattr(outcome, field)) if outcome.status == "written" else 0


def _shard_key(index: int) -> str:
    return f"count-{index:02d}"


def _page_key(number: int) -> str:
    return f"page-{number:09d}"


def _if_match(entity: Any) -> dict[str, Any]:
    from azure.data.tables import UpdateMode

    return {"mode": UpdateMode.MERGE, "etag": entity.metadata["etag"], "match_condition": MatchConditions.IfNotModified}


def _int64(value: int) -> Any:
    """Counters and byte sums outgrow Int32, which is what a bare Python int is stored as."""
    from azure.data.tables import EdmType, EntityProperty

    return EntityProperty(value, EdmType.INT64)


def _value(raw: Any) -> int:
    """An Int32 comes back as int, an Int64 as an EntityProperty (or int, by SDK version)."""
    if raw is None:
        return 0
    return int(getattr(raw, "value", raw))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")

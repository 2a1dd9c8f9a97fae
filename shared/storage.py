"""Azure Blob Storage: the per-process storage context, a ranged reader and an atomic block writer.

Reading: a small blob comes down in one parallel download into memory; a large
one is read through :class:`RangedBlobFile`, a seekable file object that
fetches only the byte ranges Parquet asks for (footer, then row groups), so
memory does not grow with the file. Every request pins the ETag seen first, so
a blob overwritten mid-read fails loudly instead of mixing two versions.

Writing: :class:`BlockBlobSink` stages blocks as the encoder fills them and
commits the block list only once the file is complete and proven; until
then no blob exists under the output name, so nobody can see a partial file.

Only blob paths import this module (it loads the Azure SDK, about 0.3 s of
start-up); local files and HTTP bodies never do. It never logs a secret.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pyarrow as pa
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContentSettings, ExponentialRetry

from shared.errors import (
    ConfigError,
    ConflictError,
    CredentialError,
    MissingContainerError,
    NotFoundError,
    StorageError,
    first_line,
)
from shared.settings import STORAGE_CONNECTION, Connection, Settings

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient
    from azure.storage.queue import QueueClient, QueueServiceClient

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"

T = TypeVar("T")

_SECRETS = re.compile(r"(?i)(sig|accountkey|sharedaccesssignature|se|sp|sv|skoid|sktid|skv|sr)=([^&;\s\"']+)")


def redact(text: str) -> str:
    """Mask SAS signatures and account keys that an SDK message might quote."""
    return _SECRETS.sub(lambda m: f"{m.group(1)}=***", text)


def quiet_sdk_logging() -> None:
    """Keep the Azure SDK's per-request chatter out of the log; called by the entry points that own logging.

    Its INFO lines repeat every request and header, and errors reach us as
    exceptions anyway; azure-identity warns once per credential tried, in
    several lines each, which :class:`ExplainedCredential` says in one.
    """
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.storage", "azure.data.tables"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "Connection pool is full, discarding connection": more threads than pooled connections, harmless.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    logging.getLogger("azure.identity").setLevel(logging.ERROR)


def label(client: BlobClient) -> str:
    """``container/blob``: how every message names a blob."""
    return f"{client.container_name}/{client.blob_name}"


# --------------------------------------------------------------------------- the storage context


class StorageContext:
    """One client, credential, retry policy and sign-in hint, shared by every run in this process.

    Building a client per invocation would fetch a managed-identity token per
    file, and the identity endpoint throttles; the SDK's clients and
    azure-identity's credentials are thread-safe, so one serves all threads.
    """

    def __init__(self, settings: Settings, *, quick: bool = False) -> None:
        self.hint = settings.connection.how_signed_in()
        self.service = _service_client(settings, self.hint, quick=quick)
        self._settings = settings
        self._quick = quick
        self._lock = threading.Lock()
        self._queues: Any = None
        self._tables: Any = None

    def blob(self, container: str, name: str) -> BlobClient:
        return self.service.get_blob_client(container, name)

    def queue(self, name: str, *, raw: bool = False) -> QueueClient:
        """A client for one queue, with messages in base64 as the Functions host writes and reads them.

        ``raw`` leaves message text as stored: a host stand-in decodes each message itself, so one that is
        not base64 can be moved aside instead of failing its whole batch.
        """
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

        with self._lock:
            if self._queues is None:
                self._queues = _queue_service(self._settings, self.hint, quick=self._quick)
        if raw:
            plain: QueueClient = self._queues.get_queue_client(name)
            return plain
        client: QueueClient = self._queues.get_queue_client(
            name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy())
        return client

    def table(self, name: str) -> TableClient:
        """A client for one Table Storage table (the backfill's job records)."""
        with self._lock:
            if self._tables is None:
                self._tables = _table_service(self._settings, self.hint, quick=self._quick)
        client: TableClient = self._tables.get_table_client(name)
        return client

    def call(self, subject: str, action: Callable[[], T]) -> T:
        """Run one storage call, its SDK errors turned into the app's one-line errors (cause kept)."""
        with storage_errors(subject, self.hint):
            return action()

    def properties_or_none(self, client: BlobClient) -> Any:
        """The blob's properties, or None when it does not exist."""
        try:
            return self.call(label(client), client.get_blob_properties)
        except NotFoundError:
            return None


_contexts: dict[bool, tuple[tuple[Any, ...], StorageContext]] = {}
_contexts_lock = threading.Lock()


def context(settings: Settings, *, quick: bool = False) -> StorageContext:
    """This process's storage context, built on first use and rebuilt only when its settings change.

    ``quick`` is a separate context for probes such as the health check,
    which must answer fast rather than wait out an outage.
    """
    key = (settings.connection, settings.retry_total, settings.retry_backoff, settings.read_timeout)
    with _contexts_lock:
        cached = _contexts.get(quick)
        if cached is None or cached[0] != key:
            cached = (key, StorageContext(settings, quick=quick))
            _contexts[quick] = cached
        return cached[1]


def client_options(settings: Settings, *, quick: bool = False) -> dict[str, Any]:
    """Retry and timeouts for every client: the SDK's policy retries throttling, 5xx, timeouts and resets.

    Backoff grows as ``backoff + 2**attempt`` seconds (with jitter), so the
    default five retries span about half a minute before the run gives up and
    the host's own retry takes over. A backoff under one second stays constant
    (tests use it to see many retries quickly).
    """
    if quick:
        return {"retry_total": 0, "connection_timeout": 3, "read_timeout": 5}
    policy = ExponentialRetry(
        initial_backoff=settings.retry_backoff,  # type: ignore[arg-type]  # floats work; the hint says int
        increment_base=2 if settings.retry_backoff >= 1 else 0,
        retry_total=settings.retry_total,
        random_jitter_range=min(1, settings.retry_backoff),  # type: ignore[arg-type]
    )
    return {"retry_policy": policy, "connection_timeout": 10, "read_timeout": settings.read_timeout}


def check_storage(settings: Settings) -> None:
    """Raise unless storage answers and everything a run or a backfill needs exists, naming the first missing.

    The backfill's queues and table are checked too: a deployment that lacks them would accept
    ``POST /api/backfill`` and then fail, so health says so first.
    """
    probe = context(settings, quick=True)
    for name in (settings.input_container, settings.output_container, settings.quarantine_container):
        container = probe.service.get_container_client(name)
        probe.call(name, container.get_container_properties)
    for queue in (settings.backfill_list_queue, settings.backfill_blob_queue):
        try:
            probe.call(f"queue {queue!r}", probe.queue(queue).get_queue_properties)
        except NotFoundError as exc:
            raise MissingContainerError(f"queue {queue!r}", "does not exist; create it (azd up and make run do), "
                                        "or point the RECOMPRESS_BACKFILL_*_QUEUE setting at one that does") from exc
    table = probe.table(settings.backfill_table)
    try:
        probe.call(f"table {settings.backfill_table!r}",
                   lambda: next(iter(table.query_entities("PartitionKey eq 'jobs'", results_per_page=1).by_page())))
    except StorageError as exc:
        if "TableNotFound" not in f"{exc.code} {exc.problem}":
            raise
        raise MissingContainerError(f"table {settings.backfill_table!r}", "does not exist; create it (azd up and "
                                    "make run do), or set RECOMPRESS_BACKFILL_TABLE") from exc


def service_client(settings: Settings) -> BlobServiceClient:
    """The process's client for the configured account (see :func:`context`)."""
    return context(settings).service


def _service_client(settings: Settings, hint: str, *, quick: bool) -> BlobServiceClient:
    """Build a client from the connection settings, the way the Functions host resolves them.

    ``ParquetStorage`` holds a connection string, or ``ParquetStorage__serviceUri``
    (or ``__blobServiceUri``) names the account and azure-identity signs in,
    with a managed identity when ``__credential=managedidentity``.
    """
    name = STORAGE_CONNECTION
    connection = settings.connection
    options = client_options(settings, quick=quick)
    if connection.connection_string:
        try:
            return BlobServiceClient.from_connection_string(connection.connection_string, **options)
        except ValueError as exc:
            raise ConfigError(name, "is not a valid storage connection string") from exc
    uri = connection.service_uri
    if not uri:
        raise ConfigError(
            name,
            "no storage connection is set: set it to a connection string "
            "(UseDevelopmentStorage=true for Azurite), or set "
            f"{name}__serviceUri=https://<account>.blob.core.windows.net to sign in with an identity",
        )
    if not uri.lower().startswith("https://"):
        raise ConfigError(f"{name}__serviceUri", "must be an https:// URL: identities only sign in over HTTPS")
    return BlobServiceClient(uri, credential=credential(connection, hint), **options)


def _queue_service(settings: Settings, hint: str, *, quick: bool) -> QueueServiceClient:
    """The queue service of the same connection, with the same retry policy and credential."""
    from azure.storage.queue import QueueServiceClient

    connection = settings.connection
    options = client_options(settings, quick=quick)
    if connection.connection_string:
        return QueueServiceClient.from_connection_string(connection.connection_string, **options)
    return QueueServiceClient(_identity_uri(connection, "queue"), credential=credential(connection, hint),
                              **options)


def _table_service(settings: Settings, hint: str, *, quick: bool) -> TableServiceClient:
    """The table service of the same connection; azure-data-tables takes azure-core's retry options."""
    from azure.data.tables import TableServiceClient

    connection = settings.connection
    options: dict[str, Any] = {"connection_timeout": 3 if quick else 10,
                               "read_timeout": 5 if quick else settings.read_timeout,
                               "retry_total": 0 if quick else settings.retry_total,
                               "retry_backoff_factor": settings.retry_backoff,
                               "retry_mode": "exponential"}
    if connection.connection_string:
        return TableServiceClient.from_connection_string(connection.connection_string, **options)
    return TableServiceClient(_identity_uri(connection, "table"), credential=credential(connection, hint),
                              **options)


def _identity_uri(connection: Connection, service: Literal["queue", "table"]) -> str:
    uri = connection.service_uri_for(service)
    if not uri:
        setting = f"{STORAGE_CONNECTION}__{service}ServiceUri"
        raise ConfigError(setting, f"is not set; the backfill needs the account's {service} service, "
                                   f"e.g. https://<account>.{service}.core.windows.net")
    return uri


def credential(connection: Connection, hint: str) -> ExplainedCredential:
    """The azure-identity credential the identity-based settings ask for."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if connection.managed_identity:
        return ExplainedCredential(ManagedIdentityCredential(client_id=connection.client_id), hint)
    return ExplainedCredential(DefaultAzureCredential(managed_identity_client_id=connection.client_id), hint)


class ExplainedCredential:
    """Delegates to azure-identity, and turns a failure to get a token into one line that says what to set.

    Left alone, a missing identity surfaces as a multi-line chain of
    "ManagedIdentityCredential authentication unavailable, no response from
    the IMDS endpoint" and is retried as if storage were down. Raising our
    own error stops the retries at once: no retry would conjure an identity.
    """

    def __init__(self, inner: Any, hint: str) -> None:
        self._inner = inner
        self._hint = hint

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return self._guard(lambda: self._inner.get_token(*scopes, **kwargs))

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        return self._guard(lambda: self._inner.get_token_info(*scopes, options=options))

    def close(self) -> None:
        self._inner.close()

    def _guard(self, fetch: Callable[[], T]) -> T:
        try:
            return fetch()
        except AzureError as exc:
            raise CredentialError(STORAGE_CONNECTION, _auth_hint(exc, self._hint)) from exc


@contextmanager
def storage_errors(subject: str, hint: str = "the configured credential") -> Iterator[None]:
    """Turn Azure SDK exceptions into the app's one-line errors, keeping the cause, error code and request id."""
    try:
        yield
    except ResourceNotFoundError as exc:
        if getattr(exc, "error_code", None) == "ContainerNotFound":
            container = subject.split("/", 1)[0]
            raise MissingContainerError(f"container {container!r}", "does not exist; create it, or point the "
                                        "RECOMPRESS_*_CONTAINER setting at one that does", **_trace(exc)) from exc
        raise NotFoundError(subject, "does not exist", **_trace(exc)) from exc
    except (ResourceExistsError, ResourceModifiedError) as exc:
        raise ConflictError(subject, "was changed by another writer meanwhile; not overwritten", **_trace(exc)) from exc
    except ClientAuthenticationError as exc:
        raise CredentialError(STORAGE_CONNECTION, _auth_hint(exc, hint), **_trace(exc)) from exc
    except HttpResponseError as exc:
        code = getattr(exc, "error_code", None) or exc.reason or "error"
        raise StorageError(subject, f"storage answered {exc.status_code} {code}", **_trace(exc)) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StorageError(subject, f"storage is unreachable ({redact(first_line(exc))})") from exc
    except AzureError as exc:
        raise StorageError(subject, redact(first_line(exc))) from exc


def _trace(exc: AzureError) -> dict[str, str | None]:
    """The service's error code and ``x-ms-request-id``: what Azure support asks for."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    code = getattr(exc, "error_code", None)
    return {"code": str(code) if code else None, "request_id": headers.get("x-ms-request-id")}


def _auth_hint(exc: AzureError, how: str) -> str:
    text = first_line(exc)
    if isinstance(exc, ServiceRequestError) or "IMDS" in text or "managed identity" in text.lower():
        reason = "no managed identity is reachable (normal off Azure)"
    elif getattr(exc, "status_code", None) == 403:
        reason = "storage refused the credential (403)"
    else:
        reason = "no credential could sign in"
    return (
        f"could not authenticate with {how}: {reason}; "
        f"for local runs set {STORAGE_CONNECTION} to a connection string (UseDevelopmentStorage=true), "
        "on Azure grant the app's identity 'Storage Blob Data Owner' on the account"
    )


# --------------------------------------------------------------------------- reading


@dataclass
class BlobSource:
    """An opened input blob: something Parquet can read, plus what identifies its version."""

    name: str  # container/blob
    size: int
    etag: str
    file: Any
    ranged: bool


def open_blob(client: BlobClient, settings: Settings, props: Any = None) -> BlobSource:
    """Pick the read path by size: whole download below the threshold, ranges above.

    ``props``: the blob's properties when the caller already fetched them.
    """
    subject = label(client)
    storage = context(settings)
    if props is None:
        props = storage.call(subject, client.get_blob_properties)
    size, etag = int(props.size), str(props.etag)
    if size > settings.ranged_read_threshold:
        file: Any = pa.PythonFile(RangedBlobFile(client, size, etag, settings), mode="r")
        return BlobSource(subject, size, etag, file, ranged=True)
    buffer = io.BytesIO()
    if size:
        storage.call(subject, lambda: client.download_blob(
            etag=etag, match_condition=MatchConditions.IfNotModified,
            max_concurrency=settings.download_concurrency,
        ).readinto(buffer))
    return BlobSource(subject, size, etag, pa.BufferReader(pa.py_buffer(buffer.getbuffer())), ranged=False)


class RangedBlobFile(io.RawIOBase):
    """A read-only, seekable view of one blob version that downloads only what is read.

    Parquet reads the footer from the end, then each row group's column chunks
    (coalesced by ``pre_buffer``), so a file is fetched in a few large ranges
    and never held whole. Not thread-safe by itself; pyarrow's PythonFile
    serialises access to it.
    """

    def __init__(self, client: BlobClient, size: int, etag: str, settings: Settings) -> None:
        super().__init__()
        self._client = client
        self._size = size
        self._etag = etag
        self._storage = context(settings)
        self._concurrency = settings.download_concurrency
        self._pos = 0
        self.requests = 0
        self.bytes_fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def size(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        length = self._size - self._pos if size is None or size < 0 else min(size, self._size - self._pos)
        if length <= 0:
            return b""
        data = self._fetch(self._pos, length)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def _fetch(self, offset: int, length: int) -> bytes:
        self.requests += 1
        self.bytes_fetched += length
        # Parallel chunks only pay off for big ranges; small ones (footers) go in one request.
        concurrency = self._concurrency if length > 8 * 1024**2 else 1
        return self._storage.call(label(self._client), lambda: self._client.download_blob(
            offset=offset, length=length, etag=self._etag,
            match_condition=MatchConditions.IfNotModified, max_concurrency=concurrency,
        ).readall())


# --------------------------------------------------------------------------- writing


def _write_conditions(replaces: str | None) -> dict[str, Any]:
    if replaces == "*":
        return {}
    if replaces is None:
        return {"match_condition": MatchConditions.IfMissing}
    return {"etag": replaces, "match_condition": MatchConditions.IfNotModified}


class BlockBlobSink(io.RawIOBase):
    """A write-only stream that becomes a block blob only on :meth:`commit`.

    The encoder writes into a ``pa.BufferOutputStream``; each time it passes
    the block size its bytes are staged (in the background, a bounded number
    at a time, so encoding and uploading overlap) and a fresh buffer begins.
    A file smaller than one block is uploaded in a single request instead.
    """

    def __init__(self, client: BlobClient, settings: Settings, *, replaces: str | None = None,
                 precommit: Callable[[], None] | None = None, metadata: Mapping[str, str] | None = None) -> None:
        """``replaces``: the ETag of the output this may overwrite, ``"*"`` for any, ``None`` for none.

        The commit is conditional on it, so two runs can never both publish:
        the second finds the output changed and fails with ConflictError.
        ``precommit`` runs just before publishing, to veto a stale result.
        ``metadata`` is added to what the commit records (a backfill stamps its job id).
        """
        super().__init__()
        self._client = client
        self._extra = dict(metadata or {})
        self._conditions = _write_conditions(replaces)
        self._precommit = precommit
        self._storage = context(settings)
        self._block_size = settings.block_size
        self._buffer = pa.BufferOutputStream()
        self._written = 0
        self._prefix = uuid.uuid4().hex
        self._blocks: list[BlobBlock] = []
        self._inflight: list[Future[None]] = []
        self._slots_total = settings.upload_concurrency
        self._slots = threading.BoundedSemaphore(settings.upload_concurrency)
        self._pool = ThreadPoolExecutor(max_workers=settings.upload_concurrency, thread_name_prefix="stage")
        self.subject = label(client)

    def writable(self) -> bool:
        return True

    @property
    def staged_bytes_limit(self) -> int:
        """The most output bytes held here at once: the block being filled and those uploading."""
        return self._block_size * (self._slots_total + 1)

    def tell(self) -> int:
        return self._written

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._buffer.write(view)
        self._written += view.nbytes
        if self._buffer.tell() >= self._block_size:
            self._stage(self._buffer.getvalue())
            self._buffer = pa.BufferOutputStream()
        return view.nbytes

    def commit(self, metadata: dict[str, str], content_type: str = PARQUET_CONTENT_TYPE) -> None:
        """Publish the blob atomically: one upload, or the staged blocks' list."""
        metadata = {**metadata, **self._extra}
        tail = self._buffer.getvalue()
        settings = ContentSettings(content_type=content_type)
        if self._blocks and tail.size:
            self._stage(tail)
        self._drain()
        if self._precommit is not None:
            self._precommit()
        if not self._blocks:
            self._storage.call(self.subject, lambda: self._client.upload_blob(
                tail.to_pybytes(), overwrite=True, metadata=metadata, content_settings=settings, **self._conditions,
            ))
        else:
            self._storage.call(self.subject, lambda: self._client.commit_block_list(
                self._blocks, metadata=metadata, content_settings=settings, **self._conditions,
            ))
        self._pool.shutdown()

    def restart(self) -> bool:
        """Start the blob again: staged blocks that are never committed simply expire."""
        self._drain()
        self._blocks = []
        self._buffer = pa.BufferOutputStream()
        self._written = 0
        self._prefix = uuid.uuid4().hex
        return True

    def abort(self) -> None:
        """Forget everything staged; uncommitted blocks never become a blob and expire."""
        for future in self._inflight:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._buffer = pa.BufferOutputStream()

    def _stage(self, block: pa.Buffer) -> None:
        block_id = f"{self._prefix}-{len(self._blocks):06d}"  # equal lengths, as the service requires
        self._blocks.append(BlobBlock(block_id=block_id))
        self._slots.acquire()  # bound memory: at most upload_concurrency blocks in flight
        self._inflight = [f for f in self._inflight if not f.done() or f.exception()]
        self._raise_failed()
        self._inflight.append(self._pool.submit(self._upload_block, block_id, block))

    def _upload_block(self, block_id: str, block: pa.Buffer) -> None:
        try:
            # A zero-copy view of the Arrow buffer: requests sends any bytes-like body.
            view = memoryview(block)
            self._storage.call(self.subject, lambda: self._client.stage_block(
                block_id, view, length=view.nbytes,  # type: ignore[arg-type]  # any bytes-like body works
            ))
        finally:
            self._slots.release()

    def _raise_failed(self) -> None:
        for future in self._inflight:
            if future.done() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]

    def _drain(self) -> None:
        for future in self._inflight:
            future.result()
        self._inflight = []

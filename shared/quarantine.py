"""Quarantine: set a hopeless input aside, with its report on the copy itself.

A file proven hopeless (not Parquet, damaged, unsupported, over a limit) fails
the same way on every retry. Instead of letting the host retry it until it
lands on the poison queue, the exact input version is copied to the quarantine
container under the same name, and the run ends normally. What failed travels
as the copy's metadata, committed with it in one step: a report kept in a blob
of its own could collide with another input's name (``x.parquet.error.json``
is a valid input name too) or pass Azure's 1,024-character name limit. The
input itself is never changed or deleted.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import BlobClient

from shared import __version__
from shared.errors import ConflictError, RecompressError
from shared.report import SOURCE_ETAG_KEY, Report, header_value, log, records_version
from shared.settings import Settings
from shared.storage import BlockBlobSink, StorageContext, label

#: Metadata keys of a quarantine copy, beside SOURCE_ETAG_KEY.
ERROR_KEY = "recompress_error"
MAX_ERROR_CHARS = 1024  # escaped, at most 12 bytes a character: well inside 8 KiB


def quarantine(source: BlobClient, props: Any, error: RecompressError, settings: Settings,
               storage: StorageContext) -> Report:
    """Copy the input aside with its error report; idempotent for the same input version."""
    subject = label(source)
    etag = str(props.etag)
    container = storage.service.get_container_client(settings.quarantine_container)
    with contextlib.suppress(ConflictError):  # it exists already
        storage.call(settings.quarantine_container, container.create_container)
    copy = container.get_blob_client(source.blob_name)
    already = storage.properties_or_none(copy)
    if not records_version(already, etag):
        content_type = str(props.content_settings.content_type or "application/octet-stream")
        try:
            _copy(storage, source, copy, etag, settings, content_type, error_metadata(props, error),
                  replaces=already.etag if already is not None else None)
        except ConflictError:  # a concurrent run of this same version may have set it aside first
            if not records_version(storage.properties_or_none(copy), etag):
                raise
    report = Report(subject, label(copy), 0, int(props.size), 0, 0, settings.zstd_level or 0,
                    status="quarantined", error=str(error))
    log.warning("%s: quarantined: %s", subject, error.log_detail())
    return report


def error_metadata(props: Any, error: RecompressError) -> dict[str, str]:
    """What failed, in plain words, and which input version it was: the quarantine copy's metadata."""
    return {  # the copy's own name is the input's; Azure caps all metadata at 8 KiB, so the message is capped
        SOURCE_ETAG_KEY: str(props.etag).strip('"'),
        "recompress_source_size": str(int(props.size)),
        ERROR_KEY: header_value(error.problem[:MAX_ERROR_CHARS]),
        "recompress_error_kind": type(error).__name__,
        "recompress_quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "recompress_app_version": __version__,
    }


def _copy(storage: StorageContext, source: BlobClient, target: BlobClient, etag: str, settings: Settings,
          content_type: str, metadata: dict[str, str], replaces: str | None) -> None:
    """Stream the exact input version into the quarantine blob, block by block, in bounded memory."""
    sink = BlockBlobSink(target, settings, replaces=replaces)

    def copy_all() -> None:
        stream = source.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        for chunk in stream.chunks():
            sink.write(chunk)

    try:
        storage.call(label(source), copy_all)
        sink.commit(metadata, content_type=content_type)
    except BaseException:
        sink.abort()
        raise

"""Quarantine: set a hopeless input aside, with a report a person can read.

A file that cannot be read as Parquet, fails verification or breaks a limit
will fail the same way on every retry. Instead of letting the host retry it
until it lands on the poison queue, the input is copied to the quarantine
container under the same name, with ``<name>.error.json`` beside it, and the
run ends normally. The input itself is never changed or deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import BlobClient

from shared import __version__
from shared.errors import ConflictError, RecompressError
from shared.report import SOURCE_ETAG_KEY, Report, records_version
from shared.settings import Settings
from shared.storage import BlockBlobSink, StorageContext, label

log = logging.getLogger("recompress")


def quarantine(source: BlobClient, props: Any, error: RecompressError, settings: Settings,
               storage: StorageContext) -> Report:
    """Copy the input aside with an error report; idempotent for the same input version."""
    subject = label(source)
    etag = str(props.etag)
    container = storage.service.get_container_client(settings.quarantine_container)
    with contextlib.suppress(ConflictError):  # it exists already
        storage.call(settings.quarantine_container, container.create_container)
    copy = container.get_blob_client(source.blob_name)
    already = storage.properties_or_none(copy)
    if not records_version(already, etag):
        content_type = str(props.content_settings.content_type or "application/octet-stream")
        _copy(storage, source, copy, etag, settings, content_type,
              replaces=already.etag if already is not None else None)
    report_blob = container.get_blob_client(f"{source.blob_name}.error.json")
    body = json.dumps(error_report(subject, props, error), indent=2).encode()
    storage.call(label(report_blob), lambda: report_blob.upload_blob(body, overwrite=True,
                                                                      content_type="application/json"))
    report = Report(subject, f"{container.container_name}/{source.blob_name}", 0, int(props.size), 0, 0,
                    settings.zstd_level or 0, status="quarantined", error=str(error))
    log.warning("%s: quarantined: %s", subject, error.log_detail())
    return report


def error_report(subject: str, props: Any, error: RecompressError) -> dict[str, Any]:
    """What failed, in plain words, and which input version it was."""
    return {
        "source": subject,
        "error": error.problem,
        "kind": type(error).__name__,
        "message": str(error),
        "source_etag": str(props.etag).strip('"'),
        "source_size": int(props.size),
        "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "app_version": __version__,
    }


def _copy(storage: StorageContext, source: BlobClient, target: BlobClient, etag: str, settings: Settings,
          content_type: str, replaces: str | None) -> None:
    """Stream the exact input version into the quarantine blob, block by block, in bounded memory."""
    sink = BlockBlobSink(target, settings, replaces=replaces)

    def copy_all() -> None:
        stream = source.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        for chunk in stream.chunks():
            sink.write(chunk)

    try:
        storage.call(label(source), copy_all)
        sink.commit({SOURCE_ETAG_KEY: etag.strip('"')}, content_type=content_type)
    except BaseException:
        sink.abort()
        raise

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
from azure.storage.blob import BlobClient, BlobServiceClient

from shared import __version__
from shared.errors import ConflictError, RecompressError
from shared.report import SOURCE_ETAG_KEY, Report
from shared.settings import Settings
from shared.storage import BlockBlobSink, call, properties_or_none, storage_errors

log = logging.getLogger("recompress")


def quarantine(source: BlobClient, props: Any, error: RecompressError, settings: Settings,
               service: BlobServiceClient) -> Report:
    """Copy the input aside with an error report; idempotent for the same input version."""
    env = settings.env
    subject = f"{source.container_name}/{source.blob_name}"
    etag = str(props.etag)
    container = service.get_container_client(settings.quarantine_container)
    with contextlib.suppress(ConflictError):  # it exists already
        call(settings.quarantine_container, env, container.create_container)
    copy = container.get_blob_client(source.blob_name)
    already = properties_or_none(copy, env)
    if already is None or (already.metadata or {}).get(SOURCE_ETAG_KEY) != etag.strip('"'):
        content_type = str(props.content_settings.content_type or "application/octet-stream")
        _copy(source, copy, etag, settings, content_type, replaces=already.etag if already is not None else None)
    report_blob = container.get_blob_client(f"{source.blob_name}.error.json")
    body = json.dumps(error_report(subject, props, error), indent=2).encode()
    call(report_blob.blob_name, env, lambda: report_blob.upload_blob(body, overwrite=True,
                                                                     content_type="application/json"))
    report = Report(subject, f"{container.container_name}/{source.blob_name}", 0, int(props.size), 0, 0,
                    settings.zstd_level, status="quarantined", error=str(error))
    log.warning(report.line())
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


def _copy(source: BlobClient, target: BlobClient, etag: str, settings: Settings, content_type: str,
          replaces: str | None) -> None:
    """Stream the exact input version into the quarantine blob, block by block, in bounded memory."""
    subject = f"{source.container_name}/{source.blob_name}"
    sink = BlockBlobSink(target, settings, replaces=replaces)
    try:
        with storage_errors(subject, settings.env):
            stream = source.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
            for chunk in stream.chunks():
                sink.write(chunk)
        sink.commit({SOURCE_ETAG_KEY: etag.strip('"')}, content_type=content_type)
    except BaseException:
        sink.abort()
        raise

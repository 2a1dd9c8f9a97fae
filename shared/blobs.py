"""The idempotent blob protocol: what the trigger and ``/api/process`` do with one input blob.

Delivery is at least once, so a run may repeat, overlap another, or find its
input replaced under it. The output's metadata records the input version
(its ETag); a version already published is skipped; the commit is
conditional, so only one run publishes; a run whose input changed meanwhile
stands down for the newer version's own run. Only inputs proven hopeless
(:data:`shared.errors.QUARANTINABLE`) are quarantined; a bug or a failing
transform raises, so the host retries and its poison queue keeps the blob.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import BlobClient

from shared import pipeline, telemetry
from shared.errors import (
    QUARANTINABLE,
    ConflictError,
    InputError,
    MissingContainerError,
    NotFoundError,
    StorageError,
)
from shared.pipeline import Progress
from shared.quarantine import quarantine
from shared.report import Report, log, records_version
from shared.settings import Settings
from shared.storage import BlockBlobSink, StorageContext, context, label, open_blob

MAX_NAME = 1024


class Superseded(StorageError):
    """The input changed after it was read; its new version is processed by its own run."""


@telemetry.traced_file(lambda source, *_, **__: label(source))
def process_blob(source: BlobClient, settings: Settings, *, missing_ok: bool = True,
                 metadata: Mapping[str, str] | None = None) -> Report:
    """Recompress ``input/<name>`` into ``output/<name>``: what the blob trigger does.

    Safe to run any number of times, at once or in turn, for the same blob.
    The trigger's client is re-addressed through the process's own storage
    context, so our retry policy and timeouts apply to every request (the
    trigger's carries the SDK defaults, with a 15 s initial backoff). A blob
    deleted before its run ends as ``gone`` (an event may outlive its blob),
    unless ``missing_ok`` is false, when NotFoundError says so. ``metadata`` is recorded on the
    output besides the run's own (a backfill's job id).
    """
    storage = context(settings)
    why = unaddressable(source.blob_name)
    if why is not None:
        return _report(label(source), f"{settings.output_container}/{source.blob_name}", "unprocessable",
                       settings, error=why, warn=True)
    source = storage.blob(source.container_name, source.blob_name)
    with pipeline.file_slot(settings):
        return _process(source, settings, storage, missing_ok, metadata or {})


def process_named_blob(name: str, settings: Settings) -> Report:
    """The same as the trigger, for a blob named in an HTTP request (a missing blob is the caller's 404)."""
    return process_blob(context(settings).blob(settings.input_container, check_blob_name(name)), settings,
                        missing_ok=False)


def _process(source: BlobClient, settings: Settings, storage: StorageContext, missing_ok: bool,
             metadata: Mapping[str, str]) -> Report:
    subject = label(source)
    target = storage.blob(settings.output_container, source.blob_name)
    try:
        props = storage.call(subject, source.get_blob_properties)
    except NotFoundError:
        if not missing_ok:
            raise
        return _report(subject, label(target), "gone", settings, detail="deleted before it could be processed")
    etag = str(props.etag)
    telemetry.annotate({telemetry.ATTR_ETAG: etag.strip('"')})
    existing = storage.properties_or_none(target)
    if records_version(existing, etag):
        return _not_written(subject, target, props, existing, settings, "skipped",
                            "this version was already recompressed")
    try:
        pipeline.check_size(subject, int(props.size), settings)
        report = blob_to_blob(source, target, settings, replaces=existing.etag if existing else None, props=props,
                              precommit=lambda: _still_current(storage, source, etag), metadata=metadata)
    except QUARANTINABLE as exc:
        return _retire_output(storage, target, existing, quarantine(source, props, exc, settings, storage))
    except Superseded as exc:
        return _not_written(subject, target, props, None, settings, "superseded", exc.problem)
    except ConflictError:
        lost = _lost_race(storage, source, target, props, settings)
        if lost is None:
            raise
        return lost
    clear_quarantine(storage, settings, source.blob_name)
    if settings.delete_source:
        delete_source(storage, source, etag)
    return report


def unaddressable(name: str) -> str | None:
    """Why the SDK cannot address a blob of this name (raw REST can create it), or None."""
    if _dot_segments(name):
        return (f"blob name {name!r} has '.' or '..' segments, which storage clients cannot address; "
                "rename the blob to process it")
    return None


def _dot_segments(name: str) -> bool:
    """Whether a name has ``.`` or ``..`` segments, which storage clients normalise away."""
    return any(part in (".", "..") for part in name.split("/"))


def _retire_output(storage: StorageContext, target: BlobClient, existing: Any, report: Report) -> Report:
    """The input's current version was quarantined: an output of an older version must not pass for current."""
    if existing is None:
        return report
    try:
        storage.call(label(target), lambda: target.delete_blob(etag=existing.etag,
                                                               match_condition=MatchConditions.IfNotModified))
    except (ConflictError, NotFoundError):  # replaced or removed meanwhile: not ours to judge
        return report
    log.warning("%s: removed, it was made from an older version of %s", label(target), report.source)
    return replace(report, detail=f"removed {label(target)}, made from an older version")


def clear_quarantine(storage: StorageContext, settings: Settings, name: str) -> None:
    """A good version was published: an older version's quarantine copy no longer describes this input."""
    copy = storage.blob(settings.quarantine_container, name)
    try:
        found = storage.properties_or_none(copy)
    except MissingContainerError:  # nothing was ever quarantined here
        return
    if found is None:
        return
    try:
        storage.call(label(copy), lambda: copy.delete_blob(etag=found.etag,
                                                           match_condition=MatchConditions.IfNotModified))
    except (ConflictError, NotFoundError):
        return
    log.info("%s: removed, a newer version of the input was published", label(copy))


def _report(subject: str, output: str, status: str, settings: Settings, *, error: str | None = None,
            detail: str | None = None, warn: bool = False) -> Report:
    report = Report(subject, output, 0, 0, 0, 0, settings.zstd_level or 0, status=status, error=error,
                    detail=detail)
    (log.warning if warn else log.info)(report.line())
    return report


def _lost_race(storage: StorageContext, source: BlobClient, target: BlobClient, props: Any,
               settings: Settings) -> Report | None:
    """Our conditional commit was refused: say who won, or None when nobody explains it."""
    etag = str(props.etag)
    now = storage.properties_or_none(target)
    if records_version(now, etag):  # a concurrent run of this same version won the race
        return _not_written(label(source), target, props, now, settings, "skipped", "published by a concurrent run")
    try:
        _still_current(storage, source, etag)
    except Superseded as exc:  # a newer version's run published first: nothing left to do here
        return _not_written(label(source), target, props, None, settings, "superseded", exc.problem)
    return None


def _still_current(storage: StorageContext, source: BlobClient, etag: str) -> None:
    current = storage.properties_or_none(source)
    if current is None or str(current.etag) != etag:
        raise Superseded(label(source), "changed while it was being read; its newer version is processed on its own")


def _not_written(subject: str, target: BlobClient, props: Any, existing: Any, settings: Settings, status: str,
                 why: str) -> Report:
    meta = (existing.metadata or {}) if existing is not None else {}
    report = Report(subject, label(target), int(meta.get("recompress_rows", 0)), int(props.size),
                    int(existing.size) if existing is not None else 0, 0,
                    int(meta.get("recompress_level", settings.zstd_level or 0)), status=status, detail=why,
                    mode=meta.get("recompress_mode"))
    log.info(report.line())
    return report


def delete_source(storage: StorageContext, source: BlobClient, etag: str) -> None:
    """Opt-in clean-up: delete the input only if it is still the version just published."""
    try:
        storage.call(label(source), lambda: source.delete_blob(etag=etag,
                                                               match_condition=MatchConditions.IfNotModified))
    except (ConflictError, NotFoundError):
        log.info("%s: kept: it changed or vanished after it was recompressed", label(source))


def check_blob_name(name: str) -> str:
    """Accept only a plain blob name inside the input container."""
    subject = "blob name"
    if not name or not name.strip():
        raise InputError(subject, "is empty")
    if len(name) > MAX_NAME:
        raise InputError(subject, f"is {len(name)} characters long; blob names have at most {MAX_NAME}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InputError(subject, "contains control characters")
    if "://" in name or name.startswith(("/", "\\")) or "\\" in name:
        raise InputError(subject, f"{name!r} must be a name inside the input container, not a URL or path")
    if _dot_segments(name):
        raise InputError(subject, f"{name!r} must not contain '.' or '..' segments")
    return name


def blob_to_blob(source: BlobClient, target: BlobClient, settings: Settings, progress: Progress | None = None, *,
                 replaces: str | None = "*", precommit: Callable[[], None] | None = None,
                 props: Any = None, metadata: Mapping[str, str] | None = None) -> Report:
    """Recompress one blob into another; ``replaces`` makes the commit conditional (see BlockBlobSink)."""
    opened = open_blob(source, settings, props)
    sink = BlockBlobSink(target, settings, replaces=replaces, precommit=precommit, metadata=metadata)
    return pipeline.run(opened.file, opened.name, opened.size, opened.etag, sink, settings, label(target), progress)

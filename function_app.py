"""Azure Functions entry points (Python v2 model): bindings, request parsing, responses.

All the work happens in ``shared``; each function here only turns its trigger
into a pipeline call and the result (or error) into what the caller expects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared import backfill, blobs, pipeline, telemetry
from shared.errors import (
    ConfigError,
    CredentialError,
    DamagedError,
    InputError,
    NotFoundError,
    NotParquetError,
    RecompressError,
    StorageError,
    UnsupportedError,
    body_too_large,
)
from shared.readers import POLICIES
from shared.reencode import release_memory_promptly
from shared.report import log
from shared.savings import summarize
from shared.settings import MODES, PROOFS, STORAGE_CONNECTION, Settings, parse_choice, parse_columns, parse_level
from shared.storage import PARQUET_CONTENT_TYPE, check_storage, context, quiet_sdk_logging
from shared.transform import load_transform

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Trigger paths and queue names are fixed when the host indexes the app, so they
# are read here; a bad name still fails clearly on the first run via Settings.
_DEFAULTS = Settings()
INPUT_CONTAINER = os.environ.get("RECOMPRESS_INPUT_CONTAINER", "").strip() or _DEFAULTS.input_container
LIST_QUEUE = os.environ.get("RECOMPRESS_BACKFILL_LIST_QUEUE", "").strip() or _DEFAULTS.backfill_list_queue
BLOB_QUEUE = os.environ.get("RECOMPRESS_BACKFILL_BLOB_QUEUE", "").strip() or _DEFAULTS.backfill_blob_queue
#: Where the Functions host moves a message that failed maxDequeueCount times (host.json).
POISON = "-poison"


@app.function_name("recompress_blob")
@app.blob_trigger(
    arg_name="source",
    path=f"{INPUT_CONTAINER}/{{name}}",
    connection=STORAGE_CONNECTION,
    source=func.BlobSource.EVENT_GRID,
)
def recompress_blob(source: blob.BlobClient) -> None:
    """New input blob: write its recompressed twin to the output container.

    A file that can never succeed is quarantined and the function returns, so
    the host does not retry it; storage trouble raises, so the host retries.
    """
    blobs.process_blob(source, _settings())


@app.function_name("recompress_http")
@app.route(route="recompress", methods=["POST"])
def recompress_http(req: func.HttpRequest) -> func.HttpResponse:
    """The body is a Parquet file; the answer is its recompressed form."""
    return _guarded(_recompress_body, req)


def _recompress_body(req: func.HttpRequest) -> func.HttpResponse:
    settings = _settings()
    declared = req.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_size:
        return _too_large(int(declared), settings.max_body_size)
    body = req.get_body()
    if len(body) > settings.max_body_size:
        return _too_large(len(body), settings.max_body_size)
    _known_params(req)
    settings = settings.with_overrides(
        zstd_level=_query(req, "level", parse_level), columns=_query(req, "columns", parse_columns),
        mode=_query(req, "mode", parse_choice(MODES)), verify=_query(req, "verify", parse_choice(PROOFS)),
        readers=_query(req, "readers", parse_choice(POLICIES)),
    )
    output, report = pipeline.recompress_bytes(body, settings)
    return func.HttpResponse(
        body=output.to_pybytes(),
        status_code=200,
        mimetype=PARQUET_CONTENT_TYPE,
        headers={
            "X-Recompress-Rows": str(report.rows),
            "X-Recompress-Bytes-In": str(report.bytes_in),
            "X-Recompress-Bytes-Out": str(report.bytes_out),
            "X-Recompress-Ratio": f"{report.ratio:.4f}",
            "X-Recompress-Level": str(report.level),
            "X-Recompress-Mode": str(report.mode),
            "X-Recompress-Proof": str(report.proof),
            "X-Recompress-Readers": str(report.readers),
        },
    )


@app.function_name("process_blob")
@app.route(route="process", methods=["POST"])
def process_http(req: func.HttpRequest) -> func.HttpResponse:
    """Process an existing input blob exactly as the trigger would; answer with the report."""
    return _guarded(_process_named, req)


def _process_named(req: func.HttpRequest) -> func.HttpResponse:
    payload = _json_body(req, '{"blob": "<name in the input container>"}')
    name = payload.get("blob") if isinstance(payload, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise InputError("request body", 'needs "blob": the name of a blob in the input container')
    report = blobs.process_named_blob(name, _settings())
    return _json(422 if report.status == "quarantined" else 200, report.as_dict())


@app.function_name("backfill_jobs")
@app.route(route="backfill", methods=["GET", "POST"])
def backfill_jobs(req: func.HttpRequest) -> func.HttpResponse:
    """POST starts a backfill of the input container (202 at once, before listing); GET lists recent jobs."""
    return _guarded(_backfill_jobs, req)


def _backfill_jobs(req: func.HttpRequest) -> func.HttpResponse:
    settings = _settings()
    if req.method == "GET":
        return _json(200, {"jobs": [job.as_dict() for job in backfill.recent(settings)]})
    usage = '{"prefix": "<blob-name prefix, optional>", "dry_run": false}'
    payload = _json_body(req, usage, empty_ok=True)
    if not isinstance(payload, dict) or set(payload) - {"prefix", "dry_run"}:
        raise InputError("request body", f"must be a JSON object like {usage}")
    prefix, dry_run = payload.get("prefix", ""), payload.get("dry_run", False)
    if not isinstance(prefix, str) or not isinstance(dry_run, bool):
        raise InputError("request body", f'"prefix" must be a string and "dry_run" true or false, as in {usage}')
    job_id = backfill.start(settings, prefix, dry_run=dry_run)
    status_url = f"{req.url.split('?')[0].rstrip('/')}/{job_id}"
    response = _json(202, {"id": job_id, "status_url": status_url})
    response.headers["Location"] = status_url
    return response


@app.function_name("backfill_job")
@app.route(route="backfill/{id}", methods=["GET"])
def backfill_job(req: func.HttpRequest) -> func.HttpResponse:
    """A job's state and counts; 404 for an id no job has."""
    return _guarded(lambda r: _json(200, backfill.status(_settings(), r.route_params.get("id", "")).as_dict()), req)


@app.function_name("backfill_list")
@app.queue_trigger(arg_name="message", queue_name=LIST_QUEUE, connection=STORAGE_CONNECTION)
def backfill_list(message: func.QueueMessage) -> None:
    """One page of a backfill's listing; raising makes the host deliver it again."""
    backfill.handle(message.get_body().decode("utf-8"), _settings())


@app.function_name("backfill_blob")
@app.queue_trigger(arg_name="message", queue_name=BLOB_QUEUE, connection=STORAGE_CONNECTION)
def backfill_blob(message: func.QueueMessage) -> None:
    """One blob of a backfill, through the trigger's own protocol."""
    backfill.handle(message.get_body().decode("utf-8"), _settings())


@app.function_name("backfill_list_poison")
@app.queue_trigger(arg_name="message", queue_name=LIST_QUEUE + POISON, connection=STORAGE_CONNECTION)
def backfill_list_poison(message: func.QueueMessage) -> None:
    """A listing page that failed every delivery: the job records the failure."""
    backfill.handle_poison(message.get_body().decode("utf-8"), _settings())


@app.function_name("backfill_blob_poison")
@app.queue_trigger(arg_name="message", queue_name=BLOB_QUEUE + POISON, connection=STORAGE_CONNECTION)
def backfill_blob_poison(message: func.QueueMessage) -> None:
    """A blob that failed every delivery: counted as failed, with its last error."""
    backfill.handle_poison(message.get_body().decode("utf-8"), _settings())


@app.function_name("savings_report")
@app.route(route="report", methods=["GET"])
def savings_report(req: func.HttpRequest) -> func.HttpResponse:
    """How many bytes the outputs saved, by folder and mode, and what was quarantined (metadata only)."""
    return _guarded(_savings, req)


def _savings(req: func.HttpRequest) -> func.HttpResponse:
    if set(req.params) - {"prefix"}:
        raise InputError("query", "unknown parameter; accepted: prefix")
    settings = _settings()
    return _json(200, summarize(context(settings), settings, req.params.get("prefix", "")).as_dict())


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when storage answers, 503 with a short reason when it does not."""
    try:
        settings = _settings()
        check_storage(settings)
        if settings.transform:
            load_transform(settings.transform)  # a run would fail on it; say so here
    except RecompressError as exc:
        return _json(503, {"status": "unavailable", "reason": str(exc)})
    return _json(200, {"status": "ok", "input": settings.input_container, "output": settings.output_container})


# --------------------------------------------------------------------------- responses

_STATUS: list[tuple[type[RecompressError], int]] = [
    (NotFoundError, 404),
    (NotParquetError, 422),
    (DamagedError, 422),
    (UnsupportedError, 422),
    (InputError, 400),
    (CredentialError, 503),
    (ConfigError, 500),
    (StorageError, 503),
]


def _guarded(handler: Callable[[func.HttpRequest], func.HttpResponse], req: func.HttpRequest) -> func.HttpResponse:
    """Every failure becomes a JSON error body; nothing leaks a traceback to the caller."""
    try:
        with telemetry.continued_from(req.headers):  # the caller's traceparent, when the host's is not current
            return handler(req)
    except RecompressError as exc:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        log.warning("%s %s -> %d: %s", req.method, req.url.split("?")[0], status, exc.log_detail(),
                    exc_info=status >= 500 and not isinstance(exc, StorageError | ConfigError))
        return _json(status, {"error": str(exc), "kind": type(exc).__name__})
    except Exception:
        log.exception("unexpected failure in %s", req.url.split("?")[0])
        return _json(500, {"error": "internal error; see the function logs", "kind": "InternalError"})


_started = False


def _settings() -> Settings:
    """This invocation's settings; the first call also sets up what this process owns.

    The allocator, SDK log levels and telemetry are process-wide, so they are
    set here, by the entry point that owns the process, once, rather than as a
    side effect of importing a module.
    """
    global _started
    if not _started:
        release_memory_promptly()
        quiet_sdk_logging()
        telemetry.configure()
        _started = True
    return Settings.from_env()


#: The query parameters /api/recompress understands; anything else is a typo the caller should hear about.
QUERY_PARAMS = ("level", "columns", "mode", "verify", "readers")


def _known_params(req: func.HttpRequest) -> None:
    unknown = sorted(set(req.params) - set(QUERY_PARAMS))
    if unknown:
        raise InputError("query", f"unknown parameter {', '.join(map(repr, unknown))}; "
                                  f"accepted: {', '.join(QUERY_PARAMS)}")


def _query(req: func.HttpRequest, key: str, parse: Callable[[str, str], Any]) -> Any:
    raw = req.params.get(key)
    if raw is None:
        return None
    try:
        return parse(raw, f"query parameter {key!r}")
    except ConfigError as exc:  # a bad query value is the caller's mistake, not the app's
        raise InputError(exc.subject, exc.problem) from exc


def _json_body(req: func.HttpRequest, usage: str, *, empty_ok: bool = False) -> Any:
    """The request's JSON; a body that is not JSON gets one line showing the shape expected."""
    if empty_ok and not req.get_body().strip():
        return {}
    try:
        return req.get_json()
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays or objects nested thousands deep
        raise InputError("request body", f"must be JSON like {usage}") from exc


def _too_large(size: int, limit: int) -> func.HttpResponse:
    return _json(413, {"error": body_too_large(size, limit), "kind": "PayloadTooLarge"})


def _json(status: int, payload: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=status, mimetype="application/json")


"""Telemetry: one span per file with its numbers, child spans, metrics, errors without secrets; nothing when off.

Spans and metrics are read back from the OpenTelemetry SDK's in-memory
exporter and reader, through the real pipeline and blob protocol against the
session's Azurite.
"""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import function_app
from devhost.azurite import Azurite, free_port
from shared import backfill, blobs, pipeline, telemetry
from shared.errors import MissingContainerError
from shared.settings import STORAGE_CONNECTION, Settings
from shared.storage import context
from tests.helpers import ROOT, app_free_env, parquet_bytes, sample_table, wait_for

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def file_span(self) -> ReadableSpan:
        (span,) = [s for s in self.finished() if s.name.startswith("recompress ")]
        return span

    def children(self, parent: ReadableSpan) -> list[str]:
        assert parent.context is not None
        return [s.name for s in self.finished() if s.parent is not None and s.parent.span_id == parent.context.span_id]

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, point) of every data point of metric ``name``."""
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [(dict(point.attributes or {}), point)
                for resource in data.resource_metrics for scope in resource.scope_metrics
                for metric in scope.metrics if metric.name == name for point in metric.data.data_points]

    def value(self, name: str, **attributes: str) -> Any:
        found = [point for attrs, point in self.points(name) if attrs == attributes]
        assert len(found) == 1, (name, attributes, self.points(name))
        return found[0].value if hasattr(found[0], "value") else found[0]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """Telemetry on, recording into the SDK's in-memory exporter and reader (never the global providers)."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use(tracer_provider, MeterProvider(metric_readers=[reader]))
    yield Recorded(exporter, reader)
    telemetry.reset()


def upload(container: ContainerClient, name: str, data: bytes) -> str:
    return str(container.get_blob_client(name).upload_blob(data, overwrite=True)["etag"]).strip('"')


# --------------------------------------------------------------------------- a blob-triggered file


def test_a_blob_triggered_file_is_one_span_with_its_numbers_and_steps(
    recorded: Recorded, settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    data = parquet_bytes(sample_table(300))
    etag = upload(containers[0], "day=1/a.parquet", data)

    report = blobs.process_blob(containers[0].get_blob_client("day=1/a.parquet"), settings)

    span = recorded.file_span()
    assert span.name == f"recompress {containers[0].container_name}/day=1/a.parquet"
    assert span.kind == SpanKind.SERVER  # nothing in this process is its parent: the operation starts here
    attrs = dict(span.attributes or {})
    output_size = containers[1].get_blob_client("day=1/a.parquet").get_blob_properties().size
    assert attrs[telemetry.ATTR_BYTES_IN] == len(data)
    assert attrs[telemetry.ATTR_BYTES_OUT] == output_size == report.bytes_out
    assert attrs[telemetry.ATTR_ROWS] == 300
    assert attrs[telemetry.ATTR_RATIO] == report.ratio
    assert attrs[telemetry.ATTR_STATUS] == "written"
    assert attrs[telemetry.ATTR_MODE] == report.mode
    assert attrs[telemetry.ATTR_MODE_REASON] == report.mode_reason
    assert attrs[telemetry.ATTR_PROOF] == report.proof
    assert attrs[telemetry.ATTR_LEVEL] == report.level
    assert attrs[telemetry.ATTR_ETAG] == etag
    assert span.status.status_code == StatusCode.UNSET
    assert recorded.children(span) == ["read", "recompress", "commit"]


def test_a_written_file_counts_in_every_metric(
    recorded: Recorded, settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    data = parquet_bytes(sample_table(300))
    upload(containers[0], "m.parquet", data)

    report = blobs.process_blob(containers[0].get_blob_client("m.parquet"), settings)

    mode = str(report.mode)
    assert recorded.value("recompress.files", status="written", mode=mode) == 1
    assert recorded.value("recompress.bytes_in", mode=mode) == len(data)
    assert recorded.value("recompress.bytes_out", mode=mode) == report.bytes_out
    assert recorded.value("recompress.bytes_saved", mode=mode) == len(data) - report.bytes_out
    assert recorded.value("recompress.duration", status="written", mode=mode).count == 1
    ratio = recorded.value("recompress.ratio", mode=mode)
    assert (ratio.count, ratio.sum) == (1, report.ratio)
    assert recorded.value("recompress.in_flight") == 0  # one came in, one went out


def test_a_version_already_published_is_a_skipped_span_without_bytes(
    recorded: Recorded, settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    upload(containers[0], "twice.parquet", parquet_bytes(sample_table(10)))
    blobs.process_blob(containers[0].get_blob_client("twice.parquet"), settings)
    recorded.spans.clear()

    blobs.process_blob(containers[0].get_blob_client("twice.parquet"), settings)

    assert dict(recorded.file_span().attributes or {})[telemetry.ATTR_STATUS] == "skipped"
    statuses = {attrs["status"]: point.value for attrs, point in recorded.points("recompress.files")}
    assert statuses == {"written": 1, "skipped": 1}
    assert sum(point.value for _, point in recorded.points("recompress.bytes_in")) > 0  # the first run's only


# --------------------------------------------------------------------------- an HTTP body


def test_an_http_body_is_a_request_body_span_continuing_the_callers_traceparent(
    recorded: Recorded, storage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in storage_env.items():
        monkeypatch.setenv(key, value)
    body = parquet_bytes(sample_table(50))
    req = func.HttpRequest("POST", "http://localhost/api/recompress", body=body,
                           headers={"Traceparent": TRACEPARENT, "content-length": str(len(body))})

    response = function_app._guarded(function_app._recompress_body, req)

    assert response.status_code == 200
    span = recorded.file_span()
    assert span.name == "recompress request body"
    assert span.context is not None
    assert span.parent is not None
    assert f"{span.context.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert f"{span.parent.span_id:016x}" == TRACEPARENT.split("-")[2]
    assert span.kind == SpanKind.SERVER  # the caller is remote: this span is the request in Application Insights
    assert dict(span.attributes or {})[telemetry.ATTR_BYTES_IN] == len(body)
    assert recorded.children(span) == ["read", "recompress", "commit"]


def test_a_span_the_host_made_current_stays_the_parent(recorded: Recorded, settings: Settings) -> None:
    """Under the Functions worker the host's invocation context is current; a traceparent header is then ignored."""
    tracer = TracerProvider().get_tracer("host")
    header = {"traceparent": TRACEPARENT}
    with tracer.start_as_current_span("host invocation") as host, telemetry.continued_from(header):
        pipeline.recompress_bytes(parquet_bytes(sample_table(5)), settings)

    span = recorded.file_span()
    assert span.parent is not None
    assert span.parent.span_id == host.get_span_context().span_id
    assert span.kind == SpanKind.INTERNAL


# --------------------------------------------------------------------------- failures


def test_a_quarantined_file_records_its_one_line_error_and_no_bytes(
    recorded: Recorded, settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    settings = settings.with_overrides(quarantine_container=f"q-{settings.output_container}")
    upload(containers[0], "broken.parquet", b"id,name\n1,a\n")

    report = blobs.process_blob(containers[0].get_blob_client("broken.parquet"), settings)

    assert report.status == "quarantined"
    assert report.error is not None
    span = recorded.file_span()
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == report.error
    assert "\n" not in report.error
    assert dict(span.attributes or {})[telemetry.ATTR_STATUS] == "quarantined"
    read = next(s for s in recorded.finished() if s.name == "read")
    assert read.status.status_code == StatusCode.ERROR  # the footer is where it failed
    assert [e.attributes["exception.message"] for e in read.events if e.attributes] == [report.error]
    assert recorded.value("recompress.files", status="quarantined", mode="none") == 1
    assert recorded.points("recompress.bytes_in") == []


def test_a_raised_storage_error_is_recorded_without_the_account_key(
    recorded: Recorded, settings: Settings, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    upload(containers[0], "nowhere.parquet", parquet_bytes(sample_table(5)))
    missing_output = settings.with_overrides(output_container="no-such-container")

    with pytest.raises(MissingContainerError) as raised:
        blobs.process_blob(containers[0].get_blob_client("nowhere.parquet"), missing_output)

    span = recorded.file_span()
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == str(raised.value)
    (event,) = [e for e in span.events if e.name == "exception"]
    assert dict(event.attributes or {}) == {"exception.type": "MissingContainerError",
                                              "exception.message": str(raised.value)}
    assert recorded.value("recompress.files", status="failed", mode="none") == 1
    exported = "".join(s.to_json() for s in recorded.finished())
    key = (settings.connection.connection_string or "").split("AccountKey=")[1].split(";")[0]
    assert key
    assert key not in exported
    assert "AccountKey" not in exported
    assert "sig=" not in exported


def test_an_unexpected_error_shows_only_its_type() -> None:
    assert telemetry.one_line(KeyError("AccountKey=secret")) == "KeyError (see the function logs)"


# --------------------------------------------------------------------------- logs and context hooks


def test_the_report_line_carries_the_trace_id(
    recorded: Recorded, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="recompress"):
        pipeline.recompress_bytes(parquet_bytes(sample_table(7)), settings)

    span = recorded.file_span()
    assert span.context is not None
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("request body: 7 rows"))
    assert line.endswith(f"[trace {span.context.trace_id:032x}]")


def test_injected_context_continues_in_the_next_run(recorded: Recorded, settings: Settings) -> None:
    """The hook a queue producer and consumer use: inject into a message, continue from it elsewhere."""
    tracer = TracerProvider().get_tracer("producer")
    with tracer.start_as_current_span("enqueue") as producer:
        message = telemetry.inject({})

    with telemetry.continued_from(message):
        pipeline.recompress_bytes(parquet_bytes(sample_table(5)), settings)

    span = recorded.file_span()
    assert span.parent is not None
    assert span.parent.span_id == producer.get_span_context().span_id


def test_a_backfilled_blob_continues_the_trace_of_the_request_that_started_the_job(
        recorded: Recorded, backfill_settings: Settings, containers: tuple[ContainerClient, ContainerClient]) -> None:
    upload(containers[0], "traced/a.parquet", parquet_bytes(sample_table(5)))
    tracer = TracerProvider().get_tracer("caller")
    with tracer.start_as_current_span("POST /api/backfill") as request:
        backfill.start(backfill_settings, "traced/")
    for queue in (backfill_settings.backfill_list_queue, backfill_settings.backfill_blob_queue):
        client = context(backfill_settings).queue(queue)
        for message in client.receive_messages(max_messages=5):
            backfill.handle(message.content, backfill_settings)  # the host's queue trigger, played in-process

    span = recorded.file_span()
    assert span.context is not None
    assert span.context.trace_id == request.get_span_context().trace_id


def test_hooks_do_nothing_when_off(settings: Settings) -> None:
    assert not telemetry.enabled()
    assert telemetry.inject({}) == {}
    with telemetry.continued_from({"traceparent": TRACEPARENT}), telemetry.step("read"):
        report = pipeline.recompress_bytes(parquet_bytes(sample_table(5)), settings)[1]
    assert report.status == "written"


# --------------------------------------------------------------------------- switching on and off


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({telemetry.OTLP: "http://127.0.0.1:4318"}, "otlp"),
    ({telemetry.APPINSIGHTS: "InstrumentationKey=00000000-0000-0000-0000-000000000000"}, "azure-monitor"),
    ({telemetry.APPINSIGHTS: "InstrumentationKey=x", "OTEL_SDK_DISABLED": "true"}, None),
    ({telemetry.APPINSIGHTS: "  ", telemetry.OTLP: ""}, None),
])
def test_the_standard_settings_choose_the_destination(env: dict[str, str], expected: str | None) -> None:
    assert telemetry.destination(env) == expected


def _probe(env: dict[str, str], code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter with ``env`` (and no telemetry setting of the caller's); its last line."""
    clean = {k: v for k, v in app_free_env().items()
             if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_", "PYTHON_APPLICATIONINSIGHTS_"))}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**clean, **env}, check=False)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


_RUN_A_BODY = (
    "import json, sys, io; import pyarrow as pa, pyarrow.parquet as pq; import function_app; "
    "from shared import pipeline, telemetry; "
    "settings = function_app._settings(); "
    "sink = pa.BufferOutputStream(); pq.write_table(pa.table({'a': [1, 2, 3]}), sink); "
    "pipeline.recompress_bytes(sink.getvalue().to_pybytes(), settings); "
    "print(json.dumps(sorted({m.split('.')[0] + '.' + m.split('.')[1] if m.startswith('azure.') else m.split('.')[0] "
    "for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor'))})))"
)


def test_with_telemetry_off_nothing_of_opentelemetry_is_imported() -> None:
    """Start-up is part of every run's cost: the app with no telemetry setting loads no OpenTelemetry module."""
    assert _probe({}, _RUN_A_BODY) == []


def test_with_an_otlp_endpoint_the_app_loads_the_sdk_and_runs_the_same() -> None:
    # Port 9 (discard) on localhost: nothing listens, so exports fail quietly without leaving the machine.
    loaded = _probe({telemetry.OTLP: "http://127.0.0.1:9", "OTEL_BSP_EXPORT_TIMEOUT": "100",
                     "OTEL_METRIC_EXPORT_TIMEOUT": "100", "OTEL_BLRP_EXPORT_TIMEOUT": "100",
                     "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}, _RUN_A_BODY)
    assert "opentelemetry" in loaded
    assert "azure.monitor" not in loaded


# --------------------------------------------------------------------------- end to end through the local host


class Ingestion:
    """A local stand-in for the Application Insights ingestion endpoint: it keeps every envelope posted to it."""

    def __init__(self) -> None:
        self.envelopes: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                text = body.decode("utf-8", "replace")
                owner.envelopes.extend(text.splitlines() if not text.lstrip().startswith("[") else
                                       [json.dumps(item) for item in json.loads(text)])
                answer = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def mentioning(self, *needles: str) -> list[str]:
        return [e for e in list(self.envelopes) if all(n in e for n in needles)]


@pytest.fixture
def ingestion() -> Iterator[Ingestion]:
    running = Ingestion()
    yield running
    running.server.shutdown()


def test_the_azure_monitor_exporter_delivers_the_files_span_through_the_local_host(
    azurite: Azurite, service: BlobServiceClient, ingestion: Ingestion, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    env = {k: v for k, v in app_free_env().items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_"))}
    env.update({
        STORAGE_CONNECTION: azurite.connection_string, "AzureWebJobsStorage": azurite.connection_string,
        "RECOMPRESS_INPUT_CONTAINER": f"tel-in-{suffix}", "RECOMPRESS_OUTPUT_CONTAINER": f"tel-out-{suffix}",
        telemetry.APPINSIGHTS: ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                                f"IngestionEndpoint={ingestion.url};LiveEndpoint={ingestion.url}"),
        # Export within a moment instead of every 5 s / 60 s, and nothing to Microsoft's own statsbeat endpoint.
        "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        # The distro keeps 5 traces a second by default, and the local host's event pump polls storage
        # (each poll a trace of its own) faster than that: keep every trace so the file's is certain to be sent.
        "OTEL_TRACES_SAMPLER": "always_on",
    })
    for role in ("in", "out"):
        service.create_container(f"tel-{role}-{suffix}")
    port = free_port()
    log = tmp_path / "devhost.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--no-azurite", "--func", "never", "--port", str(port), "--poll", "0.1"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() or ("ready:" in log.read_text() or None), "the local host", timeout=60)
        assert process.poll() is None, log.read_text()
        data = parquet_bytes(sample_table(200))
        service.get_blob_client(f"tel-in-{suffix}", "watched/upload.parquet").upload_blob(data)

        spans = wait_for(lambda: ingestion.mentioning("recompress ", "watched/upload.parquet",
                                                      telemetry.ATTR_BYTES_OUT) or None,
                         "the file's span at the ingestion endpoint", timeout=60)
        metrics = wait_for(lambda: ingestion.mentioning("recompress.bytes_in") or None,
                           "the recompress.bytes_in metric", timeout=60)
    finally:
        process.terminate()
        process.wait(timeout=30)

    span = json.loads(spans[0])["data"]["baseData"]
    assert span["name"] == f"recompress tel-in-{suffix}/watched/upload.parquet"
    assert span["properties"][telemetry.ATTR_BYTES_IN] == str(len(data))
    assert int(span["properties"][telemetry.ATTR_BYTES_OUT]) > 0
    assert metrics
    key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    leaked = [e for e in ingestion.envelopes if key in e or "AccountKey" in e or "sig=" in e]
    assert leaked == []

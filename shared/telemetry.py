"""OpenTelemetry traces, metrics and logs for each file: off unless configured, and free when off.

Why: operators ask whether the app keeps up, what failed and why, and how
many bytes it saved; log lines alone answer that badly. This module turns each
file's run into one span (with ``read``, ``recompress`` and ``commit``
children) and a handful of metrics, exported to Application Insights
(``APPLICATIONINSIGHTS_CONNECTION_STRING``, through ``azure-monitor-opentelemetry``)
or to any OTLP backend (``OTEL_EXPORTER_OTLP_ENDPOINT``).

What it must never do:

- import anything of OpenTelemetry when neither setting is present: every
  OpenTelemetry import below sits inside a function that only runs once
  :func:`configure` found a destination (a test checks ``sys.modules``);
- put a secret on a span, metric or log: attributes come from the
  :class:`~shared.report.Report` and the errors' one-line messages (which
  :mod:`shared.errors` keeps free of secrets), never from a connection string,
  URL or SDK exception text;
- configure OpenTelemetry twice: with ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``
  the Functions Python worker has already called ``configure_azure_monitor()``,
  so the app only uses the global providers it set;
- change what a run does: telemetry only observes, and a file's outcome is
  the same with it on or off.

The engines prove their output as they write it (exact mode checks footer,
offsets and row totals at its end; re-encode compares every batch as it
goes), so there is no separate ``proof`` span: the proof is part of the
``recompress`` span, and the proof kind is its ``recompress.proof`` attribute.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from shared.errors import RecompressError
from shared.report import Report, log, printable

if TYPE_CHECKING:  # the types only: importing them at run time would load OpenTelemetry
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

P = ParamSpec("P")
R = TypeVar("R")

#: The standard switches; the app adds no setting of its own for telemetry.
APPINSIGHTS = "APPLICATIONINSIGHTS_CONNECTION_STRING"
OTLP = "OTEL_EXPORTER_OTLP_ENDPOINT"
#: Set on the Function App, the Python worker configures the Azure Monitor distro itself, before our code runs.
WORKER_APPINSIGHTS = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
SERVICE_NAME = "parquet-recompress"
SCOPE = "recompress"

#: Span and metric attribute names (OpenTelemetry style: a namespace, then snake_case).
ATTR_SOURCE = "recompress.source"
ATTR_OUTPUT = "recompress.output"
ATTR_ETAG = "recompress.source.etag"
ATTR_STATUS = "recompress.status"
ATTR_MODE = "recompress.mode"
ATTR_MODE_REASON = "recompress.mode_reason"
ATTR_PROOF = "recompress.proof"
ATTR_ROWS = "recompress.rows"
ATTR_BYTES_IN = "recompress.bytes_in"
ATTR_BYTES_OUT = "recompress.bytes_out"
ATTR_RATIO = "recompress.ratio"
ATTR_LEVEL = "recompress.zstd_level"
ATTR_ERROR = "recompress.error"
ATTR_DETAIL = "recompress.detail"
#: Metric dimensions: few values each, so they stay cheap to store.
DIM_STATUS = "status"
DIM_MODE = "mode"
#: The status of a file whose run raised (storage trouble, a bug): the host retries it.
FAILED = "failed"


@dataclass
class _Instruments:
    """The metric instruments, made once per configuration."""

    files: Any
    bytes_in: Any
    bytes_out: Any
    bytes_saved: Any
    duration: Any
    ratio: Any
    in_flight: Any


@dataclass
class _Active:
    """What a configured process holds: its tracer, its instruments and where they export."""

    destination: str
    tracer: Any
    instruments: _Instruments


_active: _Active | None = None
_configured = False
_lock = threading.Lock()
#: The file span of this thread's (or task's) current run, so nested entry points open only one.
_file: ContextVar[_File | None] = ContextVar("recompress_file", default=None)
#: True while a context taken from a request or message (not from the host) is attached.
_remote_parent: ContextVar[bool] = ContextVar("recompress_remote_parent", default=False)


# --------------------------------------------------------------------------- switching on


def destination(env: Mapping[str, str] | None = None) -> str | None:
    """Where telemetry would go under ``env``: ``azure-monitor``, ``otlp``, or None (off)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get(APPINSIGHTS, "").strip():
        return "azure-monitor"
    if env.get(OTLP, "").strip():
        return "otlp"
    return None


def configure(env: Mapping[str, str] | None = None) -> str | None:
    """Set telemetry up once per process, from the standard settings; returns the destination or None.

    Called by the entry point that owns the process (``function_app._settings``),
    never on import. With neither setting present this returns before any
    OpenTelemetry import, so an unconfigured run pays nothing.
    """
    global _configured
    with _lock:
        if _configured:
            return _active.destination if _active else None
        _configured = True
        env = os.environ if env is None else env
        where = destination(env)
        if where is None:
            return None
        try:
            _install(where, env)
        except Exception as exc:  # telemetry must never stop the app from working
            log.warning("telemetry to %s could not be set up (%s); running without it", where, type(exc).__name__)
            return None
        log.info("telemetry: exporting traces, metrics and logs to %s", _active.destination if _active else where)
        return where


def _install(where: str, env: Mapping[str, str]) -> None:
    if where == "azure-monitor":
        if env.get(WORKER_APPINSIGHTS, "").strip().lower() == "true":
            where = "azure-monitor (configured by the Functions worker)"  # already done: only use its providers
        else:
            _configure_azure_monitor(env)
    else:
        _configure_otlp(env)
    from opentelemetry import metrics, trace

    use(trace.get_tracer_provider(), metrics.get_meter_provider(), where)


def _resource(env: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.resources import Resource

    # OTEL_SERVICE_NAME, when set, names the service; otherwise the app's own name does.
    return Resource.create({} if env.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME})


def _configure_azure_monitor(env: Mapping[str, str]) -> None:
    import logging

    from azure.monitor.opentelemetry import configure_azure_monitor

    # The distro reads the connection string from the environment itself; it is never copied anywhere else.
    configure_azure_monitor(logger_name=log.name, resource=_resource(env))
    logging.getLogger("azure.monitor.opentelemetry").setLevel(logging.WARNING)  # not a line per export


def _configure_otlp(env: Mapping[str, str]) -> None:
    """Traces, metrics and the app's logs to OTLP over HTTP; the exporters read the standard OTEL_* variables."""
    import logging

    from opentelemetry import _logs, metrics, trace
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = _resource(env)
    tracer_provider = SdkTracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(SdkMeterProvider(resource=resource,
                                                metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    _logs.set_logger_provider(logger_provider)
    logging.getLogger(log.name).addHandler(LoggingHandler(logger_provider=logger_provider))


def use(tracer_provider: TracerProvider, meter_provider: MeterProvider, where: str = "given providers") -> None:
    """Record through these providers from now on (tests pass the SDK's in-memory ones)."""
    global _active, _configured
    tracer = tracer_provider.get_tracer(SCOPE)
    meter = meter_provider.get_meter(SCOPE)
    instruments = _Instruments(
        files=meter.create_counter("recompress.files", unit="{file}",
                                   description="Files handled, by outcome (status) and mode"),
        bytes_in=meter.create_counter("recompress.bytes_in", unit="By",
                                      description="Bytes of the inputs that were rewritten"),
        bytes_out=meter.create_counter("recompress.bytes_out", unit="By",
                                       description="Bytes of the outputs written"),
        # An up-down counter: a file that does not shrink saves a negative number of bytes.
        bytes_saved=meter.create_up_down_counter("recompress.bytes_saved", unit="By",
                                                 description="Input bytes minus output bytes of rewritten files"),
        duration=meter.create_histogram("recompress.duration", unit="s",
                                        description="Time from a file's arrival in the app to its outcome"),
        ratio=meter.create_histogram("recompress.ratio", unit="1",
                                     description="Output size over input size of rewritten files"),
        in_flight=meter.create_up_down_counter("recompress.in_flight", unit="{file}",
                                               description="Files being processed now"),
    )
    _active = _Active(where, tracer, instruments)
    _configured = True
    if not any(isinstance(f, _TraceIdFilter) for f in log.filters):
        log.addFilter(_TraceIdFilter())


def reset() -> None:
    """Back to unconfigured and off (tests only; providers set globally stay set)."""
    global _active, _configured
    _active, _configured = None, False
    for found in [f for f in log.filters if isinstance(f, _TraceIdFilter)]:
        log.removeFilter(found)


def enabled() -> bool:
    return _active is not None


# --------------------------------------------------------------------------- one span per file


class _File:
    """The span of one file's run, and the numbers its metrics need when it ends."""

    def __init__(self, span: Span, active: _Active) -> None:
        self.span = span
        self.active = active
        self.started = time.perf_counter()
        self.report: Report | None = None

    def finish(self, report: Report) -> None:
        self.report = report
        self.span.set_attributes(report_attributes(report))
        if report.error is not None:
            _mark_failed(self.span, report.error)

    def record_metrics(self, failed: bool) -> None:
        ins, report = self.active.instruments, self.report
        status = FAILED if failed or report is None else report.status
        dims = {DIM_STATUS: status, DIM_MODE: (report.mode if report is not None else None) or "none"}
        ins.files.add(1, dims)
        ins.duration.record(time.perf_counter() - self.started, dims)
        if report is not None and report.status == "written" and not failed:
            ins.bytes_in.add(report.bytes_in, {DIM_MODE: dims[DIM_MODE]})
            ins.bytes_out.add(report.bytes_out, {DIM_MODE: dims[DIM_MODE]})
            ins.bytes_saved.add(report.bytes_in - report.bytes_out, {DIM_MODE: dims[DIM_MODE]})
            ins.ratio.record(report.ratio, {DIM_MODE: dims[DIM_MODE]})


def report_attributes(report: Report) -> dict[str, str | int | float]:
    """A report as span attributes: its numbers and words, nothing else (no URL, no setting)."""
    attributes: dict[str, str | int | float] = {
        ATTR_SOURCE: report.source, ATTR_OUTPUT: report.output, ATTR_STATUS: report.status,
        ATTR_ROWS: report.rows, ATTR_BYTES_IN: report.bytes_in, ATTR_BYTES_OUT: report.bytes_out,
        ATTR_RATIO: report.ratio, ATTR_LEVEL: report.level,
    }
    optional = {ATTR_MODE: report.mode, ATTR_MODE_REASON: report.mode_reason, ATTR_PROOF: report.proof,
                ATTR_ERROR: report.error, ATTR_DETAIL: report.detail}
    attributes.update({key: printable(value) for key, value in optional.items() if value is not None})
    return attributes


def traced_file(name_of: Callable[P, str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an entry point that handles one file and returns its Report: one span ``recompress <name>``.

    Nested entry points (the blob protocol calling ``pipeline.run``) share the
    outer span. When telemetry is off the wrapper calls straight through.
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def traced(*args: P.args, **kwargs: P.kwargs) -> R:
            active = _active
            if active is None or _file.get() is not None:
                return function(*args, **kwargs)
            with _file_span(active, name_of(*args, **kwargs)) as file:
                result = function(*args, **kwargs)
                if isinstance(result, Report):
                    file.finish(result)
                return result

        return traced

    return decorate


@contextmanager
def _file_span(active: _Active, name: str) -> Iterator[_File]:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    parent = trace.get_current_span().get_span_context()
    # A span with no parent in this process (or only a caller's traceparent) is where the operation starts.
    kind = SpanKind.SERVER if not parent.is_valid or _remote_parent.get() else SpanKind.INTERNAL
    active.instruments.in_flight.add(1)
    failed = False
    with active.tracer.start_as_current_span(f"recompress {printable(name)}", kind=kind, record_exception=False,
                                             set_status_on_exception=False) as span:
        file = _File(span, active)
        token = _file.set(file)
        try:
            yield file
        except BaseException as exc:
            failed = True
            _record_error(span, exc)
            raise
        finally:
            _file.reset(token)
            active.instruments.in_flight.add(-1)
            file.record_metrics(failed)


def step(name: str, attributes: Mapping[str, str] | None = None) -> Any:
    """A child span of the current file's span (``read``, ``recompress``, ``commit``); nothing when off."""
    if _active is None or _file.get() is None:
        return nullcontext()
    return _step(_active, name, attributes or {})


@contextmanager
def _step(active: _Active, name: str, attributes: Mapping[str, str]) -> Iterator[None]:
    with active.tracer.start_as_current_span(name, attributes=attributes, record_exception=False,
                                             set_status_on_exception=False) as span:
        try:
            yield
        except BaseException as exc:
            _record_error(span, exc)
            raise


def annotate(attributes: Mapping[str, str | int | float]) -> None:
    """Add attributes to the current file's span (the source ETag, once the blob protocol knows it)."""
    file = _file.get()
    if file is not None:
        file.span.set_attributes({key: printable(v) if isinstance(v, str) else v for key, v in attributes.items()})


def one_line(exc: BaseException) -> str:
    """What an error may say on a span: the app's own one-line message, or only the type of anything else.

    The app's errors never format a secret (see :mod:`shared.errors`); an SDK's or
    the standard library's text might quote a URL or a key, so it is left out.
    """
    if isinstance(exc, RecompressError):
        return printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return f"{type(exc).__name__} (see the function logs)"


def _record_error(span: Span, exc: BaseException) -> None:
    message = one_line(exc)
    # An exception event without a stack trace: the type and the one line, which is all a span may carry.
    span.add_event("exception", {"exception.type": type(exc).__name__, "exception.message": message})
    _mark_failed(span, message)


def _mark_failed(span: Span, message: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(ATTR_ERROR, message)
    span.set_status(Status(StatusCode.ERROR, message))


# --------------------------------------------------------------------------- trace context in and out


@contextmanager
def _continued(carrier: Mapping[str, str]) -> Iterator[None]:
    from opentelemetry import context, propagate, trace

    lowered = {key.lower(): value for key, value in carrier.items()}
    extracted = propagate.extract(lowered)
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        yield
        return
    token = context.attach(extracted)
    remote = _remote_parent.set(True)
    try:
        yield
    finally:
        _remote_parent.reset(remote)
        context.detach(token)


def continued_from(carrier: Mapping[str, str]) -> Any:
    """Continue the trace a request or message carries (``traceparent``), unless the host's is already current.

    Under Azure Functions with ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`` or
    ``PYTHON_ENABLE_OPENTELEMETRY`` set, the worker attaches the host's
    invocation context before the function runs, and the host's span already
    continues the caller's ``traceparent``; elsewhere (the local host) the
    request's own header is the parent. A queue consumer passes its message's
    properties here.
    """
    if _active is None:
        return nullcontext()
    from opentelemetry import trace

    if trace.get_current_span().get_span_context().is_valid:
        return nullcontext()
    return _continued(carrier)


def inject(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as ``traceparent``/``tracestate`` entries, for a message the app sends on."""
    carrier = {} if carrier is None else carrier
    if _active is not None:
        from opentelemetry import propagate

        propagate.inject(carrier)
    return carrier


# --------------------------------------------------------------------------- logs lead to traces


class _TraceIdFilter:
    """Appends ``[trace <id>]`` to the app's lines logged inside a span, so a log line leads to its trace."""

    def filter(self, record: Any) -> bool:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid and context.trace_flags.sampled:
            record.msg, record.args = f"{record.getMessage()} [trace {context.trace_id:032x}]", ()
        return True

"""Helpers for tests: make Parquet files and compare them, run the app, wait for things.

Fixtures live in ``conftest.py``; the corpus of damaged files in ``damaged.py``.
No test module imports another: what two of them share is here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

import azure.functions as func
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.events import EventPump, Subscription
from shared.settings import STORAGE_CONNECTION

ROOT = Path(__file__).resolve().parents[1]
SRC_ROWS = 1000  # the rows of the ``src`` fixture's file
T = TypeVar("T")


def noisy_table(rows: int, seed: int = 1) -> pa.Table:
    """Random data that compresses poorly, so outputs span many blocks even when small."""
    rng = np.random.default_rng(seed)
    return pa.table({"id": pa.array(range(rows), pa.int64()), "noise": rng.random(rows),
                     "bits": rng.integers(0, 2**62, rows)})


def parquet_bytes(table: pa.Table, **options: object) -> bytes:
    """Serialise ``table`` as Parquet in memory (snappy unless told otherwise)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **{"compression": "snappy", **options})
    return bytes(sink.getvalue().to_pybytes())


def sample_table(rows: int = 1000) -> pa.Table:
    """A small mixed table with nulls, a timezone and metadata: the common case."""
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "maybe": pa.array([None if i % 3 == 0 else i for i in range(rows)], pa.int64()),
            "name": pa.array([f"name-{i % 17}" for i in range(rows)]),
            "at": pa.array(range(rows), pa.timestamp("us", tz="UTC")),
            "x": pa.array([i / 7 for i in range(rows)], pa.float64()),
        },
        metadata={"origin": "tests"},
    )


def assert_same_data(original: bytes | Path | pa.Table, rewritten: bytes | Path) -> None:
    """Schema, key-value metadata and every value equal (NaN equal to NaN)."""
    want = original if isinstance(original, pa.Table) else _read(original)
    got = _read(rewritten)
    assert got.schema.equals(want.schema, check_metadata=True), f"{got.schema}\n!=\n{want.schema}"
    assert got.num_rows == want.num_rows
    for name in want.column_names:
        if not got[name].equals(want[name]):  # Arrow's equals counts NaN != NaN: look closer
            assert _nan_safe(got[name].to_pylist()) == _nan_safe(want[name].to_pylist()), f"column {name} differs"


def _nan_safe(value: Any) -> Any:
    """Replace NaN with a marker so Python equality treats NaN as equal to NaN."""
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, list | tuple):
        return [_nan_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_safe(v) for k, v in value.items()}
    return value


def _read(data: bytes | Path) -> pa.Table:
    source = pa.BufferReader(data) if isinstance(data, bytes) else str(data)
    return pq.read_table(source)


def codec_of(data: bytes) -> set[str]:
    """Every column chunk's codec in a Parquet file."""
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    return {
        meta.row_group(r).column(c).compression
        for r in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    }



# --------------------------------------------------------------------------- waiting


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll until ``check`` returns something other than None, or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- running the app as a process


def app_free_env(*extra: dict[str, str]) -> dict[str, str]:
    """This environment without any app setting that could change a run, plus ``extra``.

    ``PYTHONPATH`` points at the project, so a child imports this checkout whatever its working folder.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMPRESS_", STORAGE_CONNECTION))}
    merged = {**clean, "PYTHONPATH": str(ROOT)}
    for more in extra:
        merged.update(more)
    return merged


@dataclass(frozen=True)
class Result:
    """How a run of the command line ended: exit status, stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


#: How a test calls the command line in-process (the ``run_cli`` fixture): ``run_cli(SRC, DST, *options)``.
RunCli = Callable[..., Result]
#: Writes Python source into a fresh importable module and returns its name (the ``write_module`` fixture).
WriteModule = Callable[[str], str]


def run_cli_process(*argv: str | Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Result:
    """``python -m shared recompress ARGV`` as a real process, the way a person runs it."""
    done = subprocess.run([sys.executable, "-m", "shared", "recompress", *map(str, argv)], cwd=cwd,
                          env=app_free_env() if env is None else env, capture_output=True, text=True, timeout=120,
                          check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def partial_files(root: Path) -> list[Path]:
    """Every ``*.partial`` temp file below ``root``."""
    return sorted(root.rglob("*.partial"))


# A fresh, small interpreter starts the measured command and waits for it with wait4: Linux carries the
# peak RSS of a forking parent over into its child's ru_maxrss, so a command started straight from the
# (big) test process would report the test's own size. The command keeps the launcher's stdin, stdout and
# stderr; the launcher adds one JSON line to stderr when it ends, and exits 0 only when the command did.
_LAUNCHER = """
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.stderr.write("\\n" + json.dumps({"launcher": {"code": code, "peak_kib": usage.ru_maxrss}}) + "\\n")
sys.exit(0 if code == 0 else 1)
"""


def launcher(*argv: str) -> list[str]:
    """``argv`` wrapped in the measuring launcher (see above)."""
    return [sys.executable, "-c", _LAUNCHER, *argv]


@dataclass(frozen=True)
class Measured:
    code: int
    peak_kib: int
    stdout: str
    stderr: str  # the command's own, without the launcher's line


def measure_peak(argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> Measured:
    """Run ``argv`` to completion; its exit status, output and own peak RSS in KiB, as the kernel counted it."""
    done = subprocess.run(launcher(*argv), env=env, cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=300)
    own, _, last = done.stderr.rstrip("\n").rpartition("\n")
    report = json.loads(last)["launcher"]
    return Measured(int(report["code"]), int(report["peak_kib"]), done.stdout, own)


# --------------------------------------------------------------------------- a sandbox for crashing inputs


_WORKER = r"""
import faulthandler, json, resource, signal, struct, sys, traceback
faulthandler.enable()
import pyarrow as pa
import pyarrow.parquet as pq
from shared import pipeline
from shared.errors import InputError, RecompressError
from shared.settings import Settings

SETTINGS = Settings.from_env()
LIMIT = float(sys.argv[1])
timed_out = False


def alarm(signum, frame):
    global timed_out
    timed_out = True
    raise TimeoutError(f"one example took over {LIMIT:g} s")


signal.signal(signal.SIGALRM, alarm)


def examine(body):
    result = recompress(body)
    try:
        source = pq.read_table(pa.BufferReader(body))
    except Exception:
        source = None
    result["pyarrow_rows"] = None if source is None else source.num_rows
    if result["outcome"] == "written":
        result["input_invalid"] = None if source is None else invalid(source)
    return result


def recompress(body):
    try:
        out, report = pipeline.recompress_bytes(body, SETTINGS, name=sys.argv[2])
    except RecompressError as exc:
        return {"outcome": "refused", "kind": type(exc).__name__, "input_error": isinstance(exc, InputError),
                "message": str(exc)}
    except Exception as exc:
        return {"outcome": "raised", "kind": type(exc).__name__, "message": traceback.format_exc()[-3000:]}
    try:
        written = pq.ParquetFile(pa.BufferReader(out))
        table = written.read()
        meta = written.metadata
        codecs = sorted({meta.row_group(r).column(c).compression
                         for r in range(meta.num_row_groups) for c in range(meta.num_columns)})
    except Exception as exc:
        return {"outcome": "bad-output", "kind": type(exc).__name__, "message": str(exc)}
    return {"outcome": "written", "rows": report.rows, "output_rows": table.num_rows, "codecs": codecs,
            "output_invalid": invalid(table)}


def invalid(table):
    try:
        table.validate(full=True)
    except Exception as exc:
        return str(exc)
    return None


source, sink = sys.stdin.buffer, sys.stdout
while True:
    head = source.read(8)
    if len(head) < 8:
        break
    body = source.read(struct.unpack("<Q", head)[0])
    timed_out = False
    signal.setitimer(signal.ITIMER_REAL, LIMIT)
    try:
        result = examine(body)
    except TimeoutError:
        result = {}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if timed_out:
        result = {"outcome": "timeout", "message": f"took over {LIMIT:g} s"}
    result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sink.write(json.dumps(result) + "\n")
    sink.flush()
"""


class _Backstop(Exception):
    """The parent's watchdog fired: the worker did not answer at all."""


def _backstop(signum: int, frame: FrameType | None) -> None:
    raise _Backstop


class Worker:
    """One long-lived process that runs inputs through ``pipeline.recompress_bytes`` and pyarrow's reader.

    Some crafted bytes make pyarrow abort or segfault the whole process; in the test process that would
    end the session instead of failing one test. The worker takes one input after another over a pipe and
    answers each with a JSON verdict (``outcome``: written, refused, raised, bad-output or timeout, and
    ``pyarrow_rows``, what ``pq.read_table`` reads, or None), so no interpreter is started per input. When
    it dies the verdict is ``{"outcome": "died", "stderr": ...}`` for that input alone, and the next input
    starts a fresh worker. It is started through the measuring launcher, so its ``maxrss_kib`` counts only
    itself. ``env`` holds the app settings it runs with.
    """

    EXAMPLE_SECONDS = 10  # the worker's own watchdog, per input
    BACKSTOP_SECONDS = 30  # this process's watchdog, for a worker stuck where Python signals cannot reach
    NAME = "fuzz.parquet"  # the name the worker's error messages give the input

    def __init__(self, stderr_path: Path, env: dict[str, str] | None = None) -> None:
        self._stderr_path = stderr_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._env = app_free_env(env or {})

    def run(self, body: bytes) -> dict[str, Any]:
        """The worker's verdict on ``body``."""
        proc = self._proc or self._start()
        assert proc.stdin is not None
        assert proc.stdout is not None
        previous = signal.signal(signal.SIGALRM, _backstop)
        signal.setitimer(signal.ITIMER_REAL, self.BACKSTOP_SECONDS)
        try:
            proc.stdin.write(struct.pack("<Q", len(body)) + body)
            proc.stdin.flush()
            line = proc.stdout.readline()
        except BrokenPipeError:
            line = b""
        except _Backstop:
            self.stop()
            raise TimeoutError(f"the worker gave no answer in {self.BACKSTOP_SECONDS} s") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if line:
            return dict(json.loads(line))
        self.stop()
        return {"outcome": "died", "stderr": self._stderr_path.read_text(errors="replace")[-4000:]}

    def stop(self) -> None:
        if self._proc is not None:
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=30)
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _start(self) -> subprocess.Popen[bytes]:
        self._stderr = self._stderr_path.open("wb")
        self._proc = subprocess.Popen(
            launcher(sys.executable, "-c", _WORKER, str(self.EXAMPLE_SECONDS), self.NAME),
            cwd=ROOT, env=self._env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            start_new_session=True,  # so stop() can kill the launcher and the worker together
        )
        return self._proc


# --------------------------------------------------------------------------- the event pump's webhooks


class Recorder:
    """A webhook that records what it is sent; ``fail_first`` answers 500 that many times first.

    ``posted`` is set once it has accepted an event, ``refused`` counts the 500s it answered.
    """

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], Any]] = []
        self.fail_first = fail_first
        self.refused = 0
        self.posted = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if recorder.fail_first > 0:
                    recorder.fail_first -= 1
                    recorder.refused += 1
                    self.send_response(500)
                else:
                    recorder.received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if recorder.received:
                    recorder.posted.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()  # quick shutdown()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/runtime/webhooks/blobs?functionName=Host.Functions.f"


def pump_for(service: BlobServiceClient, container: ContainerClient, url: str) -> EventPump:
    pump = EventPump(service, [Subscription("f", container.container_name, url)], interval=0.05)
    pump.snapshot()
    return pump


def no_wait(attempts: list[int]) -> Callable[[int], float]:
    """A backoff that records the attempts it follows and waits not at all."""

    def backoff(attempt: int) -> float:
        attempts.append(attempt)
        return 0.0

    return backoff


@dataclass
class FlakyRig:
    """A webhook that fails its first posts, a pump with three attempts aimed at it, and the backoffs taken."""

    webhook: Recorder
    pump: EventPump
    waited: list[int]



# --------------------------------------------------------------------------- a small app for the local host

BlobCalls = list[object]


def make_app(calls: BlobCalls) -> func.FunctionApp:
    """An app with one HTTP route (``GET items/{id}``) and one blob trigger (``landing/{name}``) that records
    each blob client it is called with into ``calls``."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="items/{id}", methods=["GET"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({"id": req.route_params["id"], "q": req.params.get("q")}),
                                 mimetype="application/json")

    @app.blob_trigger(arg_name="client", path="landing/{name}", connection="Store", source=func.BlobSource.EVENT_GRID)
    def landed(client: object) -> None:
        calls.append(client)

    return app


# --------------------------------------------------------------------------- the local host over HTTP

HOST_BODY_LIMIT = 2 * 1024 * 1024  # the ``host`` fixture's RECOMPRESS_MAX_BODY_SIZE
HOST_CLIENT_TIMEOUT = 2  # seconds the ``host`` fixture's server keeps an idle connection
HOST_QUEUE_LEASE = 3  # seconds a queue message the ``host`` fixture received stays hidden before renewal


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunningHost:
    """The local host of `make run`, as the ``host`` fixture started it."""

    url: str
    log: Path
    input: ContainerClient
    output: ContainerClient
    quarantine: ContainerClient
    #: The app settings it runs with (storage, containers, the backfill's queues and table).
    env: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Response:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    def output_blob(self, name: str) -> bytes | None:
        try:
            return bytes(self.output.get_blob_client(name).download_blob().readall())
        except ResourceNotFoundError:
            return None

    def log_line(self, needle: str) -> str | None:
        return next((line for line in self.log.read_text().splitlines() if needle in line), None)


def zigzag_bytes(value: int) -> bytes:
    """A Thrift compact zigzag varint, unchecked: tests use it to write values the app's writer refuses."""
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)

"""A fault-injecting HTTP proxy for tests: it sits on loopback in front of Azurite.

Each :class:`Fault` picks requests (by method and a part of the URL, e.g.
``comp=block`` for Put Block, ``comp=blocklist`` for Put Block List) and does
something bad to the first ``times`` of them: answer with an error status,
wait, drop the connection before or after forwarding, or cut the response
body short. Everything else is forwarded untouched, so the storage behind it
is real.

A ``hold`` fault keeps the request until the test releases it: the test waits
for :meth:`Fault.wait_held` (the request has arrived and is held), does what it
must while the run stands still, then calls :meth:`Fault.release`; the request
is then forwarded, and :attr:`Fault.answered` is set once the client has its
answer. No test waits on the clock for any of this.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Action = Literal["status", "delay", "hold", "reset-before", "reset-after", "truncate"]

#: The longest a ``hold`` keeps a request when nobody releases it (a test that failed before releasing).
HOLD_LIMIT_SECONDS = 120.0


@dataclass
class Fault:
    """Do ``action`` to the first ``times`` requests that match ``method`` and ``url_part``."""

    method: str
    url_part: str
    action: Action
    times: int = 1
    status: int = 503
    seconds: float = 0.0
    hits: int = 0
    #: Requests that must match before the fault starts (e.g. fail the third block, not the first).
    skip: int = 0
    #: For ``hold``: set when a request is held, when the test releases it, and when its answer is sent.
    held: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    released: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    answered: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.url_part in path

    def fresh(self) -> Fault:
        """An unused copy: no hits, nothing held (a table's faults are templates for each run)."""
        return Fault(self.method, self.url_part, self.action, self.times, self.status, self.seconds, skip=self.skip)

    def wait_held(self, worker: threading.Thread, timeout: float = 60.0) -> None:
        """Return once a request is held; fail if ``worker`` (the run under test) ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while not self.held.wait(0.02):
            assert worker.is_alive(), "the run ended before the fault held it"
            assert time.monotonic() < deadline, f"no request was held within {timeout:.0f} s"

    def release(self) -> None:
        self.released.set()


@dataclass
class FaultProxy:
    """The proxy; ``faults`` may be changed between (not during) runs."""

    upstream_port: int
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, at every test's teardown.
        threading.Thread(target=self.server.serve_forever, args=(0.02,), name="fault-proxy", daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        for fault in self.faults:
            fault.release()  # a held request must not outlive the test
        self.server.shutdown()
        self.server.server_close()

    def pick(self, method: str, path: str) -> Fault | None:
        """The fault to apply to this request, counting it as used."""
        with self._lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    if fault.hits < fault.times:
                        fault.hits += 1
                        return fault
            return None

    @property
    def injected(self) -> int:
        return sum(f.hits for f in self.faults)


class _QuietServer(ThreadingHTTPServer):
    """Dropped connections are the point here, not news worth a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy.pick(self.command, self.path)
            try:
                self._apply(fault, body)
            finally:
                if fault is not None:
                    fault.answered.set()

        def _apply(self, fault: Fault | None, body: bytes) -> None:
            if fault is not None and fault.action == "status":
                self._answer(fault.status, b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code>"
                                           b"<Message>Injected fault.</Message></Error>")
                return
            if fault is not None and fault.action == "delay":
                time.sleep(fault.seconds)
            if fault is not None and fault.action == "hold":
                fault.held.set()
                fault.released.wait(HOLD_LIMIT_SECONDS)
            if fault is not None and fault.action == "reset-before":
                self._reset()
                return
            status, headers, payload = self._forward(body)
            if fault is not None and fault.action == "reset-after":
                self._reset()  # the storage did the work; the client never hears of it
                return
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            upstream_length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
            # A HEAD answer has no body but must keep the blob's length: the SDK reads the size from it.
            self.send_header("Content-Length", upstream_length if self.command == "HEAD" else str(len(payload)))
            self.end_headers()
            if fault is not None and fault.action == "truncate":
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self._reset()
                return
            self.wfile.write(payload)

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            connection = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"127.0.0.1:{proxy.upstream_port}"
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            except OSError:
                return 503, [], b""
            finally:
                connection.close()

        def _answer(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _reset(self) -> None:
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _relay

        def log_message(self, *args: object) -> None:
            pass

    return Handler

"""The local host's HTTP server: waitress, with the app's body limit and JSON errors.

waitress parses requests on one I/O thread (asyncore) and hands each complete
request to a pool of worker threads, so a slow or idle client costs a socket,
not a thread, and is closed once idle for ``channel_timeout``. Two of its
hooks are specialised here, both documented class attributes of its channel:

* ``parser_class``: the body limit is the app's ``RECOMPRESS_MAX_BODY_SIZE``
  counted as the app counts it, in body bytes: a declared ``Content-Length``
  over it is refused as soon as the headers are in, a chunked body as soon as
  its decoded bytes pass it. Either way the rest is never read.
* ``error_task_class``: what waitress answers by itself (413, 400 for a
  malformed request, 500) comes in the app's JSON error shape, the 413 with
  the very message the app gives (``shared.errors.body_too_large``).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import create_server
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from shared.errors import body_too_large

#: Connections the kernel queues for the server before it accepts them.
BACKLOG = 1024
#: waitress's own cap, a backstop well above the app's limit: the parser below enforces that one exactly.
_WIRE_SLACK = 1024 * 1024
#: After an error answer (a 413, say), how long and how much of the rest of the body is read and dropped
#: before the connection closes. A client that sends its whole body before it reads (urllib, requests)
#: would otherwise get a connection reset instead of the answer: the kernel resets a connection closed
#: with unread data. What is read is discarded, so memory stays flat (nginx's "lingering close").
LINGER_SECONDS = 10.0
LINGER_BYTES = 64 * 1024 * 1024


def _channel_class(limit: int) -> type[HTTPChannel]:
    """waitress's channel with a parser that enforces ``limit`` and an error task that answers JSON."""

    class Parser(HTTPRequestParser):
        """waitress's parser, refusing a body over ``limit`` bytes before reading the rest of it."""

        def received(self, data: bytes) -> int:
            consumed = int(super().received(data))
            if self.error is None and self.headers_finished:
                size = len(self.body_rcv) if self.chunked and self.body_rcv is not None else self.content_length
                if size > limit:
                    self.error, self.completed = RequestEntityTooLarge(f"over {limit} bytes"), True
            return consumed

    class JsonErrorTask(ErrorTask):
        """waitress's own answers (413, 400, 500) as ``{"error": ..., "kind": ...}``; the connection then closes."""

        def execute(self) -> None:
            request: Any = self.request  # the stubs type it as the error; it is the parser holding one
            error = request.error
            if isinstance(error, RequestEntityTooLarge):
                size = None if request.chunked else int(request.content_length)
                payload = {"error": body_too_large(size, limit), "kind": "PayloadTooLarge"}
            else:
                payload = {"error": f"{error.reason}: {error.body}", "kind": str(error.reason).replace(" ", "")}
            body = json.dumps(payload).encode()
            self.status = f"{error.code} {error.reason}"
            self.response_headers = [*self.response_headers, ("Content-Type", "application/json")]
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)
            channel: Any = self.channel
            channel.linger = True

    class Channel(HTTPChannel):
        """waitress's channel, with the parser and error task above, and a lingering close after an error."""

        parser_class = Parser
        error_task_class = JsonErrorTask
        linger = False
        _until: float | None = None  # lingering until then (monotonic), when not None
        _dropped = 0

        def handle_close(self) -> None:
            if self.linger and self._until is None and self.connected and self.socket is not None:
                try:
                    self.socket.shutdown(socket.SHUT_WR)  # the answer is out: the client sees it end
                except OSError:
                    super().handle_close()
                    return
                self._until, self.will_close, self.close_when_flushed = time.monotonic() + LINGER_SECONDS, False, False
                return
            super().handle_close()

        def readable(self) -> bool:
            if self._until is None:
                return bool(super().readable())
            if time.monotonic() > self._until:
                self.will_close = True  # handle_write closes it for good
                return False
            return True

        def writable(self) -> bool:
            return bool(self.will_close) if self._until is not None else bool(super().writable())

        def handle_read(self) -> None:
            if self._until is None:
                super().handle_read()
                return
            try:
                data = self.socket.recv(self.adj.recv_bytes) if self.socket is not None else b""
            except OSError:
                data = b""
            self._dropped += len(data)
            if not data or self._dropped > LINGER_BYTES:
                super().handle_close()

    return Channel


def serve_wsgi(app: Callable[..., Any], host: str, port: int, *, max_body: int, client_timeout: int,
               threads: int) -> Any:
    """A bound (not yet running) waitress server for ``app``; raises OSError when the port is taken."""
    server: Any = create_server(
        app, host=host, port=port, threads=threads, backlog=BACKLOG, ident="devhost",
        max_request_body_size=max_body + _WIRE_SLACK, channel_timeout=client_timeout,
        cleanup_interval=max(1, min(30, client_timeout // 2)), expose_tracebacks=False,
    )
    server.channel_class = _channel_class(max_body)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" under a burst is expected
    return server


def stop_wsgi(server: Any) -> None:
    """Close the listening socket and every connection, then stop the worker threads."""
    logging.getLogger("waitress").setLevel(logging.ERROR)  # closing live connections is not news
    while server._map:
        for channel in list(server._map.values()):
            channel.linger = False  # closing now, not after the client's last bytes
            channel.handle_close()
    server.task_dispatcher.shutdown(timeout=5)

"""A small stand-in for the Functions host, for machines without Core Tools.

It reads the triggers that ``function_app.app`` declares (routes, methods,
blob paths, connections), serves the HTTP routes under ``/api``, and accepts
Event Grid ``BlobCreated`` notifications on the host's own webhook path
(``/runtime/webhooks/blobs?functionName=Host.Functions.<name>``), handing the
blob-trigger function a real ``azure.storage.blob.BlobClient`` as the worker
does. It is a development aid, not a runtime: no keys, no scaling, no retries
beyond what the event pump does.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

import azure.functions as func
from azure.storage.blob import BlobClient

from devhost.server import serve_wsgi, stop_wsgi
from shared.settings import Connection, Settings
from shared.storage import StorageContext

log = logging.getLogger("devhost")

WEBHOOK_PATH = "/runtime/webhooks/blobs"
ROUTE_PREFIX = "/api"
#: Headers about the connection itself: the server sets them, never the function's response.
_HOP_BY_HOP = frozenset({"content-length", "connection", "transfer-encoding", "keep-alive"})


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: tuple[str, ...]
    pattern: re.Pattern[str]
    call: Callable[..., Any]
    arg_name: str


@dataclass(frozen=True)
class BlobFunction:
    name: str
    container: str
    blob_pattern: str
    connection: str
    call: Callable[..., Any]
    arg_name: str


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue: str
    connection: str
    call: Callable[..., Any]
    arg_name: str


class Functions(NamedTuple):
    """What an app declares, by trigger kind."""

    http: list[HttpFunction]
    blobs: list[BlobFunction]
    queues: list[QueueFunction]


def webhook_url(base: str, function: str) -> str:
    """Where the Functions host (and this one) takes Event Grid notifications for a blob trigger."""
    return f"{base}{WEBHOOK_PATH}?functionName=Host.Functions.{function}"


def _route_regex(route: str) -> re.Pattern[str]:
    """``items/{id}`` -> a regex with named groups; constraints like ``{id:int}`` are ignored."""
    parts = re.split(r"(\{[^}]+\})", route.strip("/"))
    regex = "".join(
        f"(?P<{p[1:-1].split(':')[0].rstrip('?')}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts
    )
    return re.compile(f"^{regex}$", re.IGNORECASE)


def discover(app: func.FunctionApp) -> Functions:
    """Read the app's functions and triggers the way the host's indexer does.

    Call it once per app: ``get_functions`` refuses to list the same app twice.
    """
    http: list[HttpFunction] = []
    blobs: list[BlobFunction] = []
    queues: list[QueueFunction] = []
    for function in app.get_functions():
        declared = function.get_trigger()
        if declared is None:
            continue
        trigger: dict[str, Any] = declared.get_dict_repr()
        name = str(function.get_function_name())
        call = function.get_user_function()
        if trigger["type"] == "httpTrigger":
            route = str(trigger.get("route") or name)
            methods = tuple(str(getattr(m, "value", m)).upper() for m in trigger.get("methods") or ["GET", "POST"])
            http.append(HttpFunction(name, route, methods, _route_regex(route), call, trigger["name"]))
        elif trigger["type"] == "blobTrigger":
            container, _, pattern = trigger["path"].partition("/")
            blobs.append(BlobFunction(name, container, pattern, trigger["connection"], call, trigger["name"]))
        elif trigger["type"] == "queueTrigger":
            queues.append(QueueFunction(name, trigger["queueName"], trigger["connection"], call, trigger["name"]))
    return Functions(http, blobs, queues)


@functools.cache
def _storage_for(connection: str) -> StorageContext:
    """One storage context per connection setting, resolved exactly as the app resolves its own."""
    return StorageContext(Settings(connection=Connection.from_env(os.environ, connection)))


def storage_for(connection: str) -> StorageContext:
    """The storage context of a trigger's connection setting (shared per process)."""
    return _storage_for(connection)


def blob_client_for(connection: str, container: str, blob: str) -> BlobClient:
    """The SDK client the worker would build from the trigger's connection setting."""
    return _storage_for(connection).blob(container, blob)


class LocalHost:
    """Serves one FunctionApp over HTTP on loopback, through waitress.

    waitress does the HTTP: it takes chunked bodies, refuses a body over ``max_body`` (413, in the app's
    JSON error shape) while it arrives rather than after, answers malformed requests with 400, keeps a
    listen backlog of ``BACKLOG``, closes connections idle for ``client_timeout`` seconds, and hands each
    complete request to a pool of ``threads`` threads, which call the app's functions.
    """

    def __init__(self, functions: Functions, port: int,
                 host: str = "127.0.0.1", *, max_body: int | None = None, client_timeout: int = 120,
                 threads: int = 16) -> None:
        self.http_functions, self.blob_functions = functions.http, functions.blobs
        self.host, self.port = host, port
        self.max_body = Settings().max_body_size if max_body is None else max_body
        self.client_timeout = client_timeout
        self.threads = threads
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind the port (OSError if it is taken) and serve in a background thread."""
        self._server = serve_wsgi(self.wsgi, self.host, self.port, max_body=self.max_body,
                                  client_timeout=self.client_timeout, threads=self.threads)
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="devhost-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        stop_wsgi(self._server)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The WSGI face of :meth:`handle_http` and :meth:`handle_events`."""
        method = str(environ["REQUEST_METHOD"]).upper()
        split = urlsplit(str(environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", ""))))
        query = str(environ.get("QUERY_STRING", ""))
        headers = _headers(environ)
        length = int(environ.get("CONTENT_LENGTH") or 0)  # waitress has checked it and read the body
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            if split.path.rstrip("/") == WEBHOOK_PATH and method == "POST":
                status, out, payload = self.handle_events(query, headers, body)
            elif split.path.startswith(ROUTE_PREFIX + "/") or split.path == ROUTE_PREFIX:
                status, out, payload = self.handle_http(method, split.path, query, headers, body)
            else:
                status, out, payload = _error(404, f"nothing at {split.path}")
        except Exception as exc:
            log.exception("function failed: %s %s", method, split.path)
            status, out, payload = _error(500, f"function failed: {type(exc).__name__}")
        response_headers = [(k, v) for k, v in out.items() if k.lower() not in _HOP_BY_HOP]
        response_headers.append(("Content-Length", str(len(payload))))
        start_response(f"{status} {HTTPStatus(status).phrase}", response_headers)
        return [] if method == "HEAD" else [payload]

    # ------------------------------------------------------------------ dispatch

    def handle_http(self, method: str, path: str, query: str, headers: dict[str, str],
                    body: bytes) -> tuple[int, dict[str, str], bytes]:
        route = path[len(ROUTE_PREFIX):].strip("/")
        matches = [(f, m) for f in self.http_functions if (m := f.pattern.match(route))]
        if not matches:
            return _error(404, f"no function serves {path}")
        allowed = [(f, m) for f, m in matches if method in f.methods]
        if not allowed:
            methods = sorted({x for f, _ in matches for x in f.methods})
            status, hdrs, payload = _error(405, f"{method} is not allowed on {path}; use {', '.join(methods)}")
            return status, {**hdrs, "Allow": ", ".join(methods)}, payload
        function, match = allowed[0]
        request = func.HttpRequest(
            method=method,
            url=f"{self.url}{path}" + (f"?{query}" if query else ""),
            headers=headers,
            params={k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()},
            route_params={k: unquote(v) for k, v in match.groupdict().items()},
            body=body,
        )
        response: func.HttpResponse = function.call(**{function.arg_name: request})
        out_headers = dict(response.headers)
        if response.mimetype:
            out_headers.setdefault("Content-Type", response.mimetype)
        return response.status_code, out_headers, response.get_body() or b""

    def handle_events(self, query: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        target = parse_qs(query).get("functionName", [""])[-1].removeprefix("Host.Functions.")
        function = next((f for f in self.blob_functions if f.name == target), None)
        if function is None:
            return _error(404, f"no blob-trigger function named {target!r}")
        try:
            events = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON")
        for event in events if isinstance(events, list) else [events]:
            if event.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent":
                code = event.get("data", {}).get("validationCode", "")
                return 200, {"Content-Type": "application/json"}, json.dumps({"validationResponse": code}).encode()
            if event.get("eventType") != "Microsoft.Storage.BlobCreated":
                continue
            container, blob = _blob_from_url(event.get("data", {}).get("url", ""))
            if container != function.container:
                continue
            client = blob_client_for(function.connection, container, blob)
            function.call(**{function.arg_name: client})
        return 202, {}, b""


def _blob_from_url(url: str) -> tuple[str, str]:
    """Container and blob name from a blob URL, path-style (Azurite) or host-style (Azure)."""
    parts = urlsplit(url)
    segments = parts.path.lstrip("/").split("/")
    if parts.hostname in ("127.0.0.1", "localhost") or (parts.port and parts.port != 443):
        segments = segments[1:]  # path-style: the account comes first
    return unquote(segments[0]), unquote("/".join(segments[1:]))


def _error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps({"error": message}).encode()


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers from a WSGI environ, with lower-case names as the worker gives them."""
    headers = {key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items()
               if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import azure.functions as func
from azure.storage.blob import BlobClient

from shared.settings import Connection, Settings
from shared.storage import StorageContext

log = logging.getLogger("devhost")

WEBHOOK_PATH = "/runtime/webhooks/blobs"
ROUTE_PREFIX = "/api"


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


def discover(app: func.FunctionApp) -> tuple[list[HttpFunction], list[BlobFunction]]:
    """Read the app's functions and triggers the way the host's indexer does.

    Call it once per app: ``get_functions`` refuses to list the same app twice.
    """
    http: list[HttpFunction] = []
    blobs: list[BlobFunction] = []
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
    return http, blobs


@functools.cache
def _storage_for(connection: str) -> StorageContext:
    """One storage context per connection setting, resolved exactly as the app resolves its own."""
    return StorageContext(Settings(connection=Connection.from_env(os.environ, connection)))


def blob_client_for(connection: str, container: str, blob: str) -> BlobClient:
    """The SDK client the worker would build from the trigger's connection setting."""
    return _storage_for(connection).blob(container, blob)


class LocalHost:
    """Serves one FunctionApp over HTTP on loopback."""

    def __init__(self, functions: tuple[list[HttpFunction], list[BlobFunction]], port: int,
                 host: str = "127.0.0.1") -> None:
        self.http_functions, self.blob_functions = functions
        self.server = ThreadingHTTPServer((host, port), _make_handler(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="devhost-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

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


def _make_handler(host: LocalHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "devhost"

        def _dispatch(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                if split.path.rstrip("/") == WEBHOOK_PATH and self.command == "POST":
                    status, out, payload = host.handle_events(split.query, headers, body)
                elif split.path.startswith(ROUTE_PREFIX + "/") or split.path == ROUTE_PREFIX:
                    status, out, payload = host.handle_http(self.command, split.path, split.query, headers, body)
                else:
                    status, out, payload = _error(404, f"nothing at {split.path}")
            except Exception as exc:
                log.exception("function failed: %s %s", self.command, split.path)
                status, out, payload = _error(500, f"function failed: {type(exc).__name__}")
            self.send_response(status)
            for key, value in out.items():
                if key.lower() not in ("content-length", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler

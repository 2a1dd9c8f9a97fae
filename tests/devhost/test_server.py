"""The local host's HTTP server under ordinary and careless clients, over real sockets.

Every test talks to the ``host`` fixture: ``python -m devhost`` as its own process, body limit
``HOST_BODY_LIMIT``, idle connections closed after ``HOST_CLIENT_TIMEOUT`` seconds.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from tests.helpers import HOST_BODY_LIMIT, RunningHost, assert_same_data, parquet_bytes, sample_table

#: How long a test waits for an answer that should come at once; a server that hangs fails the test here.
ANSWER_DEADLINE = 30.0


def too_large(size: str) -> str:
    return (f"request body: {size} is over the {HOST_BODY_LIMIT}-byte limit (RECOMPRESS_MAX_BODY_SIZE); "
            "upload the file to the input container instead")


def connect(host: RunningHost) -> socket.socket:
    address = urlsplit(host.url)
    sock = socket.create_connection((address.hostname, address.port), timeout=ANSWER_DEADLINE)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from a raw socket: status, headers (lower-case names) and body."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_a_chunked_body_is_read_and_the_connection_then_serves_the_next_request(host: RunningHost) -> None:
    data = parquet_bytes(sample_table(500))
    parts = [data[i:i + 1000] for i in range(0, len(data), 1000)]
    address = urlsplit(host.url)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=ANSWER_DEADLINE)
    try:
        conn.request("POST", "/api/recompress", body=iter(parts), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        first = conn.getresponse()
        output = first.read()
        conn.request("GET", "/api/health")
        second = conn.getresponse()
        health = json.loads(second.read())
    finally:
        conn.close()

    assert first.status == 200, output[:500]
    assert_same_data(data, output)
    assert (second.status, health["status"]) == (200, "ok")


def test_a_declared_body_over_the_limit_is_refused_before_any_of_it_is_sent(host: RunningHost) -> None:
    declared = 1024**3
    with connect(host) as sock:
        sock.sendall(f"POST /api/recompress HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode())
        status, headers, body = read_response(sock)

    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": too_large(f"{declared} bytes"), "kind": "PayloadTooLarge"}


def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives(host: RunningHost) -> None:
    chunk = b"\0" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    answered_early = False
    with connect(host) as sock:
        sock.sendall(b"POST /api/recompress HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4 * HOST_BODY_LIMIT // len(chunk)):  # four times the limit, never all sent
            if select.select([sock], [], [], 0)[0]:
                answered_early = True
                break
            try:
                sock.sendall(framed)
            except OSError:  # the server answered and closed: read what it said
                answered_early = True
                break
        status, _, body = read_response(sock)

    assert answered_early, "the server read a body four times over the limit without answering"
    assert status == 413
    assert json.loads(body) == {"error": too_large(f"more than {HOST_BODY_LIMIT} bytes (chunked)"),
                                "kind": "PayloadTooLarge"}


def test_a_body_just_over_the_limit_gets_the_413_even_from_a_client_that_sends_it_all_first(
    host: RunningHost,
) -> None:
    response = host.request("POST", "/api/recompress", b"\0" * (HOST_BODY_LIMIT + 1))

    assert response.status == 413
    assert response.json() == {"error": too_large(f"{HOST_BODY_LIMIT + 1} bytes"), "kind": "PayloadTooLarge"}


@pytest.mark.parametrize("length", ["-1", "abc", "1e3"])
def test_a_malformed_content_length_is_answered_with_400(host: RunningHost, length: str) -> None:
    with connect(host) as sock:
        sock.sendall(f"POST /api/recompress HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nPAR1".encode())
        status, headers, body = read_response(sock)

    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["kind"] == "BadRequest"


def test_thirty_requests_at_once_are_all_answered(host: RunningHost) -> None:
    ready = threading.Barrier(30)

    def ask(_: int) -> int:
        ready.wait(timeout=ANSWER_DEADLINE)
        return host.request("GET", "/api/health").status

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(ask, range(30)))

    assert statuses == [200] * 30


def test_a_client_that_stops_sending_is_disconnected(host: RunningHost) -> None:
    with connect(host) as sock:
        sock.sendall(b"POST /api/recompress HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        try:
            closed = sock.recv(1024) == b""
        except TimeoutError:
            closed = False

    assert closed, f"the connection was still open after {ANSWER_DEADLINE:.0f} s"

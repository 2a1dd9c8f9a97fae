"""The local host reads the app's triggers as the Functions host indexer would."""

from __future__ import annotations

import json

import pytest

from devhost.host import LocalHost, _blob_from_url, _route_regex, discover
from tests.helpers import BlobCalls, make_app


def test_discover_reads_routes_methods_and_blob_paths() -> None:
    http, blobs, queues = discover(make_app([]))

    assert [(f.name, f.route, f.methods) for f in http] == [("item", "items/{id}", ("GET",))]
    assert [(f.name, f.container, f.blob_pattern, f.connection) for f in blobs] == [
        ("landed", "landing", "{name}", "Store")
    ]
    assert queues == []


def test_discover_reads_the_real_app() -> None:
    import function_app

    http, blobs, queues = discover(function_app.app)

    assert {f.route: f.methods for f in http} == {
        "recompress": ("POST",), "process": ("POST",), "health": ("GET",), "report": ("GET",),
        "backfill": ("GET", "POST"), "backfill/{id}": ("GET",),
    }
    assert [(f.container, f.connection) for f in blobs] == [("input", "ParquetStorage")]
    assert sorted((f.queue, f.connection) for f in queues) == [
        ("backfill-blobs", "ParquetStorage"), ("backfill-blobs-poison", "ParquetStorage"),
        ("backfill-list", "ParquetStorage"), ("backfill-list-poison", "ParquetStorage"),
    ]


def test_route_templates_match_with_parameters() -> None:
    match = _route_regex("items/{id:int}/parts/{part?}").match("items/42/parts/a")
    assert match is not None
    assert match.groupdict() == {"id": "42", "part": "a"}


def test_http_dispatch_passes_route_and_query_parameters(local_host: LocalHost) -> None:
    status, _headers, body = local_host.handle_http("GET", "/api/items/7", "q=x", {}, b"")
    assert status == 200
    assert json.loads(body) == {"id": "7", "q": "x"}


def test_http_dispatch_refuses_other_methods_with_405_and_allow(local_host: LocalHost) -> None:
    status, headers, _ = local_host.handle_http("POST", "/api/items/7", "", {}, b"")
    assert status == 405
    assert headers["Allow"] == "GET"


def test_unknown_route_is_404(local_host: LocalHost) -> None:
    assert local_host.handle_http("GET", "/api/nothing", "", {}, b"")[0] == 404


def test_webhook_answers_event_grid_validation(local_host: LocalHost) -> None:
    event = [{"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "abc"}}]
    status, _, body = local_host.handle_events("functionName=Host.Functions.landed", {}, json.dumps(event).encode())
    assert status == 200
    assert json.loads(body) == {"validationResponse": "abc"}


def test_webhook_for_unknown_function_is_404(local_host: LocalHost) -> None:
    assert local_host.handle_events("functionName=Host.Functions.nope", {}, b"[]")[0] == 404


def test_webhook_ignores_events_for_other_containers(local_host: LocalHost, blob_calls: BlobCalls) -> None:
    event = [{"eventType": "Microsoft.Storage.BlobCreated",
              "data": {"url": "http://127.0.0.1:10000/devstoreaccount1/elsewhere/a.parquet"}}]
    status, _, _ = local_host.handle_events("functionName=Host.Functions.landed", {}, json.dumps(event).encode())
    assert status == 202
    assert blob_calls == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:10000/devstoreaccount1/input/a/b%20c.parquet", ("input", "a/b c.parquet")),
        ("https://acct.blob.core.windows.net/input/x.parquet", ("input", "x.parquet")),
    ],
    ids=["azurite-path-style", "azure-host-style"],
)
def test_blob_urls_are_split_into_container_and_name(url: str, expected: tuple[str, str]) -> None:
    assert _blob_from_url(url) == expected

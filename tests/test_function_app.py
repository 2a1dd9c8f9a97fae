"""Every trigger end to end, through the same local host that `make run` starts.

The host (the ``host`` fixture) runs as its own process (``python -m devhost
--no-azurite``) against the session's Azurite; tests upload blobs and send real
HTTP requests to it.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

import pyarrow as pa
import pytest

import function_app
from devhost.azurite import free_port
from shared.report import human_bytes
from shared.settings import STORAGE_CONNECTION
from tests.helpers import (
    HOST_BODY_LIMIT,
    RunningHost,
    assert_same_data,
    codec_of,
    parquet_bytes,
    sample_table,
    wait_for,
)

# --------------------------------------------------------------------------- blob trigger


def test_upload_to_input_produces_an_equal_zstd_output(host: RunningHost) -> None:
    data = parquet_bytes(sample_table(5000), compression="gzip")
    host.input.get_blob_client("landing/day=1/part-0.parquet").upload_blob(data)

    output = wait_for(lambda: host.output_blob("landing/day=1/part-0.parquet"), "the output blob")

    assert_same_data(data, output)
    assert codec_of(output) == {"ZSTD"}


def test_each_processed_file_logs_one_line_with_its_numbers(host: RunningHost) -> None:
    data = parquet_bytes(sample_table(777))
    host.input.get_blob_client("logged.parquet").upload_blob(data)

    line = wait_for(lambda: host.log_line("logged.parquet: 777 rows"), "the report line")

    assert f"{human_bytes(len(data))} →" in line
    assert " ms" in line


def test_reupload_of_a_new_version_is_processed_again(host: RunningHost) -> None:
    blob = host.input.get_blob_client("again.parquet")
    blob.upload_blob(parquet_bytes(sample_table(10)))
    wait_for(lambda: host.output_blob("again.parquet"), "the first output")

    newer = parquet_bytes(sample_table(20))
    blob.upload_blob(newer, overwrite=True)

    def second_version() -> bytes | None:
        out = host.output_blob("again.parquet")
        return out if out is not None and _rows(out) == 20 else None

    assert_same_data(newer, wait_for(second_version, "the output of the new version"))


def test_a_file_that_is_not_parquet_is_quarantined_with_a_report_and_no_output(host: RunningHost) -> None:
    host.input.get_blob_client("broken.parquet").upload_blob(b"id,name\n1,a\n")

    line = wait_for(lambda: host.log_line("broken.parquet: not a readable Parquet file"), "the error line")

    assert "Traceback" not in host.log.read_text()
    assert "quarantined" in line
    assert host.output_blob("broken.parquet") is None
    aside = host.quarantine.get_blob_client("broken.parquet")
    copy = aside.download_blob().readall()
    assert copy == b"id,name\n1,a\n"
    report = aside.get_blob_properties().metadata
    assert report["recompress_error_kind"] == "NotParquetError"
    assert report["recompress_source_size"] == str(len(copy))
    assert "not a readable Parquet file" in unquote(report["recompress_error"])


# --------------------------------------------------------------------------- HTTP routes


def test_recompress_route_returns_the_recompressed_file_with_its_numbers(host: RunningHost) -> None:
    data = parquet_bytes(sample_table(3000))

    response = host.request("POST", "/api/recompress?level=7", data)

    assert response.status == 200
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    assert response.headers["x-recompress-rows"] == "3000"
    assert response.headers["x-recompress-bytes-in"] == str(len(data))
    assert response.headers["x-recompress-bytes-out"] == str(len(response.body))
    assert response.headers["x-recompress-level"] == "7"
    assert_same_data(data, response.body)
    assert codec_of(response.body) == {"ZSTD"}


def test_recompress_route_keeps_only_the_asked_columns(host: RunningHost) -> None:
    response = host.request("POST", "/api/recompress?columns=name,id", parquet_bytes(sample_table(10)))

    assert response.status == 200
    assert _column_names(response.body) == ["name", "id"]


def test_recompress_route_refuses_a_body_over_the_limit_with_413(host: RunningHost) -> None:
    response = host.request("POST", "/api/recompress", b"\0" * (HOST_BODY_LIMIT + 1))

    assert response.status == 413
    assert "over the" in response.json()["error"]


@pytest.mark.parametrize(
    ("query", "body", "status", "message"),
    [
        ("", b"definitely not parquet", 422, "not a readable Parquet file"),
        ("", b"", 422, "not a readable Parquet file"),
        ("?level=0", None, 400, "level"),
        ("?level=high", None, 400, "level"),
        ("?columns=nope", None, 400, "has no column 'nope'"),
        ("?level=%D9%A3", None, 400, "level"),
        ("?mode=bogus", None, 400, "must be one of auto, exact, reencode"),
        ("?bogus=1", None, 400, "unknown parameter 'bogus'; accepted: level, columns, mode, verify"),
    ],
    ids=["garbage", "empty", "level-zero", "level-word", "unknown-column", "level-arabic-digit", "mode-bogus",
         "unknown-parameter"],
)
def test_recompress_route_answers_bad_requests_with_a_json_error(
    host: RunningHost, query: str, body: bytes | None, status: int, message: str
) -> None:
    response = host.request("POST", "/api/recompress" + query, parquet_bytes(sample_table(5)) if body is None else body)

    assert response.status == status
    assert response.headers["content-type"].startswith("application/json")
    assert message in response.json()["error"]
    assert "Traceback" not in response.body.decode()


def test_process_route_processes_an_existing_blob_and_reports(host: RunningHost) -> None:
    data = parquet_bytes(sample_table(1234))
    host.input.get_blob_client("on-demand/x.parquet").upload_blob(data)

    response = host.request("POST", "/api/process", json.dumps({"blob": "on-demand/x.parquet"}).encode(),
                            {"Content-Type": "application/json"})

    assert response.status == 200, response.body
    report = response.json()
    assert report["rows"] == 1234
    assert report["bytes_in"] == len(data)
    assert report["output"] == f"{host.output.container_name}/on-demand/x.parquet"
    assert 0 < report["ratio"] == pytest.approx(report["bytes_out"] / report["bytes_in"], abs=1e-3)
    assert isinstance(report["ms"], int)
    assert_same_data(data, wait_for(lambda: host.output_blob("on-demand/x.parquet"), "the output"))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"blob": "missing.parquet"}', 404, "missing.parquet: does not exist"),
        (b"not json", 400, "must be JSON"),
        (b'{"name": "x"}', 400, '"blob"'),
        (b'{"blob": ""}', 400, '"blob"'),
        (b"[" * 100_000 + b"]" * 100_000, 400, "must be JSON"),
        (b'{"a":' * 20_000 + b"1" + b"}" * 20_000, 400, "must be JSON"),
    ],
    ids=["missing-blob", "not-json", "no-blob-key", "empty-name", "arrays-100000-deep", "objects-20000-deep"],
)
def test_process_route_answers_bad_requests_with_a_json_error(
    host: RunningHost, body: bytes, status: int, message: str
) -> None:
    response = host.request("POST", "/api/process", body)

    assert response.status == status
    assert message in response.json()["error"]


def test_health_route_answers_when_storage_does(host: RunningHost) -> None:
    response = host.request("GET", "/api/health")

    assert response.status == 200
    assert response.json()["status"] == "ok"
    assert "AccountKey" not in response.body.decode()


def test_wrong_method_gets_405(host: RunningHost) -> None:
    assert host.request("GET", "/api/recompress").status == 405
    assert host.request("DELETE", "/api/health").status == 405


def test_health_function_says_503_with_a_reason_when_storage_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = free_port()
    monkeypatch.setenv(STORAGE_CONNECTION, f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                                           f"AccountKey=c2VjcmV0;BlobEndpoint=http://127.0.0.1:{closed}/devstoreaccount1;")
    import azure.functions as func

    response = function_app.health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))

    assert response.status_code == 503
    payload = json.loads(response.get_body())
    assert "unreachable" in payload["reason"]
    assert "c2VjcmV0" not in response.get_body().decode()


def test_health_is_ok_when_everything_a_run_and_a_backfill_need_exists(
        backfill_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, known in backfill_env.items():
        monkeypatch.setenv(key, known)
    import azure.functions as func

    response = function_app.health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))

    assert response.status_code == 200, response.get_body()


@pytest.mark.parametrize(("setting", "value", "reason"), [
    ("RECOMPRESS_OUTPUT_CONTAINER", "no-such-output", "container 'no-such-output': does not exist"),
    ("RECOMPRESS_QUARANTINE_CONTAINER", "no-such-quarantine", "container 'no-such-quarantine': does not exist"),
    ("RECOMPRESS_TRANSFORM", "no_such_module:fix", "cannot import module 'no_such_module'"),
    ("RECOMPRESS_BACKFILL_BLOB_QUEUE", "no-such-queue", "queue 'no-such-queue': does not exist"),
    ("RECOMPRESS_BACKFILL_TABLE", "nosuchtable", "table 'nosuchtable': does not exist"),
])
def test_health_names_what_a_run_would_miss(backfill_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                           setting: str, value: str, reason: str) -> None:
    for key, known in {**backfill_env, setting: value}.items():
        monkeypatch.setenv(key, known)
    import azure.functions as func

    response = function_app.health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))

    assert response.status_code == 503
    assert reason in json.loads(response.get_body())["reason"]


def _rows(data: bytes) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows)


def _column_names(data: bytes) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.ParquetFile(pa.BufferReader(data)).schema_arrow.names)


@pytest.mark.parametrize(
    "name",
    ["../output/x.parquet", "https://evil.example/input/x.parquet", "bad\u0000name", "x" * 1025, "/abs.parquet"],
    ids=["dotdot", "url", "control-char", "too-long", "absolute"],
)
def test_process_route_refuses_names_outside_the_input_container_with_400(host: RunningHost, name: str) -> None:
    response = host.request("POST", "/api/process", json.dumps({"blob": name}).encode())

    assert response.status == 400
    assert response.json()["error"].startswith("blob name: ")


def test_report_route_sums_what_was_written(host: RunningHost) -> None:
    data = parquet_bytes(sample_table(321))
    host.input.get_blob_client("report/r.parquet").upload_blob(data)
    wait_for(lambda: host.output_blob("report/r.parquet"), "the output")

    response = host.request("GET", "/api/report?prefix=report/")

    assert response.status == 200
    report = response.json()
    assert report["total"]["files"] == 1
    assert report["total"]["bytes_in"] == len(data)
    assert report["total"]["bytes_out"] == len(host.output_blob("report/r.parquet") or b"")
    assert host.request("GET", "/api/report?bogus=1").status == 400

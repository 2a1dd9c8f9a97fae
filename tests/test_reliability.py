"""At-least-once delivery, bursts and secrets, end to end through the local host."""

from __future__ import annotations

import functools
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from azure.storage.blob import BlobServiceClient

from devhost.azurite import ACCOUNT_KEY, Azurite
from devhost.events import blob_created_event
from tests.helpers import RunningHost, assert_same_data, parquet_bytes, sample_table, wait_for

BURST = 50


def test_fifty_uploads_at_once_are_all_recompressed_correctly(host: RunningHost) -> None:
    files = {f"burst/{i:02d}.parquet": parquet_bytes(sample_table(200 + i)) for i in range(BURST)}
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda item: host.input.get_blob_client(item[0]).upload_blob(item[1]), files.items()))

    for name, data in files.items():
        assert_same_data(data, wait_for(functools.partial(host.output_blob, name), f"the output of {name}", 120))


def test_the_same_event_delivered_many_times_at_once_writes_one_output(host: RunningHost) -> None:
    host.input.get_blob_client("dup.parquet").upload_blob(parquet_bytes(sample_table(321)))
    wait_for(lambda: host.output_blob("dup.parquet"), "the first output")
    written_etag = host.output.get_blob_client("dup.parquet").get_blob_properties().etag
    props = host.input.get_blob_client("dup.parquet").get_blob_properties()
    event = blob_created_event(host.input, "dup.parquet", str(props.etag), int(props.size), "application/octet-stream")
    url = f"{host.url}/runtime/webhooks/blobs?functionName=Host.Functions.recompress_blob"

    def deliver(_: int) -> int:
        request = urllib.request.Request(url, data=json.dumps([event]).encode(), method="POST",
                                         headers={"aeg-event-type": "Notification"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(deliver, range(20)))

    assert set(statuses) == {202}
    assert host.output.get_blob_client("dup.parquet").get_blob_properties().etag == written_etag
    log = host.log.read_text()
    assert log.count("dup.parquet: 321 rows") == 1
    assert log.count("dup.parquet: skipped") >= 20


def test_no_secret_appears_anywhere_in_the_logs_of_a_full_run(
    host: RunningHost, azurite: Azurite, service: BlobServiceClient
) -> None:
    # Make the run exercise every path that logs: success, quarantine, HTTP errors.
    host.input.get_blob_client("secret-scan/good.parquet").upload_blob(parquet_bytes(sample_table(3)))
    host.input.get_blob_client("secret-scan/bad.parquet").upload_blob(b"nope")
    wait_for(lambda: host.output_blob("secret-scan/good.parquet"), "the good output")
    wait_for(lambda: host.log_line("secret-scan/bad.parquet: quarantined"), "the quarantine line")
    host.request("POST", "/api/process", b'{"blob": "secret-scan/missing.parquet"}')
    host.request("POST", "/api/recompress", b"garbage")
    host.request("GET", "/api/health")

    log = host.log.read_text()

    assert "recompress" in log, "the log captured nothing: the scan would prove nothing"
    for secret in (ACCOUNT_KEY, ACCOUNT_KEY[:20], "AccountKey=", "SharedAccessSignature", "sig="):
        assert secret not in log, f"{secret[:12]}... leaked into the logs"

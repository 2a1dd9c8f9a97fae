"""The savings report: its sums are the sizes of the blobs involved, read from metadata alone."""

from __future__ import annotations

import json

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared import blobs, cli
from shared.savings import TOP_LEVEL, summarize
from shared.settings import Settings
from shared.storage import context
from tests.helpers import noisy_table, parquet_bytes, sample_table


@pytest.fixture
def mixed(settings: Settings, containers: tuple[ContainerClient, ContainerClient],
          service: BlobServiceClient) -> Settings:
    """Written files in two folders and at the top level, and two quarantined ones."""
    settings = settings.with_overrides(quarantine_container=f"q-{settings.output_container}")
    bodies = {"sales/a.parquet": parquet_bytes(sample_table(3000), row_group_size=500),
              "sales/b.parquet": parquet_bytes(noisy_table(2000)),
              "web/c.parquet": parquet_bytes(sample_table(700)),
              "d.parquet": parquet_bytes(sample_table(50)),
              "sales/bad.parquet": b"not parquet",
              "web/worse.parquet": b"PAR1 nor this PAR1"}
    for name, body in bodies.items():
        containers[0].get_blob_client(name).upload_blob(body)
        blobs.process_blob(containers[0].get_blob_client(name), settings)
    return settings


def sizes(container: ContainerClient, prefix: str = "") -> dict[str, tuple[int, int]]:
    """Each output's (recorded input size, own size), straight from storage."""
    return {b.name: (int(b.metadata["recompress_source_size"]), b.size)
            for b in container.list_blobs(name_starts_with=prefix, include=["metadata"])}


def test_the_sums_are_the_sizes_of_the_blobs_involved(
    mixed: Settings, containers: tuple[ContainerClient, ContainerClient],
) -> None:
    savings = summarize(context(mixed), mixed)

    expected = sizes(containers[1])
    assert savings.total.files == len(expected) == 4
    assert savings.total.bytes_in == sum(i for i, _ in expected.values())
    assert savings.total.bytes_out == sum(o for _, o in expected.values())
    assert savings.total.saved == savings.total.bytes_in - savings.total.bytes_out
    assert {name: totals.files for name, totals in savings.by_folder.items()} == {"sales": 2, "web": 1,
                                                                                   TOP_LEVEL: 1}
    assert sum(t.bytes_out for t in savings.by_mode.values()) == savings.total.bytes_out
    assert savings.quarantined == 2
    assert dict(savings.listed)["sales/bad.parquet"].startswith("not a readable Parquet file")


def test_a_prefix_narrows_both_listings(mixed: Settings, containers: tuple[ContainerClient, ContainerClient]) -> None:
    savings = summarize(context(mixed), mixed, "sales/")

    expected = sizes(containers[1], "sales/")
    assert savings.total.files == 2
    assert savings.total.bytes_in == sum(i for i, _ in expected.values())
    assert [name for name, _ in savings.listed] == ["sales/bad.parquet"]


def test_the_cli_prints_the_report_as_json(mixed: Settings, storage_env: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in {**storage_env, "RECOMPRESS_QUARANTINE_CONTAINER": mixed.quarantine_container}.items():
        monkeypatch.setenv(key, value)

    code = cli.main(["report", "--prefix", "web/", "--json"])

    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["total"]["files"] == 1
    assert out["quarantined_files"][0]["name"] == "web/worse.parquet"

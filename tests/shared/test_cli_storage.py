"""The CLI between local files and blobs in a real Azurite, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from tests.helpers import (
    ROOT,
    Result,
    app_free_env,
    assert_same_data,
    codec_of,
    parquet_bytes,
    run_cli_process,
    sample_table,
)


def run_cli(env: dict[str, str], *args: str, cwd: Path = ROOT) -> Result:
    return run_cli_process(*args, env=app_free_env(env), cwd=cwd)


def blob_exists(container: ContainerClient, name: str) -> bool:
    try:
        container.get_blob_client(name).get_blob_properties()
    except ResourceNotFoundError:
        return False
    return True


def test_blob_to_blob(storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient]) -> None:
    data = parquet_bytes(sample_table(2000))
    containers[0].get_blob_client("a/b.parquet").upload_blob(data)
    src, dst = f"{containers[0].container_name}/a/b.parquet", f"{containers[1].container_name}/c.parquet"

    result = run_cli(storage_env, src, dst, "--level", "9")

    assert result.code == 0, result.err
    assert result.out.startswith(f"{src}: 2000 rows")
    output = bytes(containers[1].get_blob_client("c.parquet").download_blob().readall())
    assert_same_data(data, output)
    props = containers[1].get_blob_client("c.parquet").get_blob_properties()
    assert props.metadata["recompress_level"] == "9"


def test_local_file_to_blob_and_back(storage_env: dict[str, str],
                                     containers: tuple[ContainerClient, ContainerClient], tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    source.write_bytes(parquet_bytes(sample_table(300)))
    blob = f"{containers[1].container_name}/up.parquet"

    up = run_cli(storage_env, str(source), blob)
    down = run_cli(storage_env, f"az://{blob}", str(tmp_path / "down.parquet"))

    assert up.code == 0, up.err
    assert down.code == 0, down.err
    assert_same_data(source, tmp_path / "down.parquet")
    assert codec_of((tmp_path / "down.parquet").read_bytes()) == {"ZSTD"}


def test_relative_paths_whose_folder_exists_stay_local(storage_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.parquet").write_bytes(parquet_bytes(sample_table(10)))

    result = run_cli(storage_env, "data/in.parquet", "data/out.parquet", cwd=tmp_path)

    assert result.code == 0, result.err
    assert (tmp_path / "data" / "out.parquet").exists()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [(b"", "not a readable Parquet file"), (b"garbage" * 100, "not a readable Parquet file")],
    ids=["empty-blob", "garbage-blob"],
)
def test_bad_blob_exits_2_with_one_line_and_writes_nothing(
    storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient], payload: bytes, problem: str
) -> None:
    containers[0].get_blob_client("bad.parquet").upload_blob(payload)
    src, dst = f"{containers[0].container_name}/bad.parquet", f"{containers[1].container_name}/bad.parquet"

    result = run_cli(storage_env, src, dst)

    assert result.code == 2
    assert result.err.count("\n") == 1
    assert result.err.startswith(f"error: {src}: {problem}") or f"bad.parquet: {problem}" in result.err
    assert not blob_exists(containers[1], "bad.parquet")


def test_missing_blob_exits_2_naming_it(storage_env: dict[str, str],
                                        containers: tuple[ContainerClient, ContainerClient], tmp_path: Path) -> None:
    src = f"{containers[0].container_name}/absent.parquet"

    result = run_cli(storage_env, src, str(tmp_path / "out.parquet"))

    assert result.code == 2
    assert result.err == f"error: {src}: does not exist\n"
    assert list(tmp_path.iterdir()) == []


def test_unreachable_storage_exits_1_in_one_line_without_the_key(tmp_path: Path) -> None:
    env = {"ParquetStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0;"
                             "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;",
           # One quick retry still goes through the retry policy; the default five, backing off, take 16 s.
           "RECOMPRESS_RETRY_TOTAL": "1", "RECOMPRESS_RETRY_BACKOFF": "0.05"}
    source = tmp_path / "in.parquet"
    source.write_bytes(parquet_bytes(sample_table(10)))

    result = run_cli(env, str(source), "somecontainer/out.parquet")

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "unreachable" in result.err
    assert "c2VjcmV0" not in result.err + result.out


def test_a_dst_that_names_a_missing_container_fails_before_any_work_and_says_how_it_was_read(
    storage_env: dict[str, str], tmp_path: Path,
) -> None:
    src = tmp_path / "in.parquet"
    src.write_bytes(parquet_bytes(sample_table(100)))

    result = run_cli(storage_env, str(src), "nodir/out.parquet", cwd=tmp_path)

    assert result.code == 2
    assert result.err_lines == [
        "error: nodir/out.parquet: container 'nodir' does not exist; it was read as container 'nodir' because "
        "no local folder 'nodir' exists: for a local file create the folder or write ./nodir/out.parquet"]


# --------------------------------------------------------------------------- blob addresses as other tools print them


def test_a_blob_url_as_copied_from_storage_explorer_works_as_src(
        storage_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient], tmp_path: Path) -> None:
    data = parquet_bytes(sample_table(100))
    source = containers[0].get_blob_client("from explorer/a.parquet")
    source.upload_blob(data)

    result = run_cli(storage_env, source.url, str(tmp_path / "out.parquet"))

    assert result.code == 0, result.err
    assert_same_data(data, tmp_path / "out.parquet")


def test_an_address_in_another_account_is_refused_in_one_line_naming_the_setting(
        storage_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(storage_env, "abfss://input@lake01.dfs.core.windows.net/a.parquet", str(tmp_path / "o.parquet"))

    assert result.code == 2
    assert result.err_lines == [result.err_lines[0]]
    assert "is in https://lake01.blob.core.windows.net; set ParquetStorage to that account's connection string" \
        in result.err
    assert not (tmp_path / "o.parquet").exists()


# --------------------------------------------------------------------------- python -m shared backfill


def run_backfill(env: dict[str, str], *args: str) -> Result:
    done = subprocess.run([sys.executable, "-m", "shared", "backfill", *args], cwd=ROOT, env=app_free_env(env),
                          capture_output=True, text=True, timeout=300, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def test_the_backfill_cli_processes_a_prefix_and_prints_the_job(
        backfill_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient]) -> None:
    for i in range(4):
        containers[0].upload_blob(f"day/{i}.parquet", parquet_bytes(sample_table(20 + i)))
    containers[0].upload_blob("day/notes.txt", b"not parquet")
    containers[0].upload_blob("elsewhere.parquet", parquet_bytes(sample_table(5)))

    result = run_backfill(backfill_env, "--prefix", "day/", "--workers", "2", "--json")

    assert result.code == 0, result.err
    status = json.loads(result.out)
    assert {k: status[k] for k in ("state", "total", "written", "skipped", "quarantined", "failed")} == {
        "state": "done", "total": 5, "written": 4, "skipped": 0, "quarantined": 1, "failed": 0}
    assert sorted(b.name for b in containers[1].list_blobs()) == [f"day/{i}.parquet" for i in range(4)]


def test_the_backfill_cli_dry_run_writes_nothing_and_says_so(
        backfill_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient]) -> None:
    containers[0].upload_blob("a.parquet", parquet_bytes(sample_table(20)))

    result = run_backfill(backfill_env, "--dry-run")

    assert result.code == 0, result.err
    assert "dry run" in result.out
    assert "done, 1 found: 1 written, 0 skipped" in result.out
    assert list(containers[1].list_blobs()) == []


def test_the_backfill_cli_exits_1_when_some_blob_failed(
        backfill_env: dict[str, str], containers: tuple[ContainerClient, ContainerClient]) -> None:
    containers[0].upload_blob("a.parquet", parquet_bytes(sample_table(20)))

    result = run_backfill({**backfill_env, "RECOMPRESS_TRANSFORM": "no_such_module_here:f"}, "--json")

    assert result.code == 1, result.err
    assert json.loads(result.out)["failed"] == 1


@pytest.mark.parametrize(("args", "problem"), [
    (("--workers", "0"), "--workers: must be at least 1"),
    (("--prefix", "../x"), "must not contain '.' or '..' segments"),
    (("--prefix", "az://some-other-container/x/"), "names container 'some-other-container', but the backfill reads"),
])
def test_the_backfill_cli_refuses_bad_arguments_with_status_2(backfill_env: dict[str, str], args: tuple[str, ...],
                                                              problem: str) -> None:
    result = run_backfill(backfill_env, *args)

    assert result.code == 2
    assert problem in result.err
    assert len(result.err_lines) == 1

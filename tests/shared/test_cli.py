"""``python -m shared recompress SRC DST`` on local files.

A few cases run the real command in a subprocess (the way a person runs it);
the rest call ``shared.cli.main`` in-process (the ``run_cli`` fixture). Bad input
must end with exit status 2, exactly one line on stderr naming the file and the
problem, no traceback, and nothing left at DST, not even a ``*.partial`` temp
file. Damaged Parquet files are the corpus in ``tests/damaged.py``, which
test_hostile runs through the command line and the pipeline.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared import cli, reencode
from shared.errors import InputError
from shared.report import change, human_bytes
from shared.settings import Settings
from tests.helpers import (
    ROOT,
    SRC_ROWS,
    Result,
    RunCli,
    app_free_env,
    assert_same_data,
    codec_of,
    noisy_table,
    parquet_bytes,
    partial_files,
    run_cli_process,
    sample_table,
    wait_for,
)

ROWS = SRC_ROWS
NOT_PARQUET = "not a readable Parquet file"


def assert_clean_failure(result: Result, dst: Path, *fragments: str) -> None:
    """Exit 2, one line on stderr holding every fragment, no traceback, nothing at DST."""
    assert result.code == 2, result
    assert len(result.err_lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, f"{fragment!r} not in {result.err!r}"
    assert result.out == ""
    assert not dst.exists()
    assert partial_files(dst.parent.parent) == []


def assert_recompressed(src: Path, dst: Path) -> None:
    assert_same_data(src, dst)
    assert codec_of(dst.read_bytes()) == {"ZSTD"}


REPORT_LINE = re.compile(r"^(?P<source>.+): (?P<rows>\d+) rows, "
                         r"(?P<bytes_in>[\d.]+ k?B) → (?P<bytes_out>[\d.]+ k?B) \((?P<change>[−+±]\d+ %)\)"
                         r", (?P<mode>exact|reencode) \((?P<reason>.+)\), (?P<proof>full|pages) proof, "
                         r"readers (?P<readers>[a-z0-9.]+)"
                         r"(?:, memory (?P<memory>[\d.]+ [kMG]?B) of (?P<budget>[\d.]+ [kMG]?B))?, \d+ ms$")


# --------------------------------------------------------------------------- success, as a real process


def test_recompress_writes_dst_with_the_same_data_and_prints_one_report_line(src: Path, dst: Path) -> None:
    result = run_cli_process(src, dst)

    assert result.code == 0, result.err
    assert result.err == ""
    assert_recompressed(src, dst)
    lines = result.out.splitlines()
    assert len(lines) == 1
    match = REPORT_LINE.match(lines[0])
    assert match, lines[0]
    assert match["source"] == str(src)
    assert int(match["rows"]) == ROWS
    assert match["bytes_in"] == human_bytes(src.stat().st_size)
    assert match["bytes_out"] == human_bytes(dst.stat().st_size)
    assert match["change"] == change(src.stat().st_size, dst.stat().st_size)
    assert match["mode"] == "reencode"
    assert match["proof"] == "full"
    assert match["readers"] == "input"
    assert match["budget"] == human_bytes(Settings().memory_budget), "re-encode says what it held of its budget"
    assert partial_files(dst.parent) == []


def test_json_prints_the_report_as_one_json_object(src: Path, dst: Path) -> None:
    result = run_cli_process(src, dst, "--json")

    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 1
    report = json.loads(result.out)
    assert report["rows"] == ROWS
    assert report["bytes_in"] == src.stat().st_size
    assert report["bytes_out"] == dst.stat().st_size
    assert report["ratio"] == round(report["bytes_out"] / report["bytes_in"], 4)
    assert report["codec"] == "zstd"
    assert report["mode"] == "reencode", "a pyarrow file provably survives a re-encode"
    assert report["mode_reason"] == "reencode: provably identical, encodings chosen per column"
    assert report["proof"] == "full"
    assert report["level"] == reencode.DEFAULT_LEVEL
    assert report["source"] == str(src)
    assert report["output"] == str(dst)


# --------------------------------------------------------------------------- bad input, as a real process


def test_a_file_that_is_not_parquet_fails_cleanly_as_a_real_process(tmp_path: Path, dst: Path) -> None:
    bad = tmp_path / "noise.parquet"
    bad.write_bytes(random.Random(1).randbytes(4096))

    result = run_cli_process(bad, dst)

    assert_clean_failure(result, dst, str(bad), NOT_PARQUET)


def test_a_missing_src_fails_cleanly_as_a_real_process(tmp_path: Path, dst: Path) -> None:
    missing = tmp_path / "missing.parquet"

    result = run_cli_process(missing, dst)

    assert_clean_failure(result, dst, str(missing), "No such file")


def test_a_bad_level_exits_2_without_a_traceback_as_a_real_process(src: Path, dst: Path) -> None:
    result = run_cli_process(src, dst, "--level", "0")

    assert_clean_failure(result, dst, "argument --level", "must be from 1 to 22, got 0")


@pytest.mark.parametrize("rows", ["0", "-5", "2147483649"])
def test_a_row_group_size_out_of_the_settings_bounds_fails_cleanly(src: Path, dst: Path, rows: str) -> None:
    result = run_cli_process(src, dst, f"--row-group-size={rows}")

    assert_clean_failure(result, dst, "argument --row-group-size", f"must be from 1 to 2147483648, got {rows}")


# --------------------------------------------------------------------------- options, in-process


def test_level_option_is_honoured(run_cli: RunCli, src: Path, dst: Path) -> None:
    result = run_cli(src, dst, "--level", "7", "--json")

    assert result.code == 0, result.err
    assert json.loads(result.out)["level"] == 7
    assert_recompressed(src, dst)


def test_the_level_setting_applies_unless_the_option_overrides_it(
    run_cli: RunCli, src: Path, dst: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMPRESS_ZSTD_LEVEL", "12")

    from_setting = run_cli(src, dst, "--json")
    from_option = run_cli(src, dst, "--json", "--level", "2")

    assert json.loads(from_setting.out)["level"] == 12
    assert json.loads(from_option.out)["level"] == 2


def test_columns_option_keeps_exactly_those_columns_in_that_order(run_cli: RunCli, src: Path, dst: Path) -> None:
    result = run_cli(src, dst, "--columns", "x,id")

    assert result.code == 0, result.err
    written = pq.read_table(dst)
    assert written.column_names == ["x", "id"]
    assert written.equals(pq.read_table(src).select(["x", "id"]))


def test_row_group_size_option_is_honoured(run_cli: RunCli, src: Path, dst: Path) -> None:
    result = run_cli(src, dst, "--row-group-size", "400")

    assert result.code == 0, result.err
    meta = pq.ParquetFile(dst).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [400, 400, 200]
    assert_recompressed(src, dst)


def test_an_existing_dst_is_replaced(run_cli: RunCli, src: Path, dst: Path) -> None:
    dst.write_bytes(b"old contents")

    result = run_cli(src, dst)

    assert result.code == 0, result.err
    assert_recompressed(src, dst)


def test_relative_paths_are_local_files(
    run_cli: RunCli, src: Path, dst: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(src.parent)

    result = run_cli(src.name, f"{dst.parent.name}/{dst.name}")

    assert result.code == 0, result.err
    assert_recompressed(src, dst)


# --------------------------------------------------------------------------- bad input, in-process


def test_a_failed_run_leaves_an_existing_dst_untouched(run_cli: RunCli, tmp_path: Path, dst: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(parquet_bytes(sample_table(ROWS))[:100])
    dst.write_bytes(b"previous result")

    result = run_cli(bad, dst)

    assert result.code == 2
    assert dst.read_bytes() == b"previous result"
    assert partial_files(dst.parent) == []


def test_a_missing_src_fails_cleanly(run_cli: RunCli, tmp_path: Path, dst: Path) -> None:
    missing = tmp_path / "missing.parquet"

    assert_clean_failure(run_cli(missing, dst), dst, str(missing), "No such file or directory")


def test_a_src_that_is_a_directory_fails_cleanly(run_cli: RunCli, tmp_path: Path, dst: Path) -> None:
    folder = tmp_path / "folder.parquet"
    folder.mkdir()

    assert_clean_failure(run_cli(folder, dst), dst, str(folder), "is a directory")


def test_a_dst_in_a_missing_folder_fails_cleanly_naming_it(run_cli: RunCli, src: Path, tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "result.parquet"

    result = run_cli(src, target)

    assert_clean_failure(result, target, f"error: {target}: ", "does not exist")
    assert ".partial" not in result.err


def test_a_dst_that_is_a_directory_fails_cleanly_naming_it(run_cli: RunCli, src: Path, dst: Path) -> None:
    dst.mkdir()

    result = run_cli(src, dst)

    assert result.code == 2
    assert len(result.err_lines) == 1, result.err
    assert f"error: {dst}: " in result.err
    assert "folder" in result.err
    assert "Traceback" not in result.err
    assert partial_files(dst.parent) == []


def test_a_column_that_does_not_exist_fails_cleanly(run_cli: RunCli, src: Path, dst: Path) -> None:
    result = run_cli(src, dst, "--columns", "id,nope")

    assert_clean_failure(result, dst, str(src), "has no column 'nope'")


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        pytest.param("--level", "0", "must be from 1 to 22, got 0", id="level-0"),
        pytest.param("--level", "23", "must be from 1 to 22, got 23", id="level-23"),
        pytest.param("--level", "abc", "must be a whole number from 1 to 22, got 'abc'", id="level-abc"),
        pytest.param("--columns", "id,id", "names a column twice: 'id'", id="columns-twice"),
        pytest.param("--row-group-size", "many", "must be a whole number, got 'many'", id="row-group-size-word"),
    ],
)
def test_a_bad_option_fails_cleanly_naming_the_option(
    run_cli: RunCli, src: Path, dst: Path, option: str, value: str, problem: str
) -> None:
    result = run_cli(src, dst, option, value)

    assert_clean_failure(result, dst, f"error: argument {option}: {problem}")


def test_a_missing_argument_is_one_line_too(run_cli: RunCli, src: Path) -> None:
    result = run_cli(src)

    assert result.code == 2
    assert len(result.err_lines) == 1, result.err
    assert "DST" in result.err


def test_a_bad_setting_fails_cleanly_naming_it(
    run_cli: RunCli, src: Path, dst: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMPRESS_ZSTD_LEVEL", "abc")

    assert_clean_failure(run_cli(src, dst), dst, "RECOMPRESS_ZSTD_LEVEL", "must be a whole number")


def test_a_bad_transform_setting_leaves_no_partial_file(
    run_cli: RunCli, src: Path, dst: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMPRESS_TRANSFORM", "no_such_module_for_tests:f")

    assert_clean_failure(run_cli(src, dst), dst, "RECOMPRESS_TRANSFORM", "cannot import module")


# --------------------------------------------------------------------------- parse_location


@pytest.mark.parametrize(
    "text",
    ["/abs/path/file.parquet", "./box/file.parquet", "../elsewhere/file.parquet", "~/file.parquet",
     "file.parquet", ".\\box\\file.parquet"],
)
def test_paths_with_a_local_prefix_or_no_folder_are_local(in_tmp: Path, text: str) -> None:
    location = cli.parse_location(text)

    assert not location.is_blob
    assert location.container is None
    assert location.blob is None


def test_a_tilde_is_expanded_to_the_home_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    assert cli.parse_location("~/data/x.parquet").text == str(tmp_path / "data" / "x.parquet")


def test_an_existing_relative_src_is_local(in_tmp: Path) -> None:
    assert not cli.parse_location("box/here.parquet").is_blob


def test_a_missing_relative_src_stays_local_when_its_folder_exists(in_tmp: Path) -> None:
    location = cli.parse_location("box/missing.parquet")

    assert not location.is_blob, "a typo in a local file name must say 'not found', not reach for storage"


@pytest.mark.parametrize("text", ["box/new.parquet", "box/deeper/new.parquet"])
def test_a_dst_whose_first_folder_exists_is_local(in_tmp: Path, text: str) -> None:
    assert not cli.parse_location(text).is_blob


def test_container_slash_blob_with_no_such_local_folder_names_a_blob(in_tmp: Path) -> None:
    location = cli.parse_location("input/2024/01/data.parquet")

    assert location.is_blob
    assert (location.container, location.blob) == ("input", "2024/01/data.parquet")
    assert location.text == "input/2024/01/data.parquet"


def test_a_first_part_that_is_a_file_not_a_folder_names_a_blob(in_tmp: Path) -> None:
    location = cli.parse_location("plainfile/x.parquet")

    assert (location.container, location.blob) == ("plainfile", "x.parquet")


def test_the_az_scheme_always_names_a_blob(in_tmp: Path) -> None:
    location = cli.parse_location("az://box/here.parquet")

    assert (location.container, location.blob) == ("box", "here.parquet")
    assert location.text == "az://box/here.parquet"


@pytest.mark.parametrize("text", ["az://box", "az://box/", "az:///blob.parquet", "az://"])
def test_an_az_name_without_container_and_blob_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError, match="names no blob; use container/blob") as caught:
        cli.parse_location(text)

    assert str(caught.value).startswith(f"{text}: ")


def test_a_local_run_loads_neither_pandas_nor_the_azure_sdk(tmp_path: Path) -> None:
    """Start-up is part of every run's cost: heavy libraries load only on the paths that need them."""
    source = tmp_path / "in.parquet"
    source.write_bytes(parquet_bytes(sample_table(10)))
    probe = (
        "import sys; from shared.cli import main; "
        f"code = main(['recompress', {str(source)!r}, {str(tmp_path / 'out.parquet')!r}]); "
        "print(sorted(m for m in ('pandas', 'azure.storage.blob', 'azure.identity') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=app_free_env(), check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_sigterm_leaves_no_partial_file_behind(tmp_path: Path) -> None:
    src, dst = tmp_path / "big.parquet", tmp_path / "out" / "big.parquet"
    dst.parent.mkdir()
    src.write_bytes(parquet_bytes(noisy_table(3_000_000), row_group_size=100_000))
    process = subprocess.Popen([sys.executable, "-m", "shared", "recompress", str(src), str(dst), "--mode", "reencode"],
                               cwd=ROOT, env=app_free_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: True if partial_files(dst.parent) or process.poll() is not None else None,
                 "the run to start writing")
        assert process.poll() is None, "the run ended before it could be terminated; give it a bigger file"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated; no output written"
    assert partial_files(dst.parent) == []
    assert not dst.exists()


# --------------------------------------------------------------------------- destinations that are not plain files


def test_a_symlink_dst_is_written_through_to_its_target(run_cli: RunCli, src: Path, tmp_path: Path) -> None:
    target = tmp_path / "real.parquet"
    target.write_bytes(b"old contents")
    link = tmp_path / "link.parquet"
    link.symlink_to(target)

    result = run_cli(src, link)

    assert result.code == 0, result.err
    assert link.is_symlink(), "the link must stay a link"
    assert_recompressed(src, target)
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_a_dst_that_is_not_a_regular_file_is_refused_in_one_line(run_cli: RunCli, src: Path, tmp_path: Path,
                                                                  kind: str) -> None:
    if kind == "fifo":
        dst = tmp_path / "pipe"
        os.mkfifo(dst)
        what = "a FIFO"
    elif kind == "folder":
        dst = tmp_path / "folder"
        dst.mkdir()
        what = "a folder"
    else:
        dst, what = Path("/dev/null"), "a character device"

    result = run_cli(src, dst)

    assert result.code == 2
    assert result.err_lines == [f"error: {dst}: is {what}; the destination must be a regular file path"]
    assert (dst.is_fifo() if kind == "fifo" else dst.is_dir() if kind == "folder" else dst.is_char_device())
    assert partial_files(tmp_path) == []


def test_duplicate_column_names_come_out_exact(run_cli: RunCli, tmp_path: Path) -> None:
    src, dst = tmp_path / "dup.parquet", tmp_path / "dup.out.parquet"
    table = pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4])], names=["a", "a"])
    pq.write_table(table, src, row_group_size=1)

    result = run_cli(src, dst, "--json")

    assert result.code == 0, result.err
    assert json.loads(result.out)["mode"] == "exact"
    assert pq.ParquetFile(dst).read().equals(pq.ParquetFile(src).read())
    assert codec_of(dst.read_bytes()) == {"ZSTD"}

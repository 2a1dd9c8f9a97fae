"""Settings.from_env: every RECOMPRESS_* app setting parsed, and every bad one named in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shared import cli
from shared.errors import ConfigError
from shared.settings import (
    MAX_WORKERS,
    PREFIX,
    Settings,
    describe,
    documented,
    env_name,
    example_values,
    markdown_table,
)


def config_error(env: dict[str, str]) -> str:
    """The message of the ConfigError that ``env`` must cause."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return str(caught.value)


# --------------------------------------------------------------------------- defaults


def test_an_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.input_container == "input"
    assert settings.output_container == "output"
    assert settings.zstd_level is None, "unset: each mode uses its own measured default"
    assert settings.mode == "auto"
    assert settings.verify == "full"
    assert settings.row_group_size == 1024 * 1024
    assert settings.columns is None
    assert settings.ranged_read_threshold == 64 * 1024**2
    assert settings.block_size == 8 * 1024**2
    assert settings.max_body_size == 100 * 1024**2
    assert settings.transform is None
    assert settings.download_concurrency == 4
    assert settings.upload_concurrency == 4
    assert settings.quarantine_container == "quarantine"
    assert settings.delete_source is False
    assert settings.max_concurrent_files == 2
    assert settings.max_blob_size == 50 * 1024**3
    assert settings.max_columns == 10_000
    assert settings.max_nesting_depth == 32
    assert settings.max_rows == 10**10
    assert settings.max_row_group_bytes == 2 * 1024**3
    assert settings.deadline_seconds == 540
    assert settings.workers is None, "unset: the usable cores"
    assert settings.memory_budget == 512 * 1024**2


def test_unset_workers_are_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)

    assert Settings().worker_threads == 3
    assert Settings(workers=1).worker_threads == 1


def test_unset_workers_are_bounded_however_many_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(200)), raising=False)

    assert Settings().worker_threads == MAX_WORKERS


def test_blank_values_mean_the_default() -> None:
    env = {f"RECOMPRESS_{key}": "  " for key in ("INPUT_CONTAINER", "ZSTD_LEVEL", "COLUMNS", "BLOCK_SIZE", "TRANSFORM")}

    assert Settings.from_env(env) == Settings()


def test_without_an_argument_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("RECOMPRESS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("RECOMPRESS_ZSTD_LEVEL", "11")
    monkeypatch.setenv("RECOMPRESS_OUTPUT_CONTAINER", "from-os-environ")

    settings = Settings.from_env()

    assert settings.zstd_level == 11
    assert settings.output_container == "from-os-environ"


def test_the_storage_connection_is_read_with_the_settings_and_never_shown() -> None:
    env = {"ParquetStorage": "AccountName=a;AccountKey=c2VjcmV0;", "ParquetStorage__clientId": "id-1"}

    settings = Settings.from_env(env)

    assert settings.connection.connection_string == env["ParquetStorage"]
    assert settings.connection.client_id == "id-1"
    assert "c2VjcmV0" not in repr(settings)
    assert settings.connection.how_signed_in() == "the connection string in ParquetStorage"


# --------------------------------------------------------------------------- each setting parsed


@pytest.mark.parametrize(
    ("key", "raw", "field", "expected"),
    [
        pytest.param("INPUT_CONTAINER", "raw-files", "input_container", "raw-files", id="input-container"),
        pytest.param("OUTPUT_CONTAINER", "zstd01", "output_container", "zstd01", id="output-container"),
        pytest.param("OUTPUT_CONTAINER", "a" * 63, "output_container", "a" * 63, id="container-63-chars"),
        pytest.param("ZSTD_LEVEL", "1", "zstd_level", 1, id="level-1"),
        pytest.param("ZSTD_LEVEL", " 22 ", "zstd_level", 22, id="level-22-padded"),
        pytest.param("ROW_GROUP_SIZE", "250000", "row_group_size", 250_000, id="row-group-size"),
        pytest.param("COLUMNS", "a, b ,c", "columns", ("a", "b", "c"), id="columns-trimmed"),
        pytest.param("COLUMNS", "b,,a,", "columns", ("b", "a"), id="columns-empty-parts-skipped"),
        pytest.param("COLUMNS", " , ", "columns", None, id="columns-blank-means-all"),
        pytest.param("RANGED_READ_THRESHOLD", "67108864", "ranged_read_threshold", 67_108_864, id="size-plain-int"),
        pytest.param("RANGED_READ_THRESHOLD", "64MiB", "ranged_read_threshold", 64 * 1024**2, id="size-MiB"),
        pytest.param("MAX_BODY_SIZE", "100MB", "max_body_size", 100_000_000, id="size-MB"),
        pytest.param("MAX_BODY_SIZE", "2 GiB", "max_body_size", 2 * 1024**3, id="size-GiB-with-space"),
        pytest.param("MAX_BODY_SIZE", "512kb", "max_body_size", 512_000, id="size-kb-lowercase"),
        pytest.param("MAX_BODY_SIZE", "5m", "max_body_size", 5_000_000, id="size-bare-m"),
        pytest.param("MAX_BODY_SIZE", "7Gi", "max_body_size", 7 * 1024**3, id="size-Gi"),
        pytest.param("MAX_BODY_SIZE", "123b", "max_body_size", 123, id="size-bytes"),
        pytest.param("BLOCK_SIZE", "64KiB", "block_size", 64 * 1024, id="block-size-minimum"),
        pytest.param("BLOCK_SIZE", "4000MiB", "block_size", 4000 * 1024**2, id="block-size-maximum"),
        pytest.param("TRANSFORM", " pkg.module:function ", "transform", "pkg.module:function", id="transform"),
        pytest.param("DOWNLOAD_CONCURRENCY", "64", "download_concurrency", 64, id="download-concurrency"),
        pytest.param("UPLOAD_CONCURRENCY", "1", "upload_concurrency", 1, id="upload-concurrency"),
        pytest.param("QUARANTINE_CONTAINER", "bad-files", "quarantine_container", "bad-files", id="quarantine"),
        pytest.param("DELETE_SOURCE", "true", "delete_source", True, id="delete-source-true"),
        pytest.param("DELETE_SOURCE", "YES", "delete_source", True, id="delete-source-YES"),
        pytest.param("DELETE_SOURCE", "1", "delete_source", True, id="delete-source-1"),
        pytest.param("DELETE_SOURCE", "on", "delete_source", True, id="delete-source-on"),
        pytest.param("DELETE_SOURCE", "False", "delete_source", False, id="delete-source-False"),
        pytest.param("DELETE_SOURCE", "0", "delete_source", False, id="delete-source-0"),
        pytest.param("DELETE_SOURCE", "off", "delete_source", False, id="delete-source-off"),
        pytest.param("MAX_CONCURRENT_FILES", "8", "max_concurrent_files", 8, id="max-concurrent-files"),
        pytest.param("MAX_BLOB_SIZE", "10GiB", "max_blob_size", 10 * 1024**3, id="max-blob-size"),
        pytest.param("MAX_COLUMNS", "500", "max_columns", 500, id="max-columns"),
        pytest.param("MAX_NESTING_DEPTH", "5", "max_nesting_depth", 5, id="max-nesting-depth"),
        pytest.param("MAX_ROWS", "1000000", "max_rows", 1_000_000, id="max-rows"),
        pytest.param("MAX_ROW_GROUP_BYTES", "512MiB", "max_row_group_bytes", 512 * 1024**2, id="max-row-group-bytes"),
        pytest.param("DEADLINE_SECONDS", "60", "deadline_seconds", 60, id="deadline-seconds"),
        pytest.param("WORKERS", "1", "workers", 1, id="workers-1"),
        pytest.param("WORKERS", "16", "workers", 16, id="workers-16"),
        pytest.param("MEMORY_BUDGET", "256MiB", "memory_budget", 256 * 1024**2, id="memory-budget"),
        pytest.param("MEMORY_BUDGET", "16MiB", "memory_budget", 16 * 1024**2, id="memory-budget-minimum"),
    ],
)
def test_each_setting_is_parsed(key: str, raw: str, field: str, expected: object) -> None:
    settings = Settings.from_env({f"RECOMPRESS_{key}": raw})

    assert getattr(settings, field) == expected


def test_unrelated_settings_keep_their_defaults_when_one_is_set() -> None:
    settings = Settings.from_env({"RECOMPRESS_ZSTD_LEVEL": "9"})

    assert settings == Settings(zstd_level=9)


# --------------------------------------------------------------------------- each bad value named


@pytest.mark.parametrize(
    ("key", "raw", "problem"),
    [
        pytest.param("ZSTD_LEVEL", "abc", "must be a whole number from 1 to 22, got 'abc'", id="level-abc"),
        pytest.param("ZSTD_LEVEL", "0", "must be from 1 to 22, got 0", id="level-0"),
        pytest.param("ZSTD_LEVEL", "23", "must be from 1 to 22, got 23", id="level-23"),
        pytest.param("ZSTD_LEVEL", "-1", "must be from 1 to 22, got -1", id="level-negative"),
        pytest.param("ZSTD_LEVEL", "3.5", "must be a whole number", id="level-fraction"),
        pytest.param("ROW_GROUP_SIZE", "0", "must be from 1 to", id="row-group-size-0"),
        pytest.param("ROW_GROUP_SIZE", str(2**31 + 1), "must be from 1 to", id="row-group-size-too-big"),
        pytest.param("ROW_GROUP_SIZE", "1M", "must be a whole number, got '1M'", id="row-group-size-with-unit"),
        pytest.param("DOWNLOAD_CONCURRENCY", "65", "must be from 1 to 64, got 65", id="download-concurrency-65"),
        pytest.param("UPLOAD_CONCURRENCY", "0", "must be from 1 to 64, got 0", id="upload-concurrency-0"),
        pytest.param("UPLOAD_CONCURRENCY", "four", "must be a whole number", id="upload-concurrency-word"),
        pytest.param("RANGED_READ_THRESHOLD", "64TB", "must be a size such as", id="size-unknown-unit"),
        pytest.param("RANGED_READ_THRESHOLD", "1.5GB", "must be a size such as", id="size-fraction"),
        pytest.param("RANGED_READ_THRESHOLD", "-1", "must be a size such as", id="size-negative"),
        pytest.param("RANGED_READ_THRESHOLD", "0", "must be from 1 to", id="size-zero"),
        pytest.param("MAX_BODY_SIZE", "lots", "must be a size such as", id="size-word"),
        pytest.param("BLOCK_SIZE", "1KiB", "must be from 65536 to", id="block-size-too-small"),
        pytest.param("BLOCK_SIZE", "5GiB", "must be from 65536 to", id="block-size-too-big"),
        pytest.param("INPUT_CONTAINER", "ab", "not a valid container name", id="container-too-short"),
        pytest.param("INPUT_CONTAINER", "a" * 64, "not a valid container name", id="container-too-long"),
        pytest.param("INPUT_CONTAINER", "Input", "not a valid container name", id="container-uppercase"),
        pytest.param("OUTPUT_CONTAINER", "out--put", "not a valid container name", id="container-double-hyphen"),
        pytest.param("OUTPUT_CONTAINER", "-output", "not a valid container name", id="container-leading-hyphen"),
        pytest.param("OUTPUT_CONTAINER", "output-", "not a valid container name", id="container-trailing-hyphen"),
        pytest.param("OUTPUT_CONTAINER", "out_put", "not a valid container name", id="container-underscore"),
        pytest.param("OUTPUT_CONTAINER", "out/put", "not a valid container name", id="container-slash"),
        pytest.param("QUARANTINE_CONTAINER", "Quarantine", "not a valid container name", id="quarantine-uppercase"),
        pytest.param("DELETE_SOURCE", "maybe", "must be true or false, got 'maybe'", id="delete-source-maybe"),
        pytest.param("MAX_CONCURRENT_FILES", "0", "must be from 1 to 256, got 0", id="max-concurrent-files-0"),
        pytest.param("MAX_CONCURRENT_FILES", "257", "must be from 1 to 256, got 257", id="max-concurrent-files-257"),
        pytest.param("MAX_BLOB_SIZE", "50 TB", "must be a size such as", id="max-blob-size-unit"),
        pytest.param("MAX_COLUMNS", "0", "must be from 1 to", id="max-columns-0"),
        pytest.param("MAX_NESTING_DEPTH", "deep", "must be a whole number", id="max-nesting-depth-word"),
        pytest.param("MAX_ROWS", "-1", "must be from 0 to", id="max-rows-negative"),
        pytest.param("MAX_ROW_GROUP_BYTES", "0", "must be from 1 to", id="max-row-group-bytes-0"),
        pytest.param("DEADLINE_SECONDS", "0", "must be from 1 to", id="deadline-0"),
        pytest.param("DEADLINE_SECONDS", "1.5", "must be a whole number", id="deadline-fraction"),
        pytest.param("WORKERS", "0", "must be from 1 to 16, got 0", id="workers-0"),
        pytest.param("WORKERS", "17", "must be from 1 to 16, got 17", id="workers-17"),
        pytest.param("WORKERS", "two", "must be a whole number", id="workers-word"),
        pytest.param("MEMORY_BUDGET", "8MiB", "must be from 16777216 to", id="memory-budget-too-small"),
        pytest.param("MEMORY_BUDGET", "lots", "must be a size such as", id="memory-budget-word"),
        pytest.param("COLUMNS", "a,b,a", "names a column twice: 'a'", id="columns-duplicate"),
        pytest.param("COLUMNS", "a, b , b,a", "names a column twice: 'a', 'b'", id="columns-duplicates-after-trimming"),
    ],
)
def test_each_bad_value_is_a_one_line_config_error_naming_the_setting(key: str, raw: str, problem: str) -> None:
    message = config_error({f"RECOMPRESS_{key}": raw})

    assert message.startswith(f"RECOMPRESS_{key}: ")
    assert problem in message
    assert "\n" not in message


def test_a_value_with_a_line_break_still_gives_a_one_line_message() -> None:
    message = config_error({"RECOMPRESS_ZSTD_LEVEL": "3\n4"})

    assert message.startswith("RECOMPRESS_ZSTD_LEVEL: ")
    assert "\n" not in message


def test_a_duplicate_column_with_a_line_break_still_gives_a_one_line_message() -> None:
    message = config_error({"RECOMPRESS_COLUMNS": "a\nb,a\nb"})

    assert "\n" not in message


def test_the_first_bad_setting_is_reported_even_when_others_are_fine() -> None:
    message = config_error({"RECOMPRESS_ZSTD_LEVEL": "5", "RECOMPRESS_BLOCK_SIZE": "huge"})

    assert message.startswith("RECOMPRESS_BLOCK_SIZE: ")


# --------------------------------------------------------------------------- overrides


def test_with_overrides_applies_values_and_ignores_none() -> None:
    base = Settings.from_env({"RECOMPRESS_ZSTD_LEVEL": "7", "RECOMPRESS_COLUMNS": "a,b"})

    changed = base.with_overrides(zstd_level=None, columns=("c",), row_group_size=None, transform=None)

    assert changed.zstd_level == 7
    assert changed.columns == ("c",)
    assert changed.row_group_size == base.row_group_size
    assert changed.transform is None
    assert base.columns == ("a", "b"), "the original must not change"


def test_with_overrides_of_only_none_changes_nothing() -> None:
    base = Settings(zstd_level=12, columns=("x",))

    assert base.with_overrides(zstd_level=None, columns=None, row_group_size=None) == base


# --------------------------------------------------------------------------- the docs come from the settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_the_one_the_settings_print() -> None:
    readme = (ROOT / "README.md").read_text()

    assert markdown_table() in readme, "regenerate it: python -m shared settings"


def test_the_example_settings_list_every_setting_at_its_default() -> None:
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]

    assert {k: v for k, v in values.items() if k.startswith(PREFIX)} == example_values()


def test_the_cli_help_names_each_default_the_settings_hold(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["recompress", "--help"])
    text = " ".join(capsys.readouterr().out.split())

    for name in ("mode", "verify", "zstd_level", "columns", "row_group_size"):
        assert " ".join(describe(name).split()) in text


def test_every_documented_setting_is_read_from_its_variable() -> None:
    for spec in documented():
        raw = example_values()[env_name(spec)] or None
        if raw is None:
            continue
        assert getattr(Settings.from_env({env_name(spec): raw}), spec.name) == getattr(Settings(), spec.name)


@pytest.mark.parametrize(("first", "second"), [("INPUT", "OUTPUT"), ("INPUT", "QUARANTINE"), ("OUTPUT", "QUARANTINE")])
def test_two_roles_cannot_share_a_container(first: str, second: str) -> None:
    env = {f"RECOMPRESS_{first}_CONTAINER": "same", f"RECOMPRESS_{second}_CONTAINER": "same"}

    message = config_error(env)

    assert message.startswith(f"RECOMPRESS_{second}_CONTAINER: is 'same', the same container as "
                              f"RECOMPRESS_{first}_CONTAINER")


def test_limits_are_taken_from_the_settings_by_name() -> None:
    settings = Settings.from_env({"RECOMPRESS_MAX_COLUMNS": "7", "RECOMPRESS_DEADLINE_SECONDS": "9"})

    assert settings.limits.max_columns == 7
    assert settings.limits.deadline_seconds == 9
    assert settings.limits.max_rows == Settings().max_rows

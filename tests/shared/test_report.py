"""The report line: what people and log searches read, so sizes read well and names cannot forge lines."""

from __future__ import annotations

import logging

import pytest

from shared.report import Report, change, human_bytes, log

FORGED = "x.parquet\n2026-01-01 00:00:00,000 INFO recompress: input/forged.parquet: 5 rows\r\x1b[2K"


def test_sizes_read_as_people_read_them() -> None:
    assert [human_bytes(n) for n in (812, 21_200, 115_407_175, 2_314_800_000)] == [
        "812 B", "21.2 kB", "115.4 MB", "2.3 GB"]
    assert change(115_407_175, 61_016_972) == "−47 %"
    assert change(100, 101) == "+1 %"


def test_a_blob_name_cannot_forge_or_break_a_report_line() -> None:
    report = Report(FORGED, "output/x", 0, 0, 0, 0, 1, status="quarantined", error=f"{FORGED}: not Parquet")

    line = report.line()

    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert "\\n2026-01-01" in line


def test_every_line_the_app_logs_has_its_control_characters_escaped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="recompress"):
        log.warning("%s: quarantined: %s", FORGED, "Arrow said:\nmore")

    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert record.getMessage().startswith("x.parquet\\n2026-01-01")

"""Real files from other writers, through the CLI as a user runs it: every one comes out exact.

``python -m shared recompress`` in ``auto`` and in ``exact`` must give zstd
output whose Parquet schema, footer key-value pairs, row counts and values
are the input's (``../shared/corpus``: parquet-mr, Impala, Parquet.Net,
parquet-cpp, fastparquet). Files that auto re-encodes are held to the same
rule, so a re-encode may only ever be chosen where it is provably identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import cli
from tests.shared.parquet.corpus import CORPUS, assert_same_file, corpus_files

FILES = corpus_files()


def recompress(src: Path, dst: Path, *options: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    """Run the CLI in-process; return its JSON report."""
    code = cli.main(["recompress", str(src), str(dst), "--json", "--no-progress", *options])
    out, err = capsys.readouterr()
    assert code == 0, err
    report: dict[str, object] = json.loads(out)
    return report


@pytest.mark.parametrize("mode", ["auto", "exact"])
@pytest.mark.parametrize("path", FILES or [None], ids=lambda p: str(p.relative_to(CORPUS)) if p else "absent")
def test_every_corpus_file_comes_out_exact(path: Path | None, mode: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    if path is None:
        pytest.skip(f"the corpus of other writers' files is not at {CORPUS}")
    dst = tmp_path / "out.parquet"

    report = recompress(path, dst, "--mode", mode, capsys=capsys)

    assert report["mode"] in ("exact", "reencode")
    assert_same_file(path.read_bytes(), dst.read_bytes(), same_writer=report["mode"] == "exact")
    assert str(report["mode_reason"]).startswith(f"{report['mode']}: ")
    if mode == "exact":
        assert report["mode"] == "exact"


def test_auto_says_why_it_keeps_the_pages_of_a_file_arrow_would_change(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "mr_times.parq"
    if not path.exists():
        pytest.skip(f"the corpus of other writers' files is not at {CORPUS}")

    report = recompress(path, tmp_path / "out.parquet", capsys=capsys)

    assert report["mode"] == "exact"
    assert "INT96" in str(report["mode_reason"])

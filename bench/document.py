"""``results.md``: the run's tables with the context needed to read them later.

The file is meant to be committed after a run, so it records the machine,
the date, the exact command and how each way was configured; figures
without these can't be compared with anyone else's.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench import RESULTS_PNG
from bench.datagen import LARGE, SPECS
from bench.machine import facts
from bench.report import markdown, tables
from bench.results import Run

METHOD = """\
Each way runs as a whole child process (start-up and imports included), round-robin: every repeat runs every way
on every input once, and the order of the ways rotates from repeat to repeat. Figures are medians over the repeats.
Wall is the parent's clock around the child; CPU is the child's user + system time and peak RSS its `ru_maxrss`,
both from `os.wait4`. Output is the size of the file (or blob) written. Ratios (×best peer) are to the lowest value
among the peers (notes, pyarrow, polars, DuckDB; never another app way) on that input in the same run.
MB = 10⁶ bytes. A run during which the rest of the machine used more than 0.25 CPU s + 10 % of the run's wall time
(another process taking a core) is run again, up to {retries} time(s) (`--retries`), and the least disturbed
attempt is kept.

Ways: the app is `python -m shared recompress SRC DST --json`, run from a copy of `shared/` taken when the run
started (the commit below, plus any uncommitted changes it had then), five ways: **app** at its default settings
(auto: exact unless re-encoding is provably identical; the mode it ran is read from its
`--json` report and shown in the `mode` column), **app-exact** (`--mode exact`, full proof: every value decoded),
**app-exact-pages** (`--mode exact --verify pages`: page bytes, footer and counts checked, no decoding),
**app-reencode** (`--mode reencode`, the default reader policy `input`) and **app-reencode-modern**
(`--mode reencode --readers modern`), each at its mode's default zstd level (1 for both), with the default
`RECOMPRESS_WORKERS` (the usable cores) and `RECOMPRESS_MEMORY_BUDGET` (512 MiB). **notes** is
BytesIO → `pandas.read_parquet` → `pa.Table.from_pandas` → `pq.write_table(compression='zstd')` into a
`BufferOutputStream` → bytes to the file (for blobs: `download_blob().readinto(BytesIO)` … `upload_blob(bytes)`);
**pyarrow** is `pq.write_table(pq.read_table(src), dst, compression='zstd')`; **polars** is
`pl.read_parquet(src).write_parquet(dst, compression='zstd')`; **duckdb** is
`COPY (SELECT * FROM 'src') TO 'dst' (FORMAT PARQUET, COMPRESSION ZSTD)`. The peers use their library's default
zstd level; the app its own (see the level sweep).

Where a re-encode target is missed, `bench/phases.py` runs the app's re-encode once more on that input with each
phase wrapped to add up the CPU time of the thread running it (`time.thread_time`; py-spy is not in the venv and
cProfile sees one thread): the encoding trial, encode, prove (decode the part again and compare), the reader-policy
check and the append to the output. Decoding runs on Arrow's threads, so it is what the phases leave of the
process's CPU. `CPU floor` is the process's CPU, start-up included, over the workers: no scheduling gets the wall
below it on this machine."""

INPUTS = {
    "mixed": "ids, timestamps, doubles, small ints, low- and high-cardinality strings, booleans, a nullable column",
    "wide": "200 columns cycling int32, double, low-cardinality string, nullable int64, boolean",
    "strings": "UUIDs, URLs, free text, e-mail-like names, SHA-like hex, SKU codes, titles",
    "nested": "list<string>, list<double>, struct<x, y, label>, list<struct<sku, qty, price>>, with nulls",
    "mixed_polars": "the mixed rows, written by polars `write_parquet` at its defaults",
    "mixed_duckdb": "the mixed rows, written by DuckDB `COPY ... (FORMAT PARQUET)` at its defaults (1 thread)",
    "mixed_large": "the mixed generator with 20× the rows (memory check, `--large`)",
}


def _layout(path: Path) -> tuple[str, str, str]:
    """Codec, row groups (count × rows in the first) and the data encodings, from the file's footer."""
    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return "?", "?", "?"
    if meta.num_row_groups == 0:
        return "—", "0", "—"
    group = meta.row_group(0)
    codecs = sorted({group.column(i).compression for i in range(group.num_columns)})
    encodings = sorted({e for i in range(group.num_columns) for e in group.column(i).encodings} - {"RLE"})
    return "/".join(codecs), f"{meta.num_row_groups} × {group.num_rows:,}", ", ".join(encodings)


def write(run: Run, path: Path, chart: bool) -> None:
    """Write the whole report for ``run`` to ``path``."""
    lines = [
        "# Benchmark results",
        "",
        f"Measured {run.started} with `{run.command}`: {run.repeats} repeat{'s' if run.repeats > 1 else ''}, "
        f"{run.total_s:.0f} s for the whole run (generation included).",
        "",
        "## Machine",
        "",
        *(f"- {name}: {value}" for name, value in facts()),
        f"- during the run: {run.interference}",
        "",
        "## Inputs",
        "",
        "Generated by `bench/datagen.py` (deterministic seeds). The pyarrow files are written snappy with the row "
        "groups shown; the polars and DuckDB files hold the same rows as `mixed`, written by those libraries at "
        "their defaults (codec, row-group size, encodings), so the app is measured on files from writers other "
        "than its own library. Encodings are those of the first row group's column chunks (RLE for levels left "
        "out).",
        "",
        "| input | writer | codec | row groups | encodings | rows | MB | contents |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for name, size in run.input_sizes.items():
        spec = SPECS.get(name, LARGE)
        codec, groups, encodings = _layout(spec.path)
        lines.append(f"| {name} | {spec.writer} | {codec} | {groups} | {encodings} | {run.input_rows.get(name, 0):,} "
                     f"| {size / 1e6:.1f} | {INPUTS.get(name, '')} |")
    lines += ["", "## Method", "", METHOD.format(retries=run.retries), ""]
    for title, headers, rows in tables(run, labels=False):
        lines += [f"## {title}", "", markdown(headers, rows), ""]
    if run.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in run.notes), ""]
    if chart:
        lines += ["## Chart", "", f"![benchmark chart]({RESULTS_PNG.name})", ""]
    path.write_text("\n".join(lines), encoding="utf-8")

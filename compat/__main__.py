"""``python -m compat``: write every input under every policy, have every reader read it, enforce the rule.

The rule (:mod:`shared.readers`): a reader held to a policy that reads an
input must read each output written under that policy, with equal values.
Under ``input`` (and the default ``auto``, which is ``input``) every reader is
held; under a profile, the profile's readers. Exit status 1 names each break.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from compat import CORPUS, MATRIX_MD, READERS, ROOT, WORK, inputs
from shared import readers

#: The outputs made of each input: the default (auto, input policy), then re-encode under each policy.
VARIANTS: tuple[tuple[str, str | None], ...] = (("auto", None), *((p, p) for p in readers.POLICIES))
#: Encodings every reader must read anyway; the matrix shows only the others a file uses.
_STRUCTURAL = readers.STRUCTURAL
_SHORT = {"DELTA_BINARY_PACKED": "DBP", "DELTA_LENGTH_BYTE_ARRAY": "DLBA", "DELTA_BYTE_ARRAY": "DBA",
          "BYTE_STREAM_SPLIT": "BSS"}
READER_TIMEOUT = 900


@dataclass(frozen=True)
class Output:
    """One file the app wrote (or refused to write) from one input under one variant."""

    source: Path
    variant: str
    path: Path | None
    size: int
    mode: str
    note: str

    @property
    def policy(self) -> str:
        return readers.INPUT if self.variant == "auto" else self.variant


def main() -> int:
    started = time.perf_counter()
    shutil.rmtree(WORK, ignore_errors=True)
    sources = inputs.build(WORK / "in")
    outputs = write_outputs(sources, WORK / "out")
    measured = write_outputs([inputs.sizes_input(WORK / "sizes")], WORK / "sizes")
    _phase("inputs and outputs written", started)
    files = [str(p) for p in sources] + [str(o.path) for o in outputs if o.path is not None]
    results = read_all(files)
    _phase("every reader read every file", started)
    cells, breaks = judge(outputs, results)
    text = matrix_markdown(outputs, measured, cells, sources, time.perf_counter() - started)
    MATRIX_MD.write_text(text, encoding="utf-8")
    print(text)
    for line in breaks:
        print(f"BROKEN: {line}", file=sys.stderr)
    print(f"make compat: {len(outputs)} outputs of {len(sources)} inputs, {len(READERS)} readers, "
          f"{len(breaks)} broken, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 1 if breaks else 0


def _phase(what: str, started: float) -> None:
    print(f"make compat: {what} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- writing, with the app's CLI


def write_outputs(sources: list[Path], folder: Path) -> list[Output]:
    """Every input under every variant, two CLI processes at a time (the machine has two cores)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(src, variant, policy) for src in sources for variant, policy in VARIANTS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda job: write_one(job[0], job[1], job[2], folder), jobs))


def write_one(src: Path, variant: str, policy: str | None, folder: Path) -> Output:
    """``python -m shared recompress SRC DST [--mode reencode --readers P] --json``, as a user runs it."""
    dst = folder / f"{src.name}.{variant}.parquet"
    command = [sys.executable, "-m", "shared", "recompress", str(src), str(dst), "--json", "--no-progress"]
    if policy is not None:
        command += ["--mode", "reencode", "--readers", policy]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOMPRESS_")}  # the defaults, always
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return Output(src, variant, None, 0, "refused", done.stderr.strip().splitlines()[-1][:200])
    report = json.loads(done.stdout)
    return Output(src, variant, dst, dst.stat().st_size, str(report["mode"]), "")


# --------------------------------------------------------------------------- reading, one process per reader


def read_all(files: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each reader's results for every file: Spark first, since its start-up is the longest."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(READERS, pool.map(lambda name: run_reader(name, files), READERS), strict=True))


def run_reader(name: str, files: list[str]) -> dict[str, dict[str, Any]]:
    """Run ``compat/read.py`` under the reader's own Python; a reader that cannot run fails every file."""
    python = READERS[name]
    if not python.exists():
        return {f: {"error": f"reader not installed ({python}); run make compat"} for f in files}
    with tempfile.TemporaryDirectory() as temp:
        jobs, out = Path(temp, "jobs.json"), Path(temp, "out.json")
        jobs.write_text(json.dumps(files), encoding="utf-8")
        done = subprocess.run([str(python), str(ROOT / "compat" / "read.py"), name, str(jobs), str(out)],
                              capture_output=True, text=True, timeout=READER_TIMEOUT, check=False)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {f: {"error": f"reader crashed: {tail[:200]}"} for f in files}
        results: dict[str, dict[str, Any]] = json.loads(out.read_text(encoding="utf-8"))
        return results


# --------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Cell:
    text: str
    broken: bool


def judge(outputs: list[Output], results: dict[str, dict[str, dict[str, Any]]]
          ) -> tuple[dict[tuple[str, str], Cell], list[str]]:
    """A cell per output and reader, and a line for each break of the rule."""
    cells: dict[tuple[str, str], Cell] = {}
    breaks = [f"{o.source.name} [{o.variant}]: the app's own policy check refused it: {o.note}"
              for o in outputs if "check: reader policy" in o.note]  # the writer disobeyed the plan
    for output in outputs:
        read_input = [r for r in READERS if "digest" in results[r].get(str(output.source), {})]
        held = readers.readers_held(output.policy, read_input)
        for reader in READERS:
            cell = _cell(output, results[reader], reader in held)
            cells[(_key(output), reader)] = cell
            if cell.broken:
                breaks.append(f"{output.source.name} [{output.variant}] {reader}: {cell.text}")
    return cells, breaks


def _cell(output: Output, results: dict[str, dict[str, Any]], held: bool) -> Cell:
    if output.path is None:
        return Cell("—", broken=False)
    before, after = results.get(str(output.source), {}), results.get(str(output.path), {})
    if "digest" not in before:
        return Cell("reads (input ✗)" if "digest" in after else "✗ (input ✗ too)", broken=False)
    if "digest" not in after:
        return Cell(f"✗ {after.get('error', 'no result')}", broken=held)
    if after["digest"] != before["digest"] or after["rows"] != before["rows"]:
        return Cell("≠ values differ", broken=held)
    if after["types"] != before["types"]:
        return Cell("ok, other dtypes", broken=False)
    return Cell("ok", broken=False)


def _key(output: Output) -> str:
    return f"{output.source}|{output.variant}"


# --------------------------------------------------------------------------- the report


def used_encodings(path: Path | None) -> str:
    """The encodings beyond the structural ones a file uses, and ``v2`` when its pages are v2 (short names)."""
    if path is None:
        return ""
    meta = pq.read_metadata(path)
    found: set[str] = set()
    for group in range(meta.num_row_groups):
        for column in range(meta.num_columns):
            found.update(meta.row_group(group).column(column).encodings)
    return ",".join(sorted(_SHORT.get(e, e) for e in found - _STRUCTURAL)) or "-"


def matrix_markdown(outputs: list[Output], measured: list[Output], cells: dict[tuple[str, str], Cell],
                    sources: list[Path], seconds: float) -> str:
    """``bench/compat.md``: the summary per policy, sizes, then every output with every reader."""
    lines = ["# Who can read the output: the reader matrix", "",
             f"Written by `make compat` ({len(sources)} inputs, {len(outputs)} outputs, {seconds:.0f} s). "
             "Each output was written by `python -m shared recompress` (default `auto`, or `--mode reencode "
             "--readers P`); each reader read input and output in full and compared what it got. "
             "`ok`: equal values (`ok, other dtypes`: equal values, but the reader chose other column types); "
             "`✗`: the reader failed on the output; `≠`: other values; `reads (input ✗)`: "
             "the reader fails on the input but reads the output; `—`: the app refused (a re-encode that could "
             "not be proven or kept within the policy).", "",
             "## Summary: outputs read with equal values, of those whose input the reader read", "",
             *summary(outputs, cells), "", "## Bytes per policy", "",
             "Output bytes at the default zstd levels; `mixed-1M` is the bench's mixed table at 1,000,000 rows "
             "(pyarrow's defaults, one row group), the others are the matrix's inputs.", "",
             *sizes(measured + outputs), "",
             "## Every output", "",
             "| input | variant | mode | bytes | encodings | " + " | ".join(READERS) + " |",
             "|---|---|---|---:|---|" + "---|" * len(READERS)]
    for output in outputs:
        row = [output.source.name, output.variant, output.mode, str(output.size), used_encodings(output.path)]
        row += [_mark(cells[(_key(output), r)]) for r in READERS]
        lines.append("| " + " | ".join(_escape(c) for c in row) + " |")
    refused = ["| input | variant | why |", "|---|---|---|"]
    refused += [f"| {o.source.name} | {o.variant} | {_escape(o.note)} |" for o in outputs if o.path is None]
    lines += ["", "## Refused by the app", "", *refused]
    inputs_row = ["| input file | encodings |", "|---|---|"]
    inputs_row += [f"| {p.name} | {used_encodings(p)} |" for p in sources]
    return "\n".join([*lines, "", "## The inputs' own encodings", "", *inputs_row, ""])


def summary(outputs: list[Output], cells: dict[tuple[str, str], Cell]) -> list[str]:
    lines = ["| reader | " + " | ".join(v for v, _ in VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for reader in READERS:
        row = [reader]
        for variant, _ in VARIANTS:
            mine = [cells[(_key(o), reader)] for o in outputs if o.variant == variant]
            judged = [c for c in mine if c.text.startswith("ok") or (c.text.startswith(("✗ ", "≠"))
                      and "input ✗" not in c.text)]
            good = sum(c.text.startswith("ok") for c in judged)
            row.append(f"{good}/{len(judged)}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def sizes(outputs: list[Output]) -> list[str]:
    """Output bytes of each generated table under each variant (the corpus files are too small to say much)."""
    generated = sorted({o.source for o in outputs if o.source.parent != CORPUS}, key=_order(outputs))
    lines = ["| input | input bytes | " + " | ".join(v for v, _ in VARIANTS) + " |",
             "|---|---:|" + "---:|" * len(VARIANTS)]
    for source in generated:
        row = [source.name, str(source.stat().st_size)]
        for variant, _ in VARIANTS:
            match = next(o for o in outputs if o.source == source and o.variant == variant)
            row.append(str(match.size) if match.path else "—")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _order(outputs: Iterable[Output]) -> Any:
    order = {o.source: i for i, o in enumerate(outputs)}
    return lambda p: order[p]


def _mark(cell: Cell) -> str:
    return f"**{cell.text}** (BROKEN)" if cell.broken else cell.text


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    sys.exit(main())

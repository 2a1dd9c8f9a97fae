"""Helpers for tests: make Parquet files and compare them losslessly."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def noisy_table(rows: int, seed: int = 1) -> pa.Table:
    """Random data that compresses poorly, so outputs span many blocks even when small."""
    rng = np.random.default_rng(seed)
    return pa.table({"id": pa.array(range(rows), pa.int64()), "noise": rng.random(rows),
                     "bits": rng.integers(0, 2**62, rows)})


def parquet_bytes(table: pa.Table, **options: object) -> bytes:
    """Serialise ``table`` as Parquet in memory (snappy unless told otherwise)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **{"compression": "snappy", **options})
    return bytes(sink.getvalue().to_pybytes())


def sample_table(rows: int = 1000) -> pa.Table:
    """A small mixed table with nulls, a timezone and metadata: the common case."""
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "maybe": pa.array([None if i % 3 == 0 else i for i in range(rows)], pa.int64()),
            "name": pa.array([f"name-{i % 17}" for i in range(rows)]),
            "at": pa.array(range(rows), pa.timestamp("us", tz="UTC")),
            "x": pa.array([i / 7 for i in range(rows)], pa.float64()),
        },
        metadata={"origin": "tests"},
    )


def assert_same_data(original: bytes | Path | pa.Table, rewritten: bytes | Path) -> None:
    """Schema, key-value metadata and every value equal (NaN equal to NaN)."""
    want = original if isinstance(original, pa.Table) else _read(original)
    got = _read(rewritten)
    assert got.schema.equals(want.schema, check_metadata=True), f"{got.schema}\n!=\n{want.schema}"
    assert got.num_rows == want.num_rows
    for name in want.column_names:
        if not got[name].equals(want[name]):  # Arrow's equals counts NaN != NaN: look closer
            assert _nan_safe(got[name].to_pylist()) == _nan_safe(want[name].to_pylist()), f"column {name} differs"


def _nan_safe(value: Any) -> Any:
    """Replace NaN with a marker so Python equality treats NaN as equal to NaN."""
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, list | tuple):
        return [_nan_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_safe(v) for k, v in value.items()}
    return value


def _read(data: bytes | Path) -> pa.Table:
    source = pa.BufferReader(data) if isinstance(data, bytes) else str(data)
    return pq.read_table(source)


def codec_of(data: bytes) -> set[str]:
    """Every column chunk's codec in a Parquet file."""
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    return {
        meta.row_group(r).column(c).compression
        for r in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    }




# A fresh, small interpreter starts the measured command: Linux carries the
# peak RSS of a forking parent over into its child's ru_maxrss, so measuring
# straight from a big test process would report the test's own size.
_LAUNCHER = """
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(child.pid, 0)
err = child.stderr.read().decode(errors="replace")
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "peak_kib": usage.ru_maxrss, "stderr": err}))
"""


def peak_rss_kib(args: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run a command to completion and return its own peak RSS in KiB, as the kernel counted it."""
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, *args], env=env, cwd=cwd, capture_output=True,
                         check=True, text=True)
    result = json.loads(out.stdout)
    assert result["code"] == 0, result["stderr"]
    return int(result["peak_kib"])

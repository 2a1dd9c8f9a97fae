"""The reader matrix (``make compat``): every reader must still read what the app writes.

``python -m compat`` builds small inputs of several kinds and writers, writes
each one's output with the app's own CLI under every reader policy (and under
the default ``auto``), then has Spark 3.4 and 3.5 (vectorized reader), fastparquet,
DuckDB, polars and pyarrow read input and output in full. It enforces the rule
of :mod:`shared.readers` and writes the matrix to ``bench/compat.md``.

Readers that must not live in the dev venv (Spark, fastparquet) run from venvs
the Makefile builds under ``.compat/``; each reader is one child process that
reads every file once, so each Spark version starts one session.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Inputs and outputs, rebuilt on every run (git-ignored).
WORK = ROOT / "bench" / "work" / "compat"
MATRIX_MD = ROOT / "bench" / "compat.md"
VENVS = ROOT / ".compat"
CORPUS = ROOT.parent / "shared" / "corpus" / "fastparquet-test-data"

#: Each reader, and the Python that runs ``compat/read.py`` for it.
READERS: dict[str, Path] = {
    "spark3.4": VENVS / "spark3.4" / "bin" / "python",
    "spark3.5": VENVS / "spark3.5" / "bin" / "python",
    "fastparquet": VENVS / "fastparquet" / "bin" / "python",
    "duckdb": Path(sys.executable),
    "polars": Path(sys.executable),
    "pyarrow": Path(sys.executable),
}

"""Side-by-side benchmark of the app's recompression against the usual ways of doing it.

``python -m bench`` (``make bench``) generates reference inputs, times every
way as a whole child process, and writes ``bench/results.md`` and
``bench/results.png``. It lives in the repository, not the deployed app
(``.funcignore`` leaves it out), so that the performance targets in the
project's issue can be re-measured by anyone from a fresh clone.

This module holds only paths, so that importing any part of the package stays
cheap: the timed children never import it.
"""

from __future__ import annotations

from pathlib import Path

#: The project root: children run from here so ``python -m shared`` resolves.
ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
#: Generated inputs, reused across runs (git-ignored).
DATA = BENCH / "data"
#: Outputs of timed runs, deleted after each is measured (git-ignored).
WORK = BENCH / "work"
PEERS = BENCH / "peers"
RESULTS_MD = BENCH / "results.md"
RESULTS_PNG = BENCH / "results.png"

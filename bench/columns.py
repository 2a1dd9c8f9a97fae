"""Vectorised column builders for the generated inputs.

Building millions of strings with Python loops would make generation take
minutes; these build Arrow arrays straight from NumPy buffers or with Arrow
compute kernels, so a 5-million-row table takes a few seconds and a 2 GB one
stays within a few minutes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "pe", "da", "zu", "ri", "mo", "la", "qu", "en", "or"]


def numbered(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    """Strings like ``user-0004211``: a fixed prefix and ``values`` zero-padded to ``width`` digits."""
    count = len(values)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = ((values.astype(np.int64)[:, None] // powers) % 10 + ord("0")).astype(np.uint8)
    head = np.broadcast_to(np.frombuffer(prefix.encode(), dtype=np.uint8), (count, len(prefix)))
    return _fixed_width(np.concatenate([head, digits], axis=1))


def hex_strings(rng: np.random.Generator, count: int, width: int) -> pa.Array:
    """Random lowercase hex strings: high cardinality and high entropy, like hashes or ids."""
    return _fixed_width(_HEX[rng.integers(0, 16, size=(count, width))])


def uuids(rng: np.random.Generator, count: int) -> pa.Array:
    """Random UUID-shaped strings (8-4-4-4-12 hex digits)."""
    body = _HEX[rng.integers(0, 16, size=(count, 36))]
    body[:, [8, 13, 18, 23]] = ord("-")
    return _fixed_width(body)


def _fixed_width(matrix: np.ndarray) -> pa.Array:
    rows, width = matrix.shape
    offsets = np.arange(rows + 1, dtype=np.int32) * width
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix)))


def vocabulary(rng: np.random.Generator, size: int) -> pa.Array:
    """``size`` distinct pronounceable words, so text columns look like text to a compressor."""
    words: dict[str, None] = {}
    while len(words) < size:
        parts = rng.choice(len(_SYLLABLES), size=int(rng.integers(1, 5)))
        words["".join(_SYLLABLES[i] for i in parts)] = None
    return pa.array(list(words), pa.string())


def zipf_indices(rng: np.random.Generator, count: int, size: int, skew: float = 1.1) -> np.ndarray:
    """Indices into a vocabulary of ``size`` drawn with a Zipf-like skew, as real categories are."""
    weights = 1.0 / np.arange(1, size + 1) ** skew
    return rng.choice(size, size=count, p=weights / weights.sum())


def sentences(rng: np.random.Generator, words: pa.Array, count: int, low: int, high: int) -> pa.Array:
    """``count`` strings of ``low``..``high`` words picked from ``words``, joined by spaces."""
    lengths = rng.integers(low, high + 1, size=count)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    picked = pc.take(words, pa.array(zipf_indices(rng, int(offsets[-1]), len(words), 0.9)))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), picked), " ")


def with_nulls(rng: np.random.Generator, values: np.ndarray, share: float, type_: pa.DataType) -> pa.Array:
    """An Arrow array of ``values`` with about ``share`` of them null."""
    return pa.array(values, type_, mask=rng.random(len(values)) < share)


def list_offsets(rng: np.random.Generator, count: int, high: int) -> np.ndarray:
    """Offsets for ``count`` lists of 0..``high`` items each."""
    return np.concatenate([[0], np.cumsum(rng.integers(0, high + 1, size=count))]).astype(np.int32)

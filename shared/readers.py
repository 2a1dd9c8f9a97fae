"""The reader policies (``RECOMPRESS_READERS``) and the evidence behind each.

A smaller file is worthless if the jobs that read it fail. Exact mode keeps
every page's encoding, so it can never break a reader; re-encode chooses
encodings and writes new pages, and Spark's vectorized reader fails on
BYTE_STREAM_SPLIT while fastparquet fails on DELTA_BYTE_ARRAY. A policy bounds
what a re-encode may write:

* ``input`` (the default) takes nothing new: each column may use only the
  encodings the input file used for it, plus PLAIN and dictionary; the data
  pages keep the input's page version; no column gets a logical-type
  annotation the input did not give it. Whoever read the input reads the
  output.
* A named profile is a fixed set of encodings and data page versions, proven
  against the readers it names by the reader matrix (``make compat``, whose
  result is ``bench/compat.md``). It may add encodings the input lacked (for
  size) or drop ones it had (for readability).

Under every policy some things are always allowed, because every reader must
read them to read Parquet at all: PLAIN values, dictionary pages with
RLE_DICTIONARY (or PLAIN_DICTIONARY) indices, and RLE / BIT_PACKED levels.
And under every policy a column keeps its logical type: profiles widen
encodings and page versions only.

This module is pure: it decides, it never reads files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow.parquet as pq

INPUT = "input"
#: The writer's ``data_page_version`` values.
V1, V2 = "1.0", "2.0"

#: The encodings of pages every reader of Parquet must read, whatever the policy.
#: RLE and BIT_PACKED are listed for definition/repetition levels (and RLE for
#: v2 boolean pages); dictionary pages are PLAIN, their indices RLE_DICTIONARY
#: (PLAIN_DICTIONARY in format 1.0 writers).
STRUCTURAL = frozenset({"PLAIN", "RLE", "BIT_PACKED", "PLAIN_DICTIONARY", "RLE_DICTIONARY"})
#: What the encoding trial calls the dictionary choice (see :mod:`shared.encodings`).
DICTIONARY = "DICTIONARY"
#: Allowed under every policy, in the trial's vocabulary.
ALWAYS = frozenset({"PLAIN", DICTIONARY})


@dataclass(frozen=True)
class Profile:
    """A named reader profile: what it allows, which readers the matrix holds it to, and why."""

    name: str
    #: Value encodings a re-encode may choose, beyond PLAIN and dictionary.
    encodings: frozenset[str]
    page_versions: frozenset[str]
    #: Reader names in ``make compat`` that must read every output written under this profile.
    readers: tuple[str, ...]
    #: Who it is for, and what was measured.
    evidence: str


#: The named profiles. Each one's evidence is a measurement in ``bench/compat.md`` (``make compat``).
PROFILES: dict[str, Profile] = {
    "spark3.3": Profile(
        name="spark3.3",
        encodings=frozenset({"DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY"}),
        page_versions=frozenset({V1, V2}),
        readers=("spark3.4", "spark3.5", "duckdb", "polars", "pyarrow"),
        evidence=(
            "For Spark 3.3 and later (Databricks 12.2+ LTS, Synapse Spark 3.3/3.4, Fabric runtimes 1.1-1.3) with "
            "the vectorized reader on. Spark's VectorizedColumnReader reads the DELTA_* encodings since 3.3 "
            "(SPARK-36879) and v2 data pages, but not BYTE_STREAM_SPLIT before Spark 4.0 "
            "(`UnsupportedOperationException: Unsupported encoding: BYTE_STREAM_SPLIT`). Measured: pyspark 3.4.4 "
            "and 3.5.8 on OpenJDK 17, DuckDB, polars and pyarrow read every output of the matrix under this "
            "profile with values equal to the input's (bench/compat.md: 25/25 outputs for each Spark). fastparquet "
            "2026.9.0 does not read DELTA_BYTE_ARRAY (`NotImplementedError: Encoding 7`) and read the wide "
            "table's DELTA_BINARY_PACKED columns to other values without an error, so it is not in this profile."),
    ),
    "modern": Profile(
        name="modern",
        encodings=frozenset({"DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
                             "BYTE_STREAM_SPLIT"}),
        page_versions=frozenset({V1, V2}),
        readers=("duckdb", "polars", "pyarrow"),
        evidence=(
            "For readers of the current Parquet spec: pyarrow, polars, DuckDB (and Spark 4.0+, not in the "
            "matrix). Everything the encoding trial can choose, BYTE_STREAM_SPLIT for floats included. Measured: "
            "DuckDB, polars and pyarrow read every output of the matrix under this profile with equal values; "
            "Spark 3.4/3.5's vectorized reader and fastparquet fail on BYTE_STREAM_SPLIT."),
    ),
}
POLICIES: tuple[str, ...] = (INPUT, *PROFILES)


def profile(policy: str) -> Profile | None:
    """The named profile, or None for ``input``."""
    if policy == INPUT:
        return None
    if policy not in PROFILES:
        raise ValueError(f"unknown reader policy {policy!r}; known: {', '.join(POLICIES)}")
    return PROFILES[policy]


def readers_held(policy: str, read_input: Iterable[str]) -> list[str]:
    """The readers the matrix holds to a policy: under ``input`` those that read the input, else the profile's."""
    named = profile(policy)
    held = set(read_input) if named is None else set(named.readers)
    return sorted(held)


# --------------------------------------------------------------------------- encodings


@dataclass(frozen=True)
class Allowed:
    """The value encodings a re-encode may choose, per leaf column path, in the trial's vocabulary.

    ``default`` applies to a column the input did not have (a transform's):
    under ``input`` only PLAIN and dictionary, under a profile its set.
    """

    per_column: Mapping[str, frozenset[str]]
    default: frozenset[str]

    def for_column(self, path: str) -> frozenset[str]:
        return ALWAYS | self.per_column.get(path, self.default)

    def written_ok(self, path: str) -> frozenset[str]:
        """What the writer may list for a column in ColumnMetaData.encodings: the choice plus the structural ones."""
        return STRUCTURAL | self.for_column(path) - {DICTIONARY}


def allowed(policy: str, input_encodings: Mapping[str, frozenset[str]]) -> Allowed:
    """What each column may be encoded with, from the policy and the input's own per-column encodings."""
    named = profile(policy)
    if named is None:
        return Allowed({path: found - STRUCTURAL for path, found in input_encodings.items()}, frozenset())
    return Allowed({}, named.encodings)


# --------------------------------------------------------------------------- data page versions


def page_version(policy: str, input_versions: frozenset[str]) -> str:
    """The data page version to write: one the input used (under ``input``) or the profile allows.

    v1 when the input used it or used no data pages at all (a file with no
    rows), since every reader reads v1; v2 only for inputs written wholly in
    v2, where ``input`` requires it and a profile that allows it keeps it.
    """
    if V1 in input_versions or not input_versions:
        return V1
    named = profile(policy)
    if named is None or V2 in named.page_versions:
        return V2
    return V1


# --------------------------------------------------------------------------- logical types


#: Flags of pyarrow's logical-type JSON that say how it was read, not what a reader sees.
_READ_FLAGS = ("is_from_converted_type", "force_set_converted_type")


#: The annotation of a bare physical type.
_BARE = "NONE"


def annotation(column: pq.ColumnSchema) -> str:
    """A leaf's annotation as one comparable string: its logical type, else its legacy converted type.

    A converted type alone is derived into a logical type on reading, so the
    two spellings of one annotation compare equal; the flags recording that
    derivation are dropped.
    """
    logical = json.loads(column.logical_type.to_json())
    for flag in _READ_FLAGS:
        logical.pop(flag, None)
    if logical.get("Type", "None") != "None":
        return json.dumps(logical, sort_keys=True)
    return str(column.converted_type)


def new_annotation(have: pq.ParquetSchema, would: pq.ParquetSchema) -> str | None:
    """The first output column annotated other than the input annotated it (by path), or None.

    A column the input lacked (a transform's) may carry only an annotation
    some input column already carried: a reader that read the input knows it.
    No annotation at all is never new (a DuckDB ``INT(64, true)`` written back
    as a bare INT64 reads anywhere).
    """
    by_path = {have.column(i).path: annotation(have.column(i)) for i in range(len(have))}
    known = set(by_path.values())
    for index in range(len(would)):
        column = would.column(index)
        mark = annotation(column)
        if mark == _BARE:
            continue
        expected = by_path.get(column.path)
        if (expected is not None and mark != expected) or (expected is None and mark not in known):
            return f"column {column.path!r} would be annotated {mark}, which the input did not use there"
    return None

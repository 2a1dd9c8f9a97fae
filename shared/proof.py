"""What every mode must prove before its output may be committed, and the row accounting they share.

The engines (``exact``, ``reencode``) each prove their own output as they
produce it; this module holds what they have in common: the :class:`Outcome`
they hand back, and the rule that the rows each row group declares, the rows
read and the rows written agree. It never reads or writes a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.errors import DamagedError, VerificationError

Mode = Literal["exact", "reencode"]
#: ``full``: values decoded and checked; ``pages``: page bytes and footer checked, values not decoded.
ProofKind = Literal["full", "pages"]


@dataclass(frozen=True)
class Outcome:
    """What one engine run read, wrote and proved."""

    mode: Mode
    proof: ProofKind
    rows_declared: int
    rows_read: int
    rows_written: int
    row_groups_written: int
    #: Re-encode only: the most bytes its stages held at once, and the budget they were held to.
    memory_peak: int | None = None
    memory_budget: int | None = None


def check_group_rows(name: str, group: int, declared: int, read: int, what: str = "decoded") -> None:
    """A row group's columns must hold the rows its footer declares; anything else is a damaged input."""
    if read != declared:
        raise DamagedError(name, f"row group {group} declares {declared} rows but {what} {read} "
                                 "(check: row-group row count)")


def check_totals(name: str, declared: int, read: int, written: int) -> None:
    """Rows declared by the row groups, rows read and rows written must all agree.

    A shortfall on the read side is the input's fault (quarantined); one on the
    write side is ours (a bug: the run fails loudly and nothing is published).
    """
    if read != declared:
        raise DamagedError(name, f"row groups declare {declared} rows but {read} were read (check: row count)")
    if written != read:
        raise VerificationError(name, f"read {read} rows but the output holds {written} (check: rows written)")

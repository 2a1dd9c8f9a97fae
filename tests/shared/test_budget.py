"""The memory budget: the ledger's accounting, and a re-encode's peak RSS held to RECOMPRESS_MEMORY_BUDGET.

The RSS checks run the command line in a child process (``measure_peak``)
and compare its peak RSS, less the peak of the same command on a ten-row file
of the same schema (the interpreter, pyarrow and the first use of every
kernel), with the budget. Each also runs with a budget of 4 GiB, which must
take more than the small budget: that shows the table is large enough for
the check to fail if the budget were not kept.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.budget import FLAT_COST, MIN_ENGINE_BUDGET, MIN_GROUP_BYTES, NESTED_COST, Ledger, Shares, cost_factor
from tests.helpers import app_free_env, measure_peak

MIB = 1024**2
BUDGET = 256 * MIB


# --------------------------------------------------------------------------- the ledger


def test_the_ledger_keeps_the_peak_of_everything_held_at_once() -> None:
    ledger = Ledger(Shares.of(64 * MIB))

    ledger.take("ahead", 10)
    ledger.take("parts", 30)
    ledger.give_back("ahead", 10)
    ledger.take("pending", 5)

    assert (ledger.held, ledger.peak) == (35, 40)
    assert (ledger.stage("ahead"), ledger.stage("parts"), ledger.stage("pending")) == (0, 30, 5)


def test_a_stage_holding_nothing_always_gets_its_item_however_large() -> None:
    ledger = Ledger(Shares.of(64 * MIB))

    assert ledger.wait_for_room("ahead", 10**12, limit=1)


def test_a_waiting_decoder_moves_on_when_room_is_given_back() -> None:
    ledger = Ledger(Shares.of(64 * MIB))
    ledger.take("ahead", 100)
    answer: list[bool] = []
    waiter = threading.Thread(target=lambda: answer.append(ledger.wait_for_room("ahead", 50, limit=120)))
    waiter.start()

    ledger.give_back("ahead", 100)
    waiter.join(timeout=30)

    assert answer == [True]


def test_a_stopped_ledger_releases_its_waiter_with_false() -> None:
    ledger = Ledger(Shares.of(64 * MIB))
    ledger.take("ahead", 100)
    answer: list[bool] = []
    waiter = threading.Thread(target=lambda: answer.append(ledger.wait_for_room("ahead", 50, limit=120)))
    waiter.start()

    ledger.stop()
    waiter.join(timeout=30)

    assert answer == [False]


def test_two_fifths_of_the_budget_past_arrows_reserve_are_counted_and_row_groups_are_a_share_of_it() -> None:
    shares = Shares.of(596 * MIB)

    assert shares.total == 200 * MIB
    assert shares.ahead == 25 * MIB
    assert Shares.of(64 * MIB).total == MIN_ENGINE_BUDGET
    group = shares.group_bytes(input_group=40 * MIB)
    assert 2 * FLAT_COST * group + group + shares.ahead + 40 * MIB <= shares.total, "two flat parts fit in flight"
    assert shares.group_bytes(input_group=10**12) == MIN_GROUP_BYTES


@pytest.mark.parametrize(("schema", "factor"), [
    (pa.schema([("a", pa.int64()), ("b", pa.string())]), FLAT_COST),
    (pa.schema([("a", pa.list_(pa.int64())), ("b", pa.struct([("x", pa.int8())]))]), NESTED_COST),
    (pa.schema([("a", pa.list_(pa.int64())), ("b", pa.string())]), (FLAT_COST + NESTED_COST) / 2),
    (pa.schema([]), FLAT_COST),
])
def test_nested_columns_cost_more_per_byte(schema: pa.Schema, factor: float) -> None:
    assert cost_factor(schema) == factor


# --------------------------------------------------------------------------- peak RSS against the budget


def wide_table(rows: int, columns: int = 500) -> pa.Table:
    """500 columns cycling random doubles, random int64s and low-cardinality strings."""
    rng = np.random.default_rng(5)
    kinds: list[Callable[[], pa.Array]] = [
        lambda: pa.array(rng.random(rows)),
        lambda: pa.array(rng.integers(0, 2**62, rows)),
        lambda: pa.array(rng.integers(0, 50, rows)).cast(pa.string()),
    ]
    return pa.table({f"c{i}": kinds[i % 3]() for i in range(columns)})


def nested_table(rows: int) -> pa.Table:
    """Lists of int64, a struct, and lists of structs, with empty and null lists."""
    rng = np.random.default_rng(6)
    lengths = rng.integers(0, 8, rows)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())
    values = int(lengths.sum())
    items = pa.StructArray.from_arrays([pa.array(rng.random(values)), pa.array(rng.integers(0, 100, values))],
                                       ["price", "qty"])
    point = pa.StructArray.from_arrays([pa.array(rng.random(rows)), pa.array(rng.integers(0, 1000, rows))
                                        .cast(pa.string())], ["x", "label"])
    return pa.table({"ids": pa.ListArray.from_arrays(offsets, pa.array(rng.integers(0, 2**62, values))),
                     "point": point, "items": pa.ListArray.from_arrays(offsets, items)})


def peak_over_baseline(big: Path, tiny: Path, budget: int, tmp_path: Path) -> tuple[int, dict[str, object]]:
    """Peak RSS of re-encoding ``big`` less that of ``tiny``, in bytes, and the run's report."""
    env = app_free_env({"RECOMPRESS_MEMORY_BUDGET": str(budget), "RECOMPRESS_MODE": "reencode",
                        "RECOMPRESS_WORKERS": "2"})
    runs = []
    for source in (tiny, big):
        run = measure_peak([sys.executable, "-m", "shared", "recompress", str(source), str(tmp_path / "out.parquet"),
                            "--json", "--no-progress"], env)
        assert run.code == 0, run.stderr
        runs.append(run)
    report = json.loads(runs[1].stdout.strip().splitlines()[-1])
    return (runs[1].peak_kib - runs[0].peak_kib) * 1024, report


@pytest.mark.slow
@pytest.mark.parametrize(("make", "rows", "input_group"),
                         [(wide_table, 40_000, 4000), (nested_table, 1_500_000, 100_000)],
                         ids=["wide-500-columns", "nested"])
def test_peak_rss_stays_within_the_memory_budget(make: Callable[[int], pa.Table], rows: int, input_group: int,
                                                 tmp_path: Path) -> None:
    table = make(rows)
    big, tiny = tmp_path / "big.parquet", tmp_path / "tiny.parquet"
    pq.write_table(table, big, row_group_size=input_group)
    pq.write_table(table.slice(0, 10), tiny)
    decoded = table.nbytes
    del table

    within, report = peak_over_baseline(big, tiny, BUDGET, tmp_path)
    unbounded, _ = peak_over_baseline(big, tiny, 16 * 1024 * MIB, tmp_path)

    assert decoded > BUDGET // 2, "the table must not fit the budget's counted share whole"
    assert unbounded > BUDGET, "with room for everything the run takes more than the budget, so the check can fail"
    assert within <= BUDGET, f"peak RSS {within / 1e6:.0f} MB over the baseline, budget {BUDGET / 1e6:.0f} MB"
    assert report["memory_budget"] == BUDGET
    assert isinstance(report["memory_peak"], int)
    assert 0 < report["memory_peak"] <= BUDGET

"""The backfill's job record, against Azurite's real Table service: counts stay exact however often and
however concurrently outcomes and pages are recorded."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.errors import MissingContainerError, NotFoundError
from shared.jobs import SHARDS, Jobs, Outcome, name_key, new_job_id, valid_job_id
from shared.settings import Settings
from shared.storage import context


@pytest.fixture
def jobs(backfill_settings: Settings) -> Jobs:
    return Jobs(context(backfill_settings), backfill_settings.backfill_table)


def _new(jobs: Jobs, prefix: str = "p/") -> str:
    return jobs.create(prefix, False, "input", "output")


def test_a_new_job_is_listing_with_nothing_counted(jobs: Jobs) -> None:
    job = _new(jobs)

    status = jobs.status(job)

    assert (status.state, status.total, status.counted, status.finished) == ("listing", 0, 0, None)
    assert status.prefix == "p/"
    assert not status.dry_run


def test_the_job_is_done_once_listing_ended_and_every_blob_is_counted(jobs: Jobs) -> None:
    job = _new(jobs)
    jobs.commit_page(job, 0, ["p/a", "p/b"], "next")
    assert jobs.status(job).state == "listing"
    jobs.commit_page(job, 1, ["p/c"], None)
    jobs.record(job, name_key("p/a"), "p/a", Outcome("written", 100, 40))
    jobs.record(job, name_key("p/b"), "p/b", Outcome("skipped", 100, 90))
    running = jobs.status(job)
    jobs.record(job, name_key("p/c"), "p/c", Outcome("quarantined", 7, error="not Parquet"))

    done = jobs.status(job)

    assert (running.state, running.total, running.counted, running.finished) == ("running", 3, 2, None)
    assert (done.state, done.written, done.skipped, done.quarantined, done.counted) == ("done", 1, 1, 1, 3)
    assert (done.bytes_in, done.bytes_out) == (100, 40), "bytes count only for blobs written"
    assert done.finished is not None
    assert done.finished >= done.started


def test_an_outcome_recorded_twice_counts_once(jobs: Jobs) -> None:
    job = _new(jobs)
    jobs.commit_page(job, 0, ["p/a"], None)

    first = jobs.record(job, name_key("p/a"), "p/a", Outcome("written", 10, 5))
    again = jobs.record(job, name_key("p/a"), "p/a", Outcome("failed", error="a late duplicate"))

    assert (first, again) == (True, False)
    status = jobs.status(job)
    assert (status.written, status.failed, status.state) == (1, 0, "done")


def test_counts_stay_exact_with_many_writers_at_once(jobs: Jobs) -> None:
    names = [f"p/{i:04d}" for i in range(120)]
    job = _new(jobs)
    jobs.commit_page(job, 0, names, None)

    def record(name: str) -> bool:  # every blob twice, from different threads, as duplicated messages would
        return jobs.record(job, name_key(name), name, Outcome("written", 3, 1))

    with ThreadPoolExecutor(12) as pool:
        fresh = list(pool.map(record, names + names))

    status = jobs.status(job)
    assert sum(fresh) == len(names)
    assert (status.written, status.bytes_in, status.bytes_out, status.state) == (120, 360, 120, "done")
    assert len(list(jobs.outcomes(job))) == 120


def test_a_page_listed_twice_counts_once_and_keeps_what_was_first_recorded(jobs: Jobs) -> None:
    job = _new(jobs)
    first = jobs.commit_page(job, 0, ["p/a", "p/b"], "token-1")

    again = jobs.commit_page(job, 0, ["p/a", "p/b", "p/new"], "token-2")

    assert again == first
    assert again.keys == {name_key("p/a"), name_key("p/b")}
    assert again.next_token == "token-1"
    status = jobs.status(job)
    assert (status.total, status.pages) == (2, 1)


def test_a_page_of_five_thousand_names_is_recorded_whole(jobs: Jobs) -> None:
    names = [f"p/{'x' * 200}/{i}" for i in range(5000)]
    job = _new(jobs)

    jobs.commit_page(job, 0, names, None)

    assert jobs.page(job, 0) is not None
    assert jobs.page(job, 0).keys == {name_key(n) for n in names}  # type: ignore[union-attr]


def test_a_listing_that_failed_for_good_fails_the_job_with_its_reason(jobs: Jobs) -> None:
    job = _new(jobs)

    jobs.fail(job, "listing page 3 failed on every delivery")

    status = jobs.status(job)
    assert (status.state, status.error) == ("failed", "listing page 3 failed on every delivery")


def test_the_last_error_of_a_blob_is_kept_for_the_poison_handler(jobs: Jobs) -> None:
    job = _new(jobs)
    key = name_key("p/a")
    jobs.note_error(job, key, "p/a", "first")
    jobs.note_error(job, key, "p/a", "storage answered 503")

    assert jobs.last_error(job, key) == "storage answered 503"
    assert jobs.last_error(job, name_key("p/other")) is None


def test_recent_jobs_come_newest_first(jobs: Jobs) -> None:
    made = [_new(jobs, f"p{i}/") for i in range(3)]

    listed = [status.id for status in jobs.recent(limit=10)]

    assert listed[:3] == made[::-1]


@pytest.mark.parametrize("job_id", ["", "nope", "20261126T000000Z-abcdef", "20261126T000000Z-ABCDEF' or ''='"])
def test_an_unknown_or_malformed_job_id_is_not_found(jobs: Jobs, job_id: str) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        jobs.status(job_id)


def test_job_ids_sort_by_start_and_are_checked_before_any_query() -> None:
    first, second = new_job_id(), new_job_id()

    assert valid_job_id(first)
    assert valid_job_id(second)
    assert first != second
    assert not valid_job_id("x' or PartitionKey ne '")


def test_a_missing_table_says_which_setting_names_it(backfill_settings: Settings) -> None:
    jobs = Jobs(context(backfill_settings), "nosuchtable0")

    with pytest.raises(MissingContainerError, match=r"table .nosuchtable0.: does not exist.*RECOMPRESS_BACKFILL_TABLE"):
        jobs.status(jobs.create("", False, "input", "output"))


def test_counters_are_spread_over_shards(jobs: Jobs) -> None:
    job = _new(jobs)
    names = [f"p/{i}" for i in range(64)]
    jobs.commit_page(job, 0, names, None)
    for name in names:
        jobs.record(job, name_key(name), name, Outcome("skipped"))

    rows = jobs._query(f"PartitionKey eq '{job}' and RowKey ge 'count-' and RowKey lt 'count.'")
    used = [row for row in rows if int(getattr(row["skipped"], "value", row["skipped"]))]

    assert len(used) > 1, "every outcome landed on one counter row: a hot spot"
    assert len(list(jobs._query(f"PartitionKey eq '{job}' and RowKey ge 'count-' and RowKey lt 'count.'"))) == SHARDS


def test_two_deliveries_committing_one_page_at_once_both_get_the_recorded_page(
        jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    job = _new(jobs)
    recorded = jobs.commit_page(job, 0, ["p/a"], None)
    real_page = jobs.page
    looks = iter([None])  # the loser read "no page yet" just before the winner's commit landed
    monkeypatch.setattr(jobs, "page", lambda j, n: next(looks, None) or real_page(j, n))

    loser = jobs.commit_page(job, 0, ["p/a", "p/b"], None)

    assert loser == recorded
    assert jobs.status(job).total == 1

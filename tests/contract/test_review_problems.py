"""Triage at scale, on SQLite and PostgreSQL: 2,500 rejected items that are seven problems, and
every way of reading them whole (problems, the problem filter, chunks for exports and bulk
changes, statistics under every filter, the access log's pages)."""

from __future__ import annotations

import importlib
from datetime import date, timedelta

from sqlalchemy import update

from bench.review_data import PROBLEMS, seed
from statestore.engine import StoreEngines
from statestore.review import ReviewFilter, ReviewRepository
from statestore.tables import review_findings
from tests.contract.test_statestore_contract import engines

__all__ = ["engines"]

ITEMS = 2500


async def test_items_grouped_into_their_problems(engines: StoreEngines) -> None:
    assert await seed(engines, ITEMS) == ITEMS
    review = ReviewRepository(engines)
    found = await review.problems(ReviewFilter(), page_size=50)
    assert (found.total, found.items) == (len(PROBLEMS), ITEMS)
    assert sum(p.items for p in found.rows) == ITEMS
    assert [p.items for p in found.rows] == sorted((p.items for p in found.rows), reverse=True)
    largest = found.rows[0]
    assert (largest.rule_id, largest.field, largest.value) == (
        "KOD-001",
        "avtale/*/konsultasjonType",
        "XX",
    )
    assert (largest.vendor, largest.software_version) == ("DIPS AS", "4.2")
    assert largest.units > 1
    assert largest.first_seen < largest.last_seen
    assert largest.open_items == largest.items
    # The same rule and vendor with another value (NY) is its own problem; a check digit
    # error is one problem whatever the person (its value is not part of it).
    kod = [p for p in found.rows if p.rule_id == "KOD-001"]
    assert sorted(p.value or "" for p in kod) == ["NY", "XX"]
    [idn] = [p for p in found.rows if p.rule_id == "IDN-001"]
    assert idn.value is None
    [snomed] = [p for p in found.rows if p.rule_id == "IDN-010"]
    assert snomed.value == "12345"

    # A whole problem is a filter like any other.
    one = ReviewFilter(problem=largest.problem)
    assert await review.count(one) == largest.items
    listed = await review.search(one, page_size=10)
    assert listed.total == largest.items
    assert {tuple(r.rule_ids) for r in listed.rows} == {("KOD-001",)}
    second = (await review.problems(ReviewFilter(), page=2, page_size=3)).rows
    assert [p.problem for p in second] == [p.problem for p in found.rows[3:6]]


async def test_a_whole_filter_read_in_chunks_loses_nothing(engines: StoreEngines) -> None:
    await seed(engines, ITEMS)
    review = ReviewRepository(engines)
    everything = ReviewFilter()
    ids = [i async for chunk in review.id_chunks(everything, 300) for i in chunk]
    assert len(ids) == len(set(ids)) == ITEMS
    rows = [r async for chunk in review.summary_chunks(everything, 300) for r in chunk]
    assert len({r.item_id for r in rows}) == ITEMS
    times = [r.received_at for r in rows]
    assert times == sorted(times, reverse=True)
    # A change that takes items out of the filter while reading on loses none (keyset paging).
    new = ReviewFilter(status="new")
    seen = 0
    async for chunk in review.id_chunks(new, 400):
        seen += len(chunk)
        await review.change(chunk, "kari", status="in_review")
    assert seen == ITEMS
    assert await review.count(new) == 0


async def test_vendor_and_software_filters_ignore_case(engines: StoreEngines) -> None:
    await seed(engines, ITEMS)
    review = ReviewRepository(engines)
    dips = await review.count(ReviewFilter(vendor="DIPS AS"))
    assert dips > 0
    assert await review.count(ReviewFilter(vendor="dips as")) == dips
    assert await review.count(ReviewFilter(software="dips arena")) == dips
    suggestions = await review.suggestions()
    assert suggestions["vendor"] == ["CGM", "DIPS AS", "Visma"]


async def test_statistics_under_every_filter(engines: StoreEngines) -> None:
    await seed(engines, ITEMS)
    review = ReviewRepository(engines)
    problem = (await review.problems(ReviewFilter())).rows[0].problem
    today = date.today()
    filters = {
        "unit": ReviewFilter(unit="974152533"),
        "vendor": ReviewFilter(vendor="cgm"),
        "software": ReviewFilter(software="CGM Journal"),
        "message_type": ReviewFilter(message_type="HST_Avtale"),
        "version": ReviewFilter(version=1),
        "rule_id": ReviewFilter(rule_id="KOD-001"),
        "level": ReviewFilter(level="identifier"),
        "status": ReviewFilter(status="new"),
        "problem": ReviewFilter(problem=problem),
        "days": ReviewFilter(day_from=today - timedelta(days=40), day_to=today + timedelta(days=1)),
        "all": ReviewFilter(vendor="DIPS AS", rule_id="KOD-001", level="codelist", problem=problem),
    }
    for name, flt in filters.items():
        stats = await review.statistics(flt)
        rejected = sum(stats.by_day.values())
        assert rejected == await review.count(flt), name
        assert rejected > 0, name
        assert sum(n for _, n in stats.by_vendor) == rejected, name


async def test_the_access_log_is_paged_and_filtered(engines: StoreEngines) -> None:
    review = ReviewRepository(engines)
    for n in range(130):
        await review.log_access(
            "kari" if n % 2 else "ola", "list", item_count=50, total_count=20_000
        )
    await review.log_access("kari", "export", item_count=20_000, total_count=20_000)
    assert await review.access_count() == 131
    assert await review.access_count(actor="kari", action="list") == 65
    newest = await review.access_log(limit=100)
    assert (newest[0].action, newest[0].total_count) == ("export", 20_000)
    rest = await review.access_log(limit=100, offset=100)
    assert len(rest) == 31
    assert {r.seq for r in newest}.isdisjoint(r.seq for r in rest)
    assert await review.access_actors() == ["kari", "ola"]


async def test_the_migration_fills_in_the_problems_of_items_indexed_before(
    engines: StoreEngines,
) -> None:
    """Revision 0012 gives the items indexed before it their problems, as indexing does now."""
    await seed(engines, 600)
    review = ReviewRepository(engines)
    before = [(p.problem, p.items) for p in (await review.problems(ReviewFilter())).rows]
    async with engines.writer.begin() as conn:
        await conn.execute(update(review_findings).values(field=None, value=None, problem=None))
    assert (await review.problems(ReviewFilter())).total == 0
    migration = importlib.import_module("statestore.migrations.versions.0012_review_problems")
    async with engines.writer.begin() as conn:
        await conn.run_sync(migration._fill_in)
    after = [(p.problem, p.items) for p in (await review.problems(ReviewFilter())).rows]
    assert after == before

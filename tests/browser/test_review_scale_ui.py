"""The review UI with 20,000 rejected items (seven problems from three vendors,
bench/review_data.py), in headless Chromium against a real ``intake serve``: triage as the
landing page, one problem's items, the whole filter exported, a bulk change over a filter with
its confirmation, and the replay preview's pages.

Screenshots go to ``test-output/browser/`` (or ``$INTAKE_TEST_OUTPUT/browser``); the page
timings each test saw are appended to ``review-timings.txt`` there (bench/bench_review.py is the
measurement; these are what a browser saw on the same machine).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from bench.review_data import PROBLEMS, seed
from statestore.engine import create_engines
from tests.servers import Server, free_port
from wiring.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ITEMS = 20_000
OUTPUT = Path(os.environ.get("INTAKE_TEST_OUTPUT", "test-output")) / "browser"


@dataclass
class Seeded:
    server: Server
    token: str


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One server for the module, its store holding 20,000 rejected items."""
    root = tmp_path_factory.mktemp("review-scale")
    server = Server(root / "data", free_port(), root / "server.log")
    asyncio.run(server.start())
    try:

        async def fill() -> int:
            engines = create_engines(Settings(data_dir=server.data_dir).resolved_database_url)
            try:
                return await seed(engines, ITEMS)
            finally:
                await engines.dispose()

        assert asyncio.run(fill()) == ITEMS
        yield Seeded(server, server.token("intake:review", subject="kari.kvalitet"))
    finally:
        server.kill()


@pytest.fixture
async def page(seeded: Seeded, browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(
        viewport={"width": 1366, "height": 900},
        locale="nb-NO",
        timezone_id="Europe/Oslo",
        accept_downloads=True,
    )
    page = await context.new_page()
    page.set_default_timeout(30_000)
    await page.goto(seeded.server.url + "/review")
    await page.fill("#token", seeded.token)
    await page.click("#login-submit")
    await expect(page).to_have_url(seeded.server.url + "/review/problems")
    try:
        yield page
    finally:
        await context.close()


async def timed(page: Page, name: str, url: str) -> float:
    started = time.perf_counter()
    await page.goto(url)
    seconds = time.perf_counter() - started
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with (OUTPUT / "review-timings.txt").open("a", encoding="utf-8") as out:
        out.write(f"{name}\t{ITEMS} items\t{seconds * 1000:.0f} ms\n")
    return seconds


async def screenshot(page: Page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


async def test_triage_is_the_landing_page(seeded: Seeded, page: Page) -> None:
    await timed(page, "triage", seeded.server.url + "/review/problems")
    await expect(page.locator("#problem-count")).to_have_text(str(len(PROBLEMS)))
    await expect(page.locator("#problem-items")).to_have_text(str(ITEMS))
    rows = page.locator("#problems-table tr.problem-row")
    await expect(rows).to_have_count(len(PROBLEMS))
    first = rows.first
    await expect(first.locator(".rule-title")).to_have_text("Ukjent kode")
    await expect(first.locator(".value")).to_have_text("XX")
    await expect(first.locator(".problem-items")).to_have_text(str(round(ITEMS * 0.35)))
    await screenshot(page, "triage")
    await first.locator("a.problem-items-link").click()
    await expect(page.locator("#result-count")).to_have_text(str(round(ITEMS * 0.35)))
    await expect(page.locator("#items-table .rule-title").first).to_have_text("Ukjent kode")
    await screenshot(page, "problem-items")


async def test_filter_the_whole_set_and_export_every_row(seeded: Seeded, page: Page) -> None:
    await timed(page, "list", seeded.server.url + "/review/items")
    await expect(page.locator("#result-count")).to_have_text(str(ITEMS))
    await page.fill("#f-vendor", "dips as")  # any case
    await page.click("#f-apply")
    dips = round(ITEMS * 0.35) + round(ITEMS * 0.15) + round(ITEMS * 0.05)
    await expect(page.locator("#result-count")).to_have_text(str(dips))
    await screenshot(page, "filtered-list")
    await page.goto(seeded.server.url + "/review/items")
    async with page.expect_download() as info:
        await page.click("#export-csv")
    download = await info.value
    text = (await download.path()).read_text("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert len(rows) == ITEMS
    assert {r["Leverandør"] for r in rows} == {"DIPS AS", "CGM", "Visma"}


async def test_a_bulk_change_over_a_filter_names_the_count(seeded: Seeded, page: Page) -> None:
    await page.goto(seeded.server.url + "/review/items?vendor=Visma")
    visma = round(ITEMS * 0.1) + round(ITEMS * 0.05)
    await expect(page.locator("#result-count")).to_have_text(str(visma))
    await page.check("#bulk-scope-filter")
    await page.select_option("#bulk-status", "in_review")
    await page.fill("#bulk-assignee", "ola.nordmann")
    await page.click("#bulk-apply")
    await expect(page.locator("#confirm-count")).to_have_text(str(visma))
    await screenshot(page, "bulk-confirm")
    await page.click("#bulk-confirm")
    await expect(page.locator("#notice")).to_have_text(f"{visma} elementer oppdatert.")
    await expect(page.locator("#count-in_review")).to_contain_text(str(visma))
    await screenshot(page, "bulk-done")


async def test_the_replay_preview_pages_and_says_what_is_left(seeded: Seeded, page: Page) -> None:
    await page.goto(seeded.server.url + "/review/replay?rule_id=KOD-002")
    kod2 = round(ITEMS * 0.15)
    await expect(page.locator("#preview-total")).to_have_text(str(kod2))
    await expect(page.locator("#preview-remaining")).to_have_text(str(kod2 - 100))
    await expect(page.locator("#replay-preview tbody tr")).to_have_count(100)
    await expect(page.locator("#replay-run")).to_contain_text(f"alle {kod2}")
    await page.click("#page-next")
    await expect(page.locator("#preview-first")).to_have_text("101")
    await expect(page.locator("#preview-remaining")).to_have_text(str(kod2 - 200))
    await screenshot(page, "replay-preview")


async def test_statistics_with_a_rule_filter(seeded: Seeded, page: Page) -> None:
    await timed(page, "statistics", seeded.server.url + "/review/stats?rule_id=KOD-001")
    await expect(page.locator("#chart-by-day rect")).not_to_have_count(0)
    await expect(page.locator("#top-rules")).to_contain_text("Ukjent kode")
    await screenshot(page, "statistics-rule")

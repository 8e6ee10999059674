"""The review UI in real headless Chromium (Debian's package, driven by Playwright with the
system executable) against a real ``intake serve``: sign in, filter, open an item, change its
status, add a note, reveal an identifier and find the access-log entry, bulk-change, replay after
loading a corrected code list, and read the statistics and completeness pages.

Each test saves a screenshot in ``test-output/browser/`` (or ``$INTAKE_TEST_OUTPUT/browser``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import UNIT
from tests.integration.helpers import appointment
from tests.servers import INTAKE, Server, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FNR = "15031245610"
WRONG_FNR = "15031245611"
OUTPUT = Path(os.environ.get("INTAKE_TEST_OUTPUT", "test-output")) / "browser"


@dataclass
class Ui:
    server: Server
    page: Page
    report_auth: dict[str, str]
    review_auth: dict[str, str]

    def url(self, path: str) -> str:
        return self.server.url + path

    async def screenshot(self, name: str) -> None:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def rejected_messages() -> list[list[dict[str, Any]]]:
    """Two messages: an unknown consultation type (KOD-001) next to a valid item, and a
    fødselsnummer with a wrong control digit (IDN-001)."""
    first = appointment("UI-ok")
    bad_code = appointment("UI-kode")[0]["avtale"][0]
    bad_code["konsultasjonType"] = "NY"
    first[0]["avtale"].append(bad_code)
    second = appointment("UI-fnr")
    second[0]["avtale"][0]["person"]["fodselsNr"] = WRONG_FNR
    return [first, second]


@pytest.fixture
async def ui(tmp_path: Path, browser: Browser) -> AsyncIterator[Ui]:
    server = Server(tmp_path / "data", free_port(), tmp_path / "server.log")
    await server.start()
    try:
        report = {"Authorization": f"Bearer {server.token('intake:report')}"}
        review_token = server.token("intake:review", subject="kari.kvalitet")
        review = {"Authorization": f"Bearer {review_token}"}
        async with httpx.AsyncClient(base_url=server.url) as client:
            for message in rejected_messages():
                sent = await client.post(
                    "/v1/messages/HST_Avtale/1",
                    json=message,
                    headers={**report, "x-vendor-name": "Journalsystemer AS"},
                )
                assert sent.status_code == 202, sent.text
            for _ in range(200):
                listed = (await client.get("/v1/review/items", headers=review)).json()
                if listed["total"] == 2:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the rejected items never reached the review index")
        context = await browser.new_context(
            viewport={"width": 1280, "height": 900}, locale="nb-NO", timezone_id="Europe/Oslo"
        )
        page = await context.new_page()
        page.set_default_timeout(15_000)
        await page.goto(server.url + "/review/items")
        await expect(page).to_have_url(f"{server.url}/review/login?next=%2Freview%2Fitems")
        await page.fill("#token", review_token)
        await page.click("#login-submit")
        await expect(page.locator("#reviewer-name")).to_have_text("kari.kvalitet")
        try:
            yield Ui(server, page, report, review)
        finally:
            await context.close()
    finally:
        server.kill()


async def open_item(ui: Ui, rule_id: str) -> None:
    await ui.page.goto(ui.url("/review/items"))
    await ui.page.select_option("#f-rule", rule_id)
    await ui.page.click("#f-apply")
    rows = ui.page.locator("#items-table tbody tr.item-row")
    await expect(rows).to_have_count(1)
    await rows.first.locator("a.item-link").click()
    await expect(ui.page.locator("#findings li.finding")).to_have_count(1)


async def test_filter_and_open_an_item(ui: Ui) -> None:
    page = ui.page
    await expect(page.locator("#result-count")).to_have_text("2")
    await expect(page.locator("#count-new")).to_contain_text("2")
    await page.select_option("#f-level", "identifier")
    await page.click("#f-apply")
    await expect(page.locator("#items-table tbody tr.item-row")).to_have_count(1)
    await expect(page.locator("#items-table")).to_contain_text("IDN-001")
    await page.click("a.item-link")

    await expect(page.locator("#findings")).to_contain_text("IDN-001")
    await expect(page.locator("#findings")).to_contain_text("kontrollsifre")
    offending = page.locator("#item-json .line.offending")
    await expect(offending).to_have_count(1)
    await expect(offending).to_have_attribute("data-pointer", "/person/fodselsNr")
    await expect(page.locator("#item-json .masked")).to_have_count(1)
    assert WRONG_FNR not in await page.content()
    await expect(page.locator("#receipt-status")).to_have_text("Avvist")
    await expect(page.locator("#unit-recent li")).to_have_count(1)
    await ui.screenshot("item-detail")


async def test_change_status_and_add_a_note(ui: Ui) -> None:
    page = ui.page
    await open_item(ui, "KOD-001")
    await page.select_option("#status-select", "in_review")
    await page.fill("#assignee-input", "ola.nordmann")
    await page.click("#status-submit")
    await expect(page.locator("#item-status")).to_have_text("Under behandling")
    await expect(page.locator("#item-assignee")).to_have_text("ola.nordmann")
    await page.fill("#note-text", "Leverandøren har fått beskjed om ny kode.")
    await page.click("#note-submit")
    history = page.locator("#history-list")
    await expect(history.locator("li.history-note")).to_contain_text("Leverandøren har fått")
    await expect(history.locator("li.history-status")).to_contain_text("Ny → Under behandling")
    await expect(history).to_contain_text("kari.kvalitet")
    await ui.screenshot("workflow")

    await page.goto(ui.url("/review/items?status=in_review"))
    await expect(page.locator("#items-table tbody tr.item-row")).to_have_count(1)


async def test_reveal_an_identifier_is_logged(ui: Ui) -> None:
    page = ui.page
    await open_item(ui, "IDN-001")
    await page.select_option("#reveal-path", "/person/fodselsNr")
    await page.fill("#reveal-reason", "Kontroll av kontrollsiffer med enheten")
    await page.click("#reveal-submit")
    await expect(page.locator("#revealed-value")).to_contain_text(WRONG_FNR)
    await expect(page.locator("#item-json mark.revealed")).to_have_text(f'"{WRONG_FNR}"')
    entry = page.locator("#access-log li.access-reveal")
    await expect(entry).to_have_count(1)
    await expect(entry).to_contain_text("Kontroll av kontrollsiffer med enheten")
    await ui.screenshot("reveal")
    item_url = page.url.removesuffix("/reveal")

    await page.click("#nav-access-log")
    row = page.locator("#access-log-table tr.access-reveal")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("kari.kvalitet")
    await expect(row).to_contain_text("felt /person/fodselsNr")
    # Reload the item: masked again, the reveal was for one answer only.
    await page.goto(item_url)
    await expect(page.locator("#item-json .masked")).to_have_count(1)
    assert WRONG_FNR not in await page.content()


async def test_bulk_change_over_the_filter(ui: Ui) -> None:
    page = ui.page
    await page.goto(ui.url("/review/items"))
    await page.check("#bulk-scope-filter")
    await page.select_option("#bulk-status", "awaiting_resubmission")
    await page.fill("#bulk-note", "Venter på retting fra leverandør")
    await page.click("#bulk-apply")
    await expect(page.locator("#confirm-count")).to_have_text("2")
    await page.click("#bulk-confirm")
    await expect(page.locator("#notice")).to_have_text("2 elementer oppdatert.")
    await expect(page.locator("#count-awaiting_resubmission")).to_contain_text("2")
    await ui.screenshot("bulk")


async def test_replay_after_loading_a_corrected_code_list(ui: Ui, tmp_path: Path) -> None:
    page = ui.page
    await page.goto(ui.url("/review/replay?rule_id=KOD-001"))
    await expect(page.locator("#count-fails")).to_have_text("1")
    await expect(page.locator("#replay-run")).to_have_count(0)

    corrected = tmp_path / "konsultasjonstype.tsv"
    corrected.write_text(
        "code\tdisplay\tactive\teffective\nPQ\tPlanlagt\t1\t2020-01-01\n"
        "NY\tNy konsultasjonstype\t1\t2024-01-01\n",
        encoding="utf-8",
    )
    imported = await asyncio.to_thread(
        subprocess.run,
        [INTAKE, "codelists", "import", str(corrected), "--id", "hst-konsultasjonstype",
         "--title", "KPR konsultasjonstype", "--data-dir", str(ui.server.data_dir)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr

    await page.reload()
    await expect(page.locator("#count-passes")).to_have_text("1")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("#replay-run")
    await expect(page.locator("#replay-result")).to_contain_text("1 elementer")
    await ui.screenshot("replay")

    async with httpx.AsyncClient(base_url=ui.server.url) as client:
        listed = (
            await client.get("/v1/review/items?rule_id=KOD-001", headers=ui.review_auth)
        ).json()
        receipt_id = listed["items"][0]["receipt_id"]
        for _ in range(200):
            receipt = (
                await client.get(f"/v1/receipts/{receipt_id}", headers=ui.report_auth)
            ).json()
            if receipt["status"] == "applied":
                break
            await asyncio.sleep(0.05)
    assert receipt["status"] == "applied"
    assert [i["status"] for i in receipt["items"]] == ["applied", "applied"]
    await page.goto(ui.url(f"/review/items/{listed['items'][0]['item_id']}"))
    await expect(page.locator("#item-status")).to_have_text("Løst")
    await expect(page.locator("#item-replayed")).to_be_visible()


async def test_statistics_and_completeness_read_at_a_glance(ui: Ui) -> None:
    page = ui.page
    await page.click("#nav-stats")
    await expect(page.locator("#chart-by-day rect")).not_to_have_count(0)
    await expect(page.locator("#top-rules tbody tr")).to_have_count(2)
    await expect(page.locator("#by-unit")).to_contain_text(UNIT)
    await expect(page.locator("#by-vendor")).to_contain_text("Journalsystemer AS")
    await ui.screenshot("statistics")
    async with page.expect_download() as download_info:
        await page.click("#stats-csv")
    download = await download_info.value
    assert (await download.path()).read_text("utf-8-sig").startswith("Regel;Regeltekst;")

    await page.click("#nav-completeness")
    row = page.locator(f"#unit-{UNIT}")
    await expect(row.locator("td.delivered")).to_have_count(1)
    await expect(row.locator("td.silent")).to_have_count(13)
    await ui.screenshot("completeness")


async def test_keyboard_and_laptop_screen(ui: Ui) -> None:
    page = ui.page
    await page.set_viewport_size({"width": 1366, "height": 768})
    await page.goto(ui.url("/review/items"))
    await page.keyboard.press("Tab")
    await expect(page.locator("a.skip")).to_be_focused()
    await page.keyboard.press("Enter")
    # Reach the first item link by keyboard and open it with Enter.
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.classList.contains('item-link')"):
            break
    else:
        raise AssertionError("no item link is reachable by keyboard")
    await page.keyboard.press("Enter")
    await expect(page.locator("#findings")).to_be_visible()
    for width in (1280, 1366):
        await page.set_viewport_size({"width": width, "height": 768})
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
    await ui.screenshot("laptop")

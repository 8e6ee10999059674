"""The coverage page in headless Chromium against a real ``intake serve``: the directory of
reporting units and the obligations loaded with the command line as an operator would, one unit
delivering and one never heard from; the page shows the share, the chart and who is missing,
by name. A screenshot is kept in test-output/browser/coverage.png."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.conftest import UNIT
from tests.integration.helpers import appointment
from tests.servers import INTAKE, Server, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIXTURES = Path(__file__).parents[1] / "fixtures" / "enhetsregisteret"
OUTPUT = Path(os.environ.get("INTAKE_TEST_OUTPUT", "test-output")) / "browser"
NEVER = "974150050"  # DRAMMEN KOMMUNE HELSESTASJON STRØMSØ


def intake(*args: str) -> None:
    done = subprocess.run([INTAKE, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


async def test_coverage_page_shows_who_is_missing(tmp_path: Path, browser: Browser) -> None:
    server = Server(tmp_path / "data", free_port(), tmp_path / "server.log")
    await server.start()
    try:
        data = ["--data-dir", str(server.data_dir)]
        await asyncio.to_thread(
            intake, "units", "import", str(FIXTURES / "underenheter.json"), *data
        )
        for unit in (UNIT, NEVER):
            await asyncio.to_thread(
                intake, "obligations", "add", "--unit", unit, "--message-type", "HST_Avtale",
                "--from", "2026-01-01", *data,
            )  # fmt: skip
        report = {"Authorization": f"Bearer {server.token('intake:report')}"}
        async with httpx.AsyncClient(base_url=server.url) as client:
            sent = await client.post(
                "/v1/messages/HST_Avtale/1", json=appointment("COV-1"), headers=report
            )
            assert sent.status_code == 202, sent.text
        token = server.token("intake:review", subject="kari.kvalitet")
        context = await browser.new_context(locale="nb-NO", timezone_id="Europe/Oslo")
        page = await context.new_page()
        page.set_default_timeout(15_000)
        try:
            await page.goto(server.url + "/review/login?next=/review/coverage")
            await page.fill("#token", token)
            await page.click("#login-submit")
            await expect(page.locator("#coverage-expected")).to_have_text("2")
            await expect(page.locator("#coverage-delivered")).to_have_text("1")
            await expect(page.locator("#coverage-share")).to_have_text("50 %")
            await expect(page.locator("#coverage-chart rect")).not_to_have_count(0)
            row = page.locator(f"#missing-{NEVER}")
            await expect(row).to_contain_text("DRAMMEN KOMMUNE HELSESTASJON STRØMSØ")
            await expect(row).to_contain_text("aldri")
            await expect(page.locator("#missing-table tr.missing-unit")).to_have_count(1)
            OUTPUT.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(OUTPUT / "coverage.png"), full_page=True)
            await page.select_option("#c-period", "month")
            await page.click("#c-apply")
            await expect(page.locator("#coverage-expected")).to_have_text("2")
        finally:
            await context.close()
    finally:
        server.kill()

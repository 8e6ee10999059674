"""Headless Chromium for the browser tests: Debian's package, driven by Playwright with the
system executable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import require_service

# Chromium as root in a closed network: no sandbox (root), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = require_service("INTAKE_TEST_CHROMIUM", "Chromium")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()

"""Signing in to the review with OpenID Connect, in headless Chromium, against a real OpenID
Provider we did not write: panva/oidc-provider from npm (tests/interop/oidc_provider), run on
loopback with our client registered as HelseID registers one (private_key_jwt with an RSA key,
PKCE required). ``intake serve`` is a separate process configured only by INTAKE_* variables.

Covered: sign-in through the provider's own login form, the name in the menu and the access log,
the person's national identity number in the provider's claims never stored or logged, a person
without the reviewer role refused, sign-out ending the session (its cookie opens nothing after)
and at the provider too.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from joserfc.jwk import RSAKey
from playwright.async_api import Browser, Page, expect

from tests.interop.npm_peers import command, require_node
from tests.servers import Server, free_port

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.slow]

OUTPUT = Path(os.environ.get("INTAKE_TEST_OUTPUT", "test-output")) / "browser"
CLIENT_ID = "register-intake-review"
PID = "15031245610"  # the claim HelseID adds: must never reach our store or log
ACCOUNTS = {
    "kari": {"name": "Kari Kvalitet", "roles": ["intake-reviewer"], "pid": PID},
    "ola": {"name": "Ola Uten Rolle", "roles": ["something-else"], "pid": "05073500186"},
}


@dataclass
class Signed:
    server: Server
    issuer: str


@pytest.fixture
async def signed(tmp_path: Path) -> AsyncIterator[Signed]:
    require_node("OpenID provider")
    key = RSAKey.generate_key(2048, parameters={"kid": "review-client-1", "alg": "RS256"})
    key_file = tmp_path / "client-key.json"
    key_file.write_bytes(orjson.dumps(key.as_dict(private=True)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = {
        "port": 0,
        "client": {
            "client_id": CLIENT_ID,
            "jwks": {"keys": [key.as_dict(private=False)]},
            "redirect_uri": f"{base}/review/callback",
            "post_logout_redirect_uri": f"{base}/review/login?signed_out=1",
        },
        "accounts": {login: {**claims, "helseid://claims/identity/pid": claims["pid"]}
                     for login, claims in ACCOUNTS.items()},
    }  # fmt: skip
    provider_log = (tmp_path / "provider.log").open("wb")
    provider = await asyncio.create_subprocess_exec(
        *command("oidc_provider", "provider.mjs"),
        orjson.dumps(config).decode(),
        stdout=subprocess.PIPE,
        stderr=provider_log,
    )
    try:
        assert provider.stdout is not None
        line = await asyncio.wait_for(provider.stdout.readline(), timeout=300)
        assert line.startswith(b"ready "), (line, (tmp_path / "provider.log").read_text()[-2000:])
        issuer = line.decode().split()[1]
        server = Server(tmp_path / "data", port, tmp_path / "server.log")
        server.extra_env = {
            "INTAKE_REVIEW_OIDC_ISSUER": issuer,
            "INTAKE_REVIEW_OIDC_CLIENT_ID": CLIENT_ID,
            "INTAKE_REVIEW_OIDC_CLIENT_KEY_FILE": str(key_file),
            "INTAKE_REVIEW_OIDC_SCOPES": "openid profile roles helseid://scopes/identity/pid",
            "INTAKE_REVIEW_SESSION_MINUTES": "30",
        }
        await server.start()
        try:
            yield Signed(server, issuer)
        finally:
            server.kill()
    finally:
        provider.kill()
        await provider.wait()
        provider_log.close()


async def sign_in_at_the_provider(page: Page, signed: Signed, login: str) -> None:
    await page.goto(signed.server.url + "/review")
    await expect(page.locator("#login-oidc")).to_be_visible()
    await page.click("#login-oidc")
    await expect(page).to_have_url(re.compile(re.escape(signed.issuer) + "/.*"))
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", "whatever the provider's dev form takes")
    await page.click("button[type=submit]")


async def screenshot(page: Page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


async def test_sign_in_with_openid_connect_and_out(signed: Signed, browser: Browser) -> None:
    context = await browser.new_context(locale="nb-NO", timezone_id="Europe/Oslo")
    page = await context.new_page()
    page.set_default_timeout(20_000)
    try:
        await sign_in_at_the_provider(page, signed, "kari")
        await expect(page).to_have_url(signed.server.url + "/review/problems")
        await expect(page.locator("#reviewer-name")).to_have_text("Kari Kvalitet")
        await screenshot(page, "oidc-signed-in")
        [cookie] = [c for c in await context.cookies() if c["name"] == "intake_review"]
        assert cookie["value"].startswith("s1.")
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        await page.click("#nav-access-log")
        await expect(page.locator("#access-log-table")).to_contain_text("Kari Kvalitet")

        # Sign out: the session ends here, and the provider asks to end its own.
        await page.click("#logout")
        await expect(page).to_have_url(re.compile(re.escape(signed.issuer) + "/.*"))
        await page.click("button[name=logout]")
        await expect(page.locator("#signed-out")).to_be_visible()
        await screenshot(page, "oidc-signed-out")
        async with httpx.AsyncClient(
            base_url=signed.server.url, cookies={"intake_review": cookie["value"]}
        ) as client:
            stale = await client.get("/review/problems")
        assert stale.status_code == 303
        assert stale.headers["location"].startswith("/review/login")
    finally:
        await context.close()
    # The provider put the person's national identity number in its claims: none of it is kept.
    for path in signed.server.data_dir.rglob("*"):
        if path.is_file():
            assert PID.encode() not in path.read_bytes(), path
    assert PID not in signed.server.log_path.read_text()


async def test_a_person_without_the_reviewer_role_is_refused(
    signed: Signed, browser: Browser
) -> None:
    context = await browser.new_context(locale="nb-NO")
    page = await context.new_page()
    page.set_default_timeout(20_000)
    try:
        await sign_in_at_the_provider(page, signed, "ola")
        await expect(page.locator("#login-error")).to_contain_text("har ikke rollen")
        await screenshot(page, "oidc-refused")
        assert not [c for c in await context.cookies() if c["name"] == "intake_review"]
    finally:
        await context.close()


async def test_a_callback_not_started_here_opens_nothing(signed: Signed) -> None:
    async with httpx.AsyncClient(base_url=signed.server.url) as client:
        forged = await client.get("/review/callback", params={"state": "x", "code": "y"})
        assert forged.status_code == 400
        assert "intake_review=" not in forged.headers.get("set-cookie", "")
        started = await client.get("/review/login/oidc")
        assert started.status_code == 303
        authorize = httpx.URL(started.headers["location"])
        assert authorize.params["code_challenge_method"] == "S256"
        assert authorize.params["client_id"] == CLIENT_ID
    # The state is bound to the browser that started: another cannot use it.
    async with httpx.AsyncClient(
        base_url=signed.server.url, cookies={"intake_review_sign_in": "another"}
    ) as other:
        replay = await other.get(
            "/review/callback", params={"state": authorize.params["state"], "code": "y"}
        )
        assert replay.status_code == 400

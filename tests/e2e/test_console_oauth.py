"""The web console's single sign-on in a real browser (Debian's Chromium driven by Playwright):
a local user opens the console, chooses "Sign in with single sign-on", signs in on the gateway's
OAuth sign-in page and lands back in the console, signed in as themselves, on the page they
first asked for.

Skipped only when /usr/bin/chromium is missing and PORTCULLIS_REQUIRE_BROWSER_TEST is unset.
"""

import json
import os
from pathlib import Path

import httpx
import pytest

from conftest import MASTER_KEY, _free_port, start_gateway, stop_gateway

CHROMIUM = Path("/usr/bin/chromium")
SECRET_KEY = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
USER, PASSWORD = "ines", "correct horse battery staple"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("PORTCULLIS_REQUIRE_BROWSER_TEST"):
            pytest.fail(f"{CHROMIUM} is missing and PORTCULLIS_REQUIRE_BROWSER_TEST is set")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def sso_gateway(mock_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("console-oauth")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config = workdir / "portcullis.yaml"
    config.write_text(json.dumps({
        "secret_key": SECRET_KEY,
        "oauth": {"issuer": base, "sign_in": {"local": True}},
    }))
    gw = start_gateway(mock_url, workdir, {"PORTCULLIS_CONFIG": str(config)}, port=port)
    assert gw.url == base
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    r = httpx.post(f"{base}/admin/teams", headers=admin, json={"id": "research", "name": "Research"})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/admin/users", headers=admin,
                   json={"id": USER, "role": "viewer", "teams": ["research"], "password": PASSWORD})
    assert r.status_code == 201, r.text
    yield gw
    assert stop_gateway(gw) == 0, (workdir / "gateway.log").read_text()


def test_a_user_signs_in_to_the_console_with_single_sign_on(browser, sso_gateway):
    base = sso_gateway.url
    context = browser.new_context()
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        # A page of the console, signed out: the sign-in page, which offers single sign-on.
        page.goto(f"{base}/ui/logs")
        page.wait_for_url(f"{base}/ui/sign-in?next=%2Fui%2Flogs")
        page.get_by_role("link", name="Sign in with single sign-on").click()

        # The gateway's OAuth sign-in page; the console asks no consent.
        page.wait_for_url(f"{base}/oauth/authorize?**")
        assert page.get_by_role("heading", name="Sign in to Portcullis").is_visible()
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("alert").filter(has_text="Invalid username or password").wait_for()
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()

        # Back in the console, on the page first asked for, signed in as the user.
        page.wait_for_url(f"{base}/ui/logs")
        page.locator(".topbar .who").filter(has_text=USER).wait_for()
        who = page.locator(".topbar .who").inner_text()
        assert "Signed in as" in who and USER in who and "viewer" in who, who
        me = page.evaluate("fetch('/ui/api/session').then((r) => r.json())")
        assert me["user"] == USER and me["role"] == "viewer" and me["method"] == "oauth", me
        cookies = {c["name"]: c for c in context.cookies(base)}
        assert cookies["portcullis_console"]["httpOnly"]
        assert "portcullis_console_oauth" not in cookies, "the sign-in's own cookie is gone"
        # The session reads the admin API as the viewer it is: its team's logs, not the users.
        status = page.evaluate("fetch('/admin/logs?limit=5').then((r) => r.status)")
        assert status == 200
        status = page.evaluate("fetch('/admin/users').then((r) => r.status)")
        assert status == 403

        # Signing out and in again through single sign-on works from the topbar's button.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{base}/ui/sign-in**")
        page.get_by_role("link", name="Sign in with single sign-on").click()
        page.wait_for_url(f"{base}/oauth/authorize?**")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/ui/")
        page.locator(".topbar .who").filter(has_text=USER).wait_for()
        assert errors == [], errors
    finally:
        context.close()


def test_a_cancelled_or_foreign_sign_in_shows_why_on_the_sign_in_page(browser, sso_gateway):
    base = sso_gateway.url
    context = browser.new_context()
    page = context.new_page()
    try:
        # A callback this browser did not start: refused, said in words on the sign-in page.
        page.goto(f"{base}/ui/auth/callback?code=abc&state=forged.state")
        page.wait_for_url(f"{base}/ui/sign-in?**")
        page.get_by_role("alert").filter(has_text="start again").wait_for()
        assert "portcullis_console" not in {c["name"] for c in context.cookies(base)}
        # A sign-in asked to end on another site ends in the console.
        page.goto(f"{base}/ui/auth/oauth?next=https://evil.example/")
        page.wait_for_url(f"{base}/oauth/authorize?**")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/ui/")
        page.locator(".topbar .who").filter(has_text=USER).wait_for()
    finally:
        context.close()


def test_an_admin_lists_and_revokes_a_service_accounts_oauth_clients(browser, sso_gateway):
    base = sso_gateway.url
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    r = httpx.post(f"{base}/admin/service-accounts", headers=admin, json={"id": "evals", "name": "Evals"})
    assert r.status_code == 201, r.text
    old = httpx.post(f"{base}/admin/service-accounts/evals/clients", headers=admin,
                     json={"name": "old", "scopes": ["models"]}).json()
    new = httpx.post(f"{base}/admin/service-accounts/evals/clients", headers=admin,
                     json={"name": "new", "scopes": ["models"]}).json()

    def token(creds):
        return httpx.post(f"{base}/oauth/token", auth=(creds["client_id"], creds["client_secret"]),
                          data={"grant_type": "client_credentials", "scope": "models"}).status_code

    assert token(old) == 200
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{base}/ui/service-accounts")
        page.get_by_label("Master key").fill(MASTER_KEY)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="OAuth clients of evals").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text(old["client_id"]).wait_for()
        assert dialog.get_by_text(new["client_id"]).count() == 1
        assert dialog.get_by_text(old["client_secret"]).count() == 0
        dialog.get_by_role("button", name=f"Revoke client {old['client_id']}").click()
        page.get_by_role("status").filter(has_text="revoked").wait_for()
        dialog.get_by_text(old["client_id"]).wait_for(state="detached")
    finally:
        context.close()
    # The old secret gets no token any more; the new one does.
    assert token(old) == 401
    assert token(new) == 200
    listed = httpx.get(f"{base}/admin/service-accounts/evals/clients", headers=admin).json()["data"]
    assert [c["client_id"] for c in listed] == [new["client_id"]]

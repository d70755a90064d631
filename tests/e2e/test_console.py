"""The web console in a real browser (Debian's Chromium, driven by Playwright), the way a person
uses it: sign in, find a request in the logs by filter and open it, create a key and use it with
the `openai` SDK, revoke it and see it fail, a viewer who sees only its own team and can change
nothing, a member who makes a key for itself and sees only its own requests, and attacks that must fail (a cross-origin page forging admin calls, a log record whose
metadata holds script). Every page is visited with no error and no Content-Security-Policy
violation, and a screenshot of each is saved (PORTCULLIS_SCREENSHOTS, default
target/console-screenshots)."""

import json
import os
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest

from conftest import MASTER_KEY, OPENAI_KEY, ROOT, _free_port, start_gateway, stop_gateway

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("PORTCULLIS_SCREENSHOTS") or ROOT / "target" / "console-screenshots")

if not os.path.exists(CHROMIUM):
    if os.environ.get("PORTCULLIS_REQUIRE_BROWSER_TEST"):
        raise RuntimeError(f"{CHROMIUM} is missing but PORTCULLIS_REQUIRE_BROWSER_TEST is set")
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
# axe-core (npm, installed with the MCP suites' packages): the accessibility rules of WCAG 2.1
# A and AA — labels, names, contrast, landmarks, ARIA — checked on every page in both themes.
AXE = ROOT / "tests" / "mcp" / "node_modules" / "axe-core" / "axe.min.js"
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def gw(mock_url, tmp_path_factory):
    gw = start_gateway(mock_url, tmp_path_factory.mktemp("console"),
                       extra_env={"PORTCULLIS_SECRET_KEY": "a console test vault passphrase of 32+ chars"})
    yield gw
    assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page whose console errors and failed script loads are collected: a CSP violation or
    an uncaught exception fails the test that caused it."""

    def __init__(self, browser, base_url):
        self.context = browser.new_context(base_url=base_url, viewport={"width": 1440, "height": 900})
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def clean(self, allow=()):
        bad = [e for e in self.errors if not any(a in e for a in allow)]
        assert not bad, bad

    def close(self):
        self.context.close()


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def accessibility_violations(page):
    """What axe-core finds against WCAG 2.1 A and AA on the page as it is shown now (open
    dialogs included): each violated rule with its impact and the first elements at fault."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        "rules => axe.run(document, {runOnly: {type: 'tag', values: rules}, resultTypes: ['violations']})",
        AXE_RULES)
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"][:3]]) for v in result["violations"]]


def sign_in_with_master_key(w: Watched, next_path="/ui/"):
    w.page.goto(next_path)
    expect(w.page).to_have_url(re.compile(r"/ui/sign-in"))
    w.page.get_by_label("Master key").fill(MASTER_KEY)
    w.page.get_by_role("button", name="Sign in").click()
    expect(w.page.get_by_text("Signed in as")).to_be_visible()


def sign_in_with_password(w: Watched, user):
    w.page.goto("/ui/sign-in")
    w.page.get_by_role("tab", name="User and password").click()
    w.page.get_by_label("User id or e-mail").fill(user)
    w.page.get_by_label("Password").fill(PASSWORD)
    w.page.get_by_role("button", name="Sign in").click()


def chat(gw, key, model, metadata=None):
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    headers = {"x-portcullis-metadata": json.dumps(metadata)} if metadata else None
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello"}], extra_headers=headers)
    return raw.headers["x-portcullis-request-id"], raw.parse()


def wait_logged(gw, request_id):
    deadline = time.time() + 10
    while time.time() < deadline:
        r = httpx.get(f"{gw.url}/admin/logs/{request_id}", headers=ADMIN)
        if r.status_code == 200:
            return r.json()
        time.sleep(0.05)
    raise AssertionError(f"{request_id} was not logged")


def test_sign_in_with_the_master_key_then_find_a_request_by_filter_and_open_it(gw, browser):
    wanted, _ = chat(gw, MASTER_KEY, "gpt-4o-mini", {"ticket": "T-1234"})
    for _ in range(3):
        chat(gw, MASTER_KEY, "gpt-4o")
    wait_logged(gw, wanted)

    w = Watched(browser, gw.url)
    page = w.page
    page.goto("/ui/sign-in")
    shot(page, "sign-in")
    # A wrong key is refused on the page, and nothing is signed in.
    page.get_by_label("Master key").fill("not-the-master-key-0000")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error-box")).to_contain_text("not the master key")
    sign_in_with_master_key(w)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".card").first).to_be_visible()
    shot(page, "overview")

    page.get_by_role("link", name="Logs").click()
    expect(page).to_have_url(re.compile(r"/ui/logs$"))
    page.get_by_label("Model (served)").fill("gpt-4o-mini")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"model=gpt-4o-mini"))
    rows = page.locator("tbody tr")
    expect(rows.first).to_be_visible()
    for text in rows.all_inner_texts():
        assert "gpt-4o-mini" in text, text
    # The list shows the last 12 characters of each request id; ours is there.
    expect(page.get_by_text(wanted[-12:])).to_be_visible()
    shot(page, "logs")

    page.get_by_text(wanted[-12:]).click()
    expect(page).to_have_url(re.compile(rf"/ui/logs/{wanted}$"))
    expect(page.locator("main h1")).to_contain_text(wanted)
    expect(page.get_by_text("T-1234")).to_be_visible()
    expect(page.get_by_text("Input tokens", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Upstream attempts")).to_be_visible()
    shot(page, "log-record")

    # The record's URL opens on its own (a shared link), as does a filtered list.
    page.goto(f"/ui/logs/{wanted}")
    expect(page.get_by_text("T-1234")).to_be_visible()
    page.goto("/ui/logs?metadata=ticket%3DT-1234")
    expect(page.get_by_text(wanted[-12:])).to_be_visible()
    w.clean(allow=["401"])  # the wrong key's refusal

    # Sign out: the session has ended in this browser and on the server.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    page.goto("/ui/logs")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    w.close()


def test_create_a_key_use_it_with_the_openai_sdk_then_revoke_it(gw, browser):
    w = Watched(browser, gw.url)
    page = w.page
    sign_in_with_master_key(w, "/ui/keys")
    expect(page).to_have_url(re.compile(r"/ui/keys"))
    page.get_by_role("button", name="Create key").first.click()
    page.locator("input[name=name]").fill("for a teammate")
    page.locator("dialog, form").get_by_role("button", name="Create key").last.click()
    secret_field = page.get_by_label("New key secret")
    expect(secret_field).to_be_visible()
    secret = secret_field.input_value()
    assert secret.startswith("pk-"), secret
    expect(page.get_by_role("button", name="Copy", exact=True)).to_be_visible()
    shot(page, "key-created")
    page.keyboard.press("Escape")

    # The teammate uses it with the official SDK, and the console shows it used.
    request_id, answer = chat(gw, secret, "gpt-4o-mini")
    assert answer.choices[0].message.content
    record = wait_logged(gw, request_id)
    key_id = record["key_id"]
    page.goto(f"/ui/logs?key={key_id}")
    expect(page.get_by_text(request_id[-12:])).to_be_visible()

    page.goto("/ui/keys")
    shot(page, "keys")
    row = page.locator("tr", has_text="for a teammate")
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name=re.compile("Revoke|Confirm")).click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    expect(page.locator("tr", has_text="for a teammate")).to_have_count(0)

    with pytest.raises(openai.AuthenticationError):
        chat(gw, secret, "gpt-4o-mini")
    w.clean()
    w.close()


def test_a_viewer_sees_only_its_teams_requests_and_changes_nothing(gw, browser):
    for team in ["alpha", "beta"]:
        r = httpx.post(f"{gw.url}/admin/teams", headers=ADMIN, json={"id": team, "name": team})
        assert r.status_code in (201, 409), r.text
    r = httpx.post(f"{gw.url}/admin/users", headers=ADMIN, json={
        "id": "vic", "email": "vic@example.com", "role": "viewer", "password": PASSWORD,
        "teams": ["alpha"]})
    assert r.status_code == 201, r.text
    keys = {}
    for team in ["alpha", "beta"]:
        r = httpx.post(f"{gw.url}/admin/keys", headers=ADMIN, json={"name": f"{team} key", "team": team})
        assert r.status_code == 201, r.text
        keys[team] = r.json()["key"]
    alpha_id, _ = chat(gw, keys["alpha"], "gpt-4o-mini")
    beta_id, _ = chat(gw, keys["beta"], "gpt-4o-mini")
    wait_logged(gw, alpha_id)
    wait_logged(gw, beta_id)

    w = Watched(browser, gw.url)
    page = w.page
    sign_in_with_password(w, "vic@example.com")
    expect(page.get_by_text("Signed in as")).to_contain_text("viewer")
    # Admin pages are not offered…
    expect(page.get_by_role("link", name="Virtual keys")).to_have_count(0)
    page.goto("/ui/logs")
    expect(page.get_by_text(alpha_id[-12:])).to_be_visible()
    expect(page.get_by_text(beta_id[-12:])).to_have_count(0)
    shot(page, "logs-viewer")
    page.goto(f"/ui/logs/{beta_id}")
    expect(page.locator(".error-box")).to_be_visible()
    expect(page.get_by_text("beta key")).to_have_count(0)
    # …and the server refuses them, however they are asked for.
    page.goto("/ui/keys")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    status = page.evaluate("""async () => {
        const s = await (await fetch('/ui/api/session')).json();
        const r = await fetch('/admin/keys', {method: 'POST', headers: {'content-type': 'application/json',
            'x-portcullis-csrf': s.csrf_token}, body: JSON.stringify({name: 'sneaky', team: 'alpha'})});
        const t = await fetch('/admin/logs?team=beta');
        return [r.status, t.status];
    }""")
    assert status == [403, 403], status
    listed = httpx.get(f"{gw.url}/admin/keys", headers=ADMIN).json()["data"]
    assert not any(k["name"] == "sneaky" for k in listed)
    w.clean(allow=["403", "404"])
    w.close()


def test_a_log_record_whose_metadata_holds_script_renders_inert(gw, browser):
    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    request_id, _ = chat(gw, MASTER_KEY, "gpt-4o-mini", {"note": payload, "<b>k</b>": "v"})
    wait_logged(gw, request_id)
    w = Watched(browser, gw.url)
    page = w.page
    sign_in_with_master_key(w, f"/ui/logs/{request_id}")
    expect(page.get_by_text(payload)).to_be_visible()
    expect(page.get_by_text("<b>k</b>")).to_be_visible()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img[src=x]").count() == 0
    assert page.locator("main script").count() == 0
    page.goto("/ui/logs?metadata=note%3D" + httpx.QueryParams({"x": payload})["x"].replace("=", "%3D"))
    assert page.evaluate("window.__pwned") is None
    w.clean(allow=["Failed to load resource"])
    w.close()


class _Evil(BaseHTTPRequestHandler):
    """A page on another origin that tries to act with the console's session."""
    target = ""

    def do_GET(self):  # noqa: N802
        body = f"""<!doctype html><body>
<form id=f method=POST action="{self.target}/admin/teams" enctype="text/plain">
<input name='{{"id":"pwned-form","name":"x","a":"' value='"}}'></form>
<script>
fetch("{self.target}/admin/teams", {{method: "POST", credentials: "include", mode: "no-cors",
  headers: {{"content-type": "text/plain"}}, body: JSON.stringify({{id: "pwned-fetch", name: "x"}})}})
  .finally(() => document.getElementById("f").submit());
</script></body>""".encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_page_on_another_origin_cannot_act_with_the_console_session(gw, browser):
    port = _free_port()
    _Evil.target = gw.url
    server = ThreadingHTTPServer(("127.0.0.1", port), _Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w = Watched(browser, gw.url)
        sign_in_with_master_key(w)
        # Same site (127.0.0.1), another origin (port): the cookie may travel, so the
        # anti-CSRF token and the origin check are what stop it.
        evil = w.context.new_page()
        evil.goto(f"http://127.0.0.1:{port}/")
        evil.wait_for_timeout(1500)
        for team in ["pwned-form", "pwned-fetch"]:
            r = httpx.get(f"{gw.url}/admin/teams/{team}", headers=ADMIN)
            assert r.status_code == 404, (team, r.text)
        w.close()
    finally:
        server.shutdown()


PAGES = [
    ("/ui/", "Overview"), ("/ui/logs", "Request logs"), ("/ui/keys", None), ("/ui/users", None),
    ("/ui/teams", None), ("/ui/service-accounts", None), ("/ui/provider-keys", None),
    ("/ui/providers", None), ("/ui/mcp", None), ("/ui/policies", None), ("/ui/approvals", None),
    ("/ui/audit", None),
]


def test_every_page_opens_without_errors_and_passes_accessibility_checks_in_light_and_dark(gw, browser):
    w = Watched(browser, gw.url)
    page = w.page
    page.goto("/ui/sign-in")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    found = {"/ui/sign-in": accessibility_violations(page)}
    sign_in_with_master_key(w)
    for path, heading in PAGES:
        page.goto(path)
        main = page.locator("main h1").first
        expect(main).to_be_visible()
        if heading:
            expect(main).to_have_text(heading)
        # No page-level failure (each page shows what it could not load in an alert).
        expect(page.locator("main").get_by_text("Loading…")).to_have_count(0)
        expect(page.locator("main .error-box")).to_have_count(0)
        name = path.strip("/").replace("ui", "", 1).strip("/") or "overview"
        shot(page, f"page-{name.replace('/', '-')}")
        found[f"{path} (light)"] = accessibility_violations(page)
    newest, _ = chat(gw, MASTER_KEY, "gpt-4o-mini")
    wait_logged(gw, newest)
    record = f"/ui/logs/{newest}"
    page.goto(record)
    expect(page.locator("main h1").first).to_be_visible()
    found[f"{record} (light)"] = accessibility_violations(page)
    page.emulate_media(color_scheme="dark")
    for path, _ in PAGES + [(record, None)]:
        page.goto(path)
        expect(page.locator("main h1").first).to_be_visible()
        expect(page.locator("main").get_by_text("Loading…")).to_have_count(0)
        found[f"{path} (dark)"] = accessibility_violations(page)
    page.goto("/ui/")
    expect(page.locator(".card").first).to_be_visible()
    shot(page, "overview-dark")
    # A dialog, and the sign-in page, are checked too.
    page.goto("/ui/keys")
    page.get_by_role("button", name="Create key").first.click()
    expect(page.get_by_role("dialog")).to_be_visible()
    found["/ui/keys (create dialog)"] = accessibility_violations(page)
    page.keyboard.press("Escape")
    bad = {where: v for where, v in found.items() if v}
    assert not bad, json.dumps(bad, indent=1)
    # The keyboard reaches the navigation and activates it.
    page.goto("/ui/")
    expect(page.locator(".card").first).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement && document.activeElement.tagName")
    assert focused in ("A", "BUTTON"), focused
    logs = page.get_by_role("navigation").get_by_role("link", name="Logs")
    logs.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/logs$"))
    w.clean()
    w.close()


def test_a_member_makes_a_key_for_itself_and_sees_only_its_own_requests(gw, browser):
    r = httpx.post(f"{gw.url}/admin/teams", headers=ADMIN, json={"id": "gamma", "name": "gamma"})
    assert r.status_code in (201, 409), r.text
    r = httpx.post(f"{gw.url}/admin/users", headers=ADMIN, json={
        "id": "mia", "role": "member", "password": PASSWORD, "teams": ["gamma"]})
    assert r.status_code == 201, r.text
    # Somebody else's request, in the same team.
    r = httpx.post(f"{gw.url}/admin/keys", headers=ADMIN, json={"name": "someone's", "team": "gamma"})
    assert r.status_code == 201, r.text
    theirs, _ = chat(gw, r.json()["key"], "gpt-4o-mini")
    wait_logged(gw, theirs)

    w = Watched(browser, gw.url)
    page = w.page
    sign_in_with_password(w, "mia")
    expect(page.get_by_text("Signed in as")).to_contain_text("member")
    # Its own pages only.
    expect(page.get_by_role("link", name="Virtual keys")).to_be_visible()
    expect(page.get_by_role("link", name="Users")).to_have_count(0)

    page.get_by_role("link", name="Virtual keys").click()
    expect(page.get_by_role("heading", name="Your virtual keys")).to_be_visible()
    page.get_by_role("button", name="Create key").first.click()
    page.locator("input[name=name]").fill("mia's laptop")
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Team").select_option("gamma")
    expect(dialog.get_by_label("Service account")).to_have_count(0)
    page.locator("dialog, form").get_by_role("button", name="Create key").last.click()
    secret = page.get_by_label("New key secret").input_value()
    assert secret.startswith("pk-"), secret
    page.keyboard.press("Escape")

    mine, _ = chat(gw, secret, "gpt-4o-mini")
    record = wait_logged(gw, mine)
    assert record["user"] == "mia" and record["team"] == "gamma", record
    page.goto("/ui/logs")
    expect(page.get_by_text(mine[-12:])).to_be_visible()
    expect(page.get_by_text(theirs[-12:])).to_have_count(0)
    shot(page, "logs-member")
    page.goto(f"/ui/logs/{theirs}")
    expect(page.locator(".error-box")).to_be_visible()

    # Revoking its own key works; an admin's pages and another's key stay out of reach.
    page.goto("/ui/keys")
    page.locator("tr", has_text="mia's laptop").get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name=re.compile("Revoke|Confirm")).click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        chat(gw, secret, "gpt-4o-mini")
    page.goto("/ui/users")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    status = page.evaluate("""async () => {
        const s = await (await fetch('/ui/api/session')).json();
        const r = await fetch('/admin/keys', {method: 'POST', headers: {'content-type': 'application/json',
            'x-portcullis-csrf': s.csrf_token}, body: JSON.stringify({name: 'for max', user: 'max'})});
        return r.status;
    }""")
    assert status == 403, status
    w.clean(allow=["403", "404"])
    w.close()


def test_an_admin_sets_a_teams_budget_and_its_keys_are_held_to_it(gw, browser):
    r = httpx.post(f"{gw.url}/admin/teams", headers=ADMIN, json={"id": "delta", "name": "Delta"})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{gw.url}/admin/keys", headers=ADMIN, json={"name": "delta's", "team": "delta"})
    assert r.status_code == 201, r.text
    key = r.json()["key"]

    w = Watched(browser, gw.url)
    page = w.page
    sign_in_with_master_key(w, "/ui/teams")
    page.get_by_role("button", name="Limits of delta").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Requests per minute").fill("100")
    dialog.get_by_label("Budget (USD)").fill("0.000001")
    dialog.get_by_label("Budget period").select_option("daily")
    assert not accessibility_violations(page)
    dialog.get_by_role("button", name="Save limits").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    expect(page.locator("tr", has_text="Delta")).to_contain_text("100 req/min")
    # Members are read when their dialog opens; one added there is counted in the list.
    r = httpx.post(f"{gw.url}/admin/users", headers=ADMIN, json={"id": "dora", "role": "member"})
    assert r.status_code == 201, r.text
    page.get_by_role("button", name="Members of delta").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("No member yet.")).to_be_visible()
    dialog.get_by_label("User").fill("dora")
    dialog.get_by_role("button", name="Add member").click()
    expect(dialog.get_by_role("cell", name="dora", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(page.locator("tr", has_text="Delta").locator("td").nth(1)).to_have_text("1")
    shot(page, "teams")
    team = httpx.get(f"{gw.url}/admin/teams/delta", headers=ADMIN).json()
    assert team["members"] == ["dora"], team
    assert team["limits"] == {"requests_per_minute": 100, "tokens_per_minute": None, "max_in_flight": None}, team
    assert team["budget"] == {"usd": 0.000001, "period": "daily"}, team

    # The team's key is held to the team's budget: once it is spent, the SDK sees a 429.
    with pytest.raises(openai.RateLimitError) as refused:
        for _ in range(2):
            chat(gw, key, "gpt-4o-mini")
    assert refused.value.status_code == 429
    w.clean()
    w.close()


def test_an_admin_rotates_a_provider_key_and_requests_use_the_new_secret_at_once(gw, browser):
    r = httpx.post(f"{gw.url}/admin/teams", headers=ADMIN, json={"id": "epsilon", "name": "Epsilon"})
    assert r.status_code == 201, r.text
    # The team's OpenAI key is one the provider no longer accepts.
    r = httpx.post(f"{gw.url}/admin/provider-keys", headers=ADMIN, json={
        "provider": "openai", "alias": "epsilon", "team": "epsilon", "secret": "sk-revoked-at-openai-0000"})
    assert r.status_code == 201, r.text
    provider_key = r.json()
    r = httpx.post(f"{gw.url}/admin/keys", headers=ADMIN, json={"name": "epsilon's", "team": "epsilon"})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    with pytest.raises(openai.APIStatusError):
        chat(gw, key, "gpt-4o-mini")

    w = Watched(browser, gw.url)
    page = w.page
    sign_in_with_master_key(w, "/ui/provider-keys")
    row = page.locator("tr", has_text="epsilon")
    expect(row).to_contain_text("…0000")
    page.get_by_role("button", name="Rotate openai key epsilon").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("New secret").fill(OPENAI_KEY)
    dialog.get_by_role("button", name="Rotate").click()
    expect(page.get_by_role("status")).to_contain_text("rotated")
    expect(page.locator("tr", has_text="epsilon")).to_contain_text("…" + OPENAI_KEY[-4:])
    expect(page.get_by_text(OPENAI_KEY)).to_have_count(0)
    shot(page, "provider-keys")

    # Same id and alias; the team's requests use the new secret.
    request_id, answer = chat(gw, key, "gpt-4o-mini")
    assert answer.choices[0].message.content
    record = wait_logged(gw, request_id)
    assert record["provider_key_id"] == provider_key["id"], record
    w.clean(allow=["502", "401"])
    w.close()

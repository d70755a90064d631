"""A stand-in for the user's browser during an OAuth sign-in: given the authorization URL an
MCP client opens, it signs in on the gateway's page with the username and password in
`E2E_USERNAME` and `E2E_PASSWORD`, approves the consent page, and follows the redirect to the
client's callback — the steps a person would click through. Each step is appended to the file
named by `E2E_BROWSER_LOG`.

Run as `python browser.py <url>` (what `BROWSER` points at, through a small wrapper).
"""

import html
import os
import re
import sys

import httpx

LOG = os.environ.get("E2E_BROWSER_LOG")


def note(line: str) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def form_request(page: str) -> str:
    found = re.search(r'name="request" value="([^"]*)"', page)
    if not found:
        raise SystemExit(f"no form on the page: {page[:500]}")
    return html.unescape(found.group(1))


def form_action(page: str) -> str:
    found = re.search(r'<form method="post" action="([^"]*)"', page)
    if not found:
        raise SystemExit(f"no form action on the page: {page[:500]}")
    return html.unescape(found.group(1))


def main(url: str) -> None:
    note(f"open {url}")
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        page = browser.get(url)
        note(f"authorize: {page.status_code}")
        page.raise_for_status()
        signed_in = browser.post(form_action(page.text), data={
            "request": form_request(page.text),
            "username": os.environ["E2E_USERNAME"],
            "password": os.environ["E2E_PASSWORD"],
        })
        note(f"sign-in: {signed_in.status_code}")
        signed_in.raise_for_status()
        consent = browser.post(form_action(signed_in.text), data={
            "request": form_request(signed_in.text),
            "decision": "approve",
        })
        callback = consent.headers.get("location", "")
        note(f"consent: {consent.status_code} -> {callback.split('?')[0]}")
        if consent.status_code != 303:
            raise SystemExit(f"consent answered {consent.status_code}: {consent.text[:500]}")
        done = browser.get(callback)
        note(f"callback: {done.status_code}")


if __name__ == "__main__":
    main(sys.argv[1])

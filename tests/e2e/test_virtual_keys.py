"""A team's virtual key used with the official SDKs, as its developers would: calls accounted
to the user and team, models outside the key refused, the key's own rate limit, revocation."""

import uuid

import anthropic
import httpx
import openai
import pytest

from conftest import MASTER_KEY


def admin(gateway, method, path, body=None):
    r = httpx.request(method, f"{gateway.url}{path}", json=body,
                      headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert r.status_code < 300, r.text
    return r.json()


@pytest.fixture()
def team_key(gateway):
    suffix = uuid.uuid4().hex[:8]
    team = admin(gateway, "POST", "/admin/teams", {"id": f"search-{suffix}", "name": "Search"})
    user = f"dev-{suffix}"
    admin(gateway, "POST", "/admin/users",
          {"id": user, "email": f"{user}@corp.test", "teams": [team["id"]], "role": "member"})
    key = admin(gateway, "POST", "/admin/keys", {
        "name": "laptop", "user": user, "team": team["id"], "models": ["openai/*"],
        "limits": {"requests_per_minute": 3},
    })
    assert key["key"].startswith("pk-")
    return {"team": team["id"], "user": user, "id": key["id"], "secret": key["key"]}


def test_a_virtual_key_works_with_the_sdks_and_is_accounted_to_its_owner(gateway, team_key):
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=team_key["secret"], max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == "Hello from the mock! You said: hi"
    rec = gateway.log_of(raw.headers["x-portcullis-request-id"])
    assert rec["auth_method"] == "virtual_key"
    assert rec["user"] == team_key["user"]
    assert rec["team"] == team_key["team"]
    assert rec["key_id"] == team_key["id"]

    # A model the key does not allow: refused in Anthropic's dialect for the Anthropic SDK.
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=team_key["secret"], max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=16,
                               messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "permission_error"

    # The key's own limit: three requests a minute.
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "2"}])
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "3"}])
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "4"}])
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_a_revoked_key_stops_at_once(gateway, team_key):
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=team_key["secret"], max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    admin(gateway, "DELETE", f"/admin/keys/{team_key['id']}")
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "key_revoked"

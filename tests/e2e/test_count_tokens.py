"""Anthropic's token counting, `messages.count_tokens`, end to end with the official
`anthropic` SDK, unmodified.

First against the mock's Anthropic API directly: if the SDK sends it and parses the answer
(and its errors), the mock counts tokens as Anthropic does. Then through the gateway, with no
config file, to an Anthropic, a Gemini and an OpenAI upstream: the first two count at their
own endpoints, the third gets the gateway's documented estimate, and each says which in its
`x-portcullis-token-count` header and its log record.
"""

import anthropic
import pytest

from conftest import ANTHROPIC_KEY, MASTER_KEY, start_gateway, stop_gateway

TOOLS = [{
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
MESSAGES = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                       "input": {"city": "Paris"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]},
]


def test_the_mock_counts_tokens_as_anthropic_does(mock_url):
    c = anthropic.Anthropic(base_url=mock_url, api_key=ANTHROPIC_KEY, max_retries=0)
    short = c.messages.count_tokens(model="claude-sonnet-4-5",
                                    messages=[{"role": "user", "content": "hi"}])
    assert short.input_tokens > 0
    full = c.messages.count_tokens(model="claude-sonnet-4-5", system="Be brief.", tools=TOOLS,
                                   messages=MESSAGES)
    assert full.input_tokens > short.input_tokens
    with pytest.raises(anthropic.BadRequestError) as bad:
        c.messages.count_tokens(model="claude-sonnet-4-5", messages=MESSAGES,
                                extra_body={"max_tokens": 10})
    assert "max_tokens" in bad.value.message
    with pytest.raises(anthropic.BadRequestError):
        c.messages.count_tokens(model="claude-sonnet-4-5",
                                messages=[{"role": "system", "content": "x"}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=mock_url, api_key="wrong", max_retries=0).messages.count_tokens(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])


@pytest.fixture(scope="module")
def gw(mock_url, tmp_path_factory):
    gw = start_gateway(mock_url, tmp_path_factory.mktemp("count"), extra_env={
        "GEMINI_API_KEY": "AIza-mock-gemini", "GEMINI_BASE_URL": mock_url,
    })
    yield gw
    assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()


@pytest.mark.parametrize("model,provider,source", [
    ("claude-sonnet-4-5", "anthropic", "provider"),
    ("gemini-2.5-flash", "gemini", "provider"),
    ("gpt-4o", "openai", "estimate"),
])
def test_count_tokens_through_the_gateway(gw, model, provider, source):
    c = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    raw = c.messages.with_raw_response.count_tokens(model=model, system="Be brief.", tools=TOOLS,
                                                     messages=MESSAGES)
    count = raw.parse()
    assert count.input_tokens > 10
    assert raw.headers["x-portcullis-token-count"] == source
    rec = gw.log_of(raw.headers["x-portcullis-request-id"])
    assert rec["endpoint"] == "count_tokens"
    assert rec["provider"] == provider
    assert rec["status"] == 200
    assert not rec.get("cost_usd")
    short = c.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hi"}])
    assert 0 < short.input_tokens < count.input_tokens


def test_count_tokens_errors_through_the_gateway(gw):
    c = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        c.messages.count_tokens(model="nobody/model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError):
        c.messages.count_tokens(model="claude-sonnet-4-5", messages=[])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gw.url, api_key="wrong", max_retries=0).messages.count_tokens(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])


# Vertex AI: the mock's count endpoints against AnthropicVertex and google-genai (vertexai=True),
# then the gateway counting there.
from test_vertex import CLAUDE, claude_client, gemini_client, vertex_gateway, vertex_mock  # noqa: E402,F401


def test_the_vertex_mock_counts_tokens_as_vertex_does(vertex_mock):
    claude = claude_client(vertex_mock)
    short = claude.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    full = claude.messages.count_tokens(model=CLAUDE, system="Be brief.", tools=TOOLS, messages=MESSAGES)
    assert 0 < short.input_tokens < full.input_tokens
    gemini = gemini_client(vertex_mock)
    counted = gemini.models.count_tokens(model="gemini-2.5-flash", contents="hello there")
    assert counted.total_tokens > 0


@pytest.mark.parametrize("model", [f"vertex/{CLAUDE}", "vertex/gemini-2.5-flash"])
def test_count_tokens_through_the_gateway_to_vertex(vertex_gateway, model):
    c = anthropic.Anthropic(base_url=vertex_gateway.url, api_key=MASTER_KEY, max_retries=0)
    raw = c.messages.with_raw_response.count_tokens(model=model, system="Be brief.", tools=TOOLS,
                                                     messages=MESSAGES)
    assert raw.parse().input_tokens > 10
    assert raw.headers["x-portcullis-token-count"] == "provider"
    assert raw.headers["x-portcullis-provider"] == "vertex"

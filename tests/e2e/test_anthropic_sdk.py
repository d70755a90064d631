"""The official `anthropic` Python SDK against the gateway, unmodified: messages (complete and
streamed), tool use, translation to an OpenAI upstream, both authentication styles, models,
errors."""

import anthropic
import pytest

from conftest import ANTHROPIC_KEY, MASTER_KEY

TOOLS = [{
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}]


@pytest.fixture()
def client(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0)


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "openai/gpt-4o"])
def test_messages_create(client, gateway, model):
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=128, system="Be brief.", messages=[{"role": "user", "content": "hello"}])
    msg = raw.parse()
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Hello from the mock! You said: hello"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    rec = gateway.log_of(raw.headers["x-portcullis-request-id"])
    assert rec["dialect"] == "anthropic"
    assert rec["output_tokens"] == msg.usage.output_tokens


def test_bearer_auth_token_is_accepted(gateway):
    bearer = anthropic.Anthropic(base_url=gateway.url, auth_token=MASTER_KEY, max_retries=0)
    msg = bearer.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert msg.content[0].text.endswith("x")


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "openai/gpt-4o"])
def test_streaming(client, model):
    with client.messages.stream(model=model, max_tokens=128, messages=[{"role": "user", "content": "stream"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello from the mock! You said: stream"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "openai/gpt-4o"])
def test_tool_use_streamed_and_answered(client, model):
    with client.messages.stream(model=model, max_tokens=128, tools=TOOLS,
                                messages=[{"role": "user", "content": "[tool] Oslo"}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.name == "get_weather"
    assert use.input == {"query": "[tool] Oslo"}

    reply = client.messages.create(model=model, max_tokens=64, tools=TOOLS, messages=[
        {"role": "user", "content": "[tool] Oslo"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "content": "cold"},
            {"type": "text", "text": "thanks"},
        ]},
    ])
    assert reply.content[0].text == "Hello from the mock! You said: thanks"


def test_errors_map_to_sdk_exceptions(client, gateway):
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nowhere/model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    bad = anthropic.Anthropic(base_url=gateway.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="anthropic/mock-error-429", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="openai/mock-error-400", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(model="anthropic/mock-error-529", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 503


def test_an_error_event_mid_stream_raises(client):
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(model="anthropic/mock-error-midstream", max_tokens=5,
                                    messages=[{"role": "user", "content": "x"}]) as s:
            for _ in s:
                pass


def test_models_list(client):
    """Anthropic's paginated shape: the SDK walks every page with `after_id`, and a model is
    retrieved with its display name and release date."""
    whole = client.models.list(limit=1000)
    assert whole.has_more is False
    ids = [m.id for m in whole.data]
    assert "anthropic/claude-sonnet-4-5-20250929" in ids and "openai/gpt-4o" in ids, ids
    first = client.models.list(limit=2)
    assert len(first.data) == 2 and first.has_more is True
    assert first.first_id == ids[0] and first.last_id == ids[1]
    assert [m.id for m in client.models.list(limit=2)] == ids, "auto-pagination reads every page"
    model = client.models.retrieve("anthropic/claude-sonnet-4-5-20250929")
    assert model.type == "model"
    assert model.display_name == "Claude Sonnet 4.5"
    assert model.created_at.isoformat() == "2025-09-29T00:00:00+00:00"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("nowhere/model")


def test_the_mock_lists_models_as_anthropic_does(mock_url):
    """The mock upstream the gateway reads is itself read by the SDK: pages, cursors, retrieve."""
    mock = anthropic.Anthropic(base_url=mock_url, api_key=ANTHROPIC_KEY, max_retries=0)
    ids = [m.id for m in mock.models.list(limit=2)]
    assert ids[:2] == ["claude-haiku-4-5-20251001", "claude-sonnet-4-5-20250929"] and len(ids) == 5
    page = mock.models.list(limit=2, after_id=ids[1])
    assert [m.id for m in page.data] == ids[2:4] and page.has_more is True
    assert mock.models.retrieve("claude-sonnet-4-5").id == "claude-sonnet-4-5-20250929"
    with pytest.raises(anthropic.NotFoundError):
        mock.models.retrieve("claude-nowhere")

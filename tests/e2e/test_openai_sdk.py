"""The official `openai` Python SDK against the gateway, unmodified: chat (complete and
streamed), tool calls, translation to an Anthropic upstream, embeddings, models and errors."""

import json

import openai
import pytest

from conftest import MASTER_KEY, OPENAI_KEY

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}]


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-sonnet-4-5"])
def test_chat_completion(client, gateway, model):
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=64,
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "Hello from the mock! You said: hi"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    provider = model.split("/")[0] if "/" in model else "openai"
    assert raw.headers["x-portcullis-provider"] == provider
    rec = gateway.log_of(raw.headers["x-portcullis-request-id"])
    assert rec["status"] == 200
    assert rec["output_tokens"] == resp.usage.completion_tokens


@pytest.mark.parametrize("model", ["gpt-4o-mini", "anthropic/claude-sonnet-4-5"])
def test_streaming_with_and_without_usage(client, model):
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "stream this"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the mock! You said: stream this"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in chunks), "usage only when asked"

    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "stream this"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].choices == []


@pytest.mark.parametrize("model", ["gpt-4o-mini", "anthropic/claude-sonnet-4-5"])
def test_stream_helper_accumulates(client, model):
    with client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "[tool] Paris"}], tools=TOOLS,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"query": "[tool] Paris"}
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "anthropic/claude-sonnet-4-5"])
def test_tool_call_round_trip(client, model):
    first = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "[tool] weather in Lyon"}], tools=TOOLS)
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = msg.tool_calls[0]
    assert json.loads(call.function.arguments)["query"] == "[tool] weather in Lyon"

    second = client.chat.completions.create(model=model, tools=TOOLS, messages=[
        {"role": "user", "content": "[tool] weather in Lyon"},
        msg.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "21C and sunny"},
        {"role": "user", "content": "thanks"},
    ])
    assert second.choices[0].message.content == "Hello from the mock! You said: thanks"


def test_streamed_tool_call_deltas(client):
    args, name = "", None
    for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "[tool] Rome"}], tools=TOOLS, stream=True):
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
    assert name == "get_weather"
    assert json.loads(args) == {"query": "[tool] Rome"}


def test_embeddings_with_the_sdks_default_base64(client):
    resp = client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"])
    assert len(resp.data) == 2
    assert all(len(d.embedding) == 8 for d in resp.data)
    assert abs(sum(x * x for x in resp.data[0].embedding) - 1.0) < 1e-4
    assert resp.usage.prompt_tokens > 0


def test_models_list(client):
    """With providers from the environment alone, the list holds what each provider's own list
    endpoint names, as `provider/model`; what is listed can be used and retrieved."""
    models = list(client.models.list())
    ids = [m.id for m in models]
    for expected in ["openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5-20250929",
                     "anthropic/claude-haiku-4-5-20251001"]:
        assert expected in ids, ids
    assert {m.owned_by for m in models} == {"openai", "anthropic"}
    assert all(m.object == "model" for m in models)
    model = client.models.retrieve("anthropic/claude-haiku-4-5-20251001")
    assert (model.id, model.owned_by) == ("anthropic/claude-haiku-4-5-20251001", "anthropic")
    assert model.created == 1759276800
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("nowhere/model")
    assert e.value.code == "model_not_found"
    reply = client.chat.completions.create(model="anthropic/claude-haiku-4-5-20251001",
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content


def test_the_mock_lists_models_as_openai_does(mock_url):
    """The mock upstream the gateway reads is itself read by the SDK."""
    mock = openai.OpenAI(base_url=f"{mock_url}/v1", api_key=OPENAI_KEY, max_retries=0)
    assert [m.id for m in mock.models.list()] == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    assert mock.models.retrieve("gpt-4o").owned_by == "system"
    with pytest.raises(openai.NotFoundError):
        mock.models.retrieve("gpt-nowhere")


def test_errors_map_to_sdk_exceptions(client, gateway):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nowhere/model", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    assert "nowhere/model" in e.value.message

    bad = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[])

    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="openai/mock-error-429", messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers.get("retry-after")

    for model, status in [("openai/mock-error-500", 502), ("anthropic/mock-error-529", 503), ("openai/mock-error-401", 502)]:
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == status, model


def test_an_upstream_dying_mid_stream_raises(client):
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
                model="openai/mock-drop-midstream", messages=[{"role": "user", "content": "x"}], stream=True):
            pass

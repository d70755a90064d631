"""Amazon Bedrock through the gateway with the official `openai` and `anthropic` SDKs.

The gateway runs with no config file and no OpenAI or Anthropic key: Bedrock alone, enabled
by AWS's own variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, and
`AWS_ENDPOINT_URL_BEDROCK_RUNTIME` pointing at the mock's Bedrock Runtime, which checks every
request's SigV4 signature as AWS does and which `test_bedrock_mock.py` proves faithful with
boto3). Both SDKs reach Bedrock models by their Bedrock ids, streamed (AWS's event stream,
translated to each SDK's server-sent events) and not, with tools and their results; errors
come back as each SDK reads them, embeddings in OpenAI's format, and `models.list()` shows the
models Bedrock's control plane lists (ListFoundationModels, signed)."""

import json

import anthropic
import httpx
import openai
import pytest

from conftest import MASTER_KEY, start_gateway, stop_gateway

CLAUDE = "anthropic.claude-3-5-sonnet-20241022-v2:0"
NOVA = "us.amazon.nova-pro-v1:0"


@pytest.fixture(scope="module")
def bedrock_gateway(mock_url, tmp_path_factory):
    # No OpenAI or Anthropic: Bedrock alone, enabled by the AWS variables.
    gw = start_gateway(mock_url, tmp_path_factory.mktemp("bedrock"), extra_env={
        "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "",
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "", "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": mock_url,
    })
    yield gw
    assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()


def last_bedrock(mock_url):
    sent = httpx.get(f"{mock_url}/mock/requests").json()["data"]
    return next(r for r in reversed(sent) if r["path"].startswith("/model/"))


OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "description": "Time",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
]
ANTHROPIC_TOOLS = [
    {"name": "get_weather", "description": "Weather",
     "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
]


def test_the_openai_sdk_reaches_bedrock_with_tools_streamed_and_not(bedrock_gateway, mock_url):
    c = openai.OpenAI(base_url=f"{bedrock_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    r = c.chat.completions.with_raw_response.create(
        model=CLAUDE,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert r.headers["x-portcullis-provider"] == "bedrock"
    resp = r.parse()
    assert resp.choices[0].message.content == "Hello from the mock! You said: hi"
    assert resp.model == CLAUDE
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    sent = last_bedrock(mock_url)
    assert sent["path"] == "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    assert sent["body"]["system"] == [{"text": "Be brief."}]

    messages = [{"role": "user", "content": "[tools2] Oslo"}]
    stream = c.chat.completions.create(model=NOVA, messages=messages, tools=OPENAI_TOOLS,
                                       stream=True, stream_options={"include_usage": True})
    calls, finish, usage = {}, None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += tc.id or ""
                call["name"] += (tc.function and tc.function.name) or ""
                call["arguments"] += (tc.function and tc.function.arguments) or ""
    assert finish == "tool_calls" and usage.completion_tokens > 0
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"query": "[tools2] Oslo"}
    assert last_bedrock(mock_url)["path"] == "/model/us.amazon.nova-pro-v1%3A0/converse-stream"
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": v["id"], "type": "function",
         "function": {"name": v["name"], "arguments": v["arguments"]}} for v in calls.values()]})
    for v in calls.values():
        messages.append({"role": "tool", "tool_call_id": v["id"],
                         "content": json.dumps({v["name"]: "done"})})
    resp = c.chat.completions.create(model=NOVA, messages=messages, tools=OPENAI_TOOLS)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content.startswith("Hello from the mock! You said:")
    results = last_bedrock(mock_url)["body"]["messages"][2]["content"]
    assert [r["toolResult"]["toolUseId"] for r in results] == [v["id"] for v in calls.values()]

    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="bedrock/mock-error-429",
                                  messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "1"
    assert "Too many requests" in e.value.message


def test_the_openai_sdk_embeds_through_bedrock(bedrock_gateway):
    c = openai.OpenAI(base_url=f"{bedrock_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    # The SDK asks for base64 by default and decodes it.
    one = c.embeddings.create(model="amazon.titan-embed-text-v2:0", input="hello", dimensions=256)
    assert len(one.data[0].embedding) == 256 and one.usage.prompt_tokens > 0
    many = c.embeddings.create(model="cohere.embed-english-v3", input=["a", "b"],
                               extra_body={"input_type": "search_query"})
    assert [d.index for d in many.data] == [0, 1]
    assert len(many.data[1].embedding) == 1024
    with pytest.raises(openai.BadRequestError) as e:
        c.embeddings.create(model="amazon.titan-embed-text-v2:0", input=["a", "b"])
    assert "one text per request" in e.value.message


def test_the_anthropic_sdk_reaches_bedrock_with_tools_streamed_and_not(bedrock_gateway, mock_url):
    c = anthropic.Anthropic(base_url=bedrock_gateway.url, api_key=MASTER_KEY, max_retries=0)
    msg = c.messages.create(model=CLAUDE, max_tokens=100, system="Be brief.",
                            messages=[{"role": "user", "content": "[tool] Lima"}],
                            tools=ANTHROPIC_TOOLS)
    assert msg.stop_reason == "tool_use"
    assert msg.model == CLAUDE
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"query": "[tool] Lima"}
    with c.messages.stream(model=CLAUDE, max_tokens=100, tools=ANTHROPIC_TOOLS,
                           messages=[
                               {"role": "user", "content": "[tool] Lima"},
                               {"role": "assistant", "content": msg.content},
                               {"role": "user", "content": [{"type": "tool_result",
                                                             "tool_use_id": use.id,
                                                             "content": "sunny"}]},
                           ]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the mock! You said: sunny"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    sent = last_bedrock(mock_url)
    assert sent["body"]["messages"][2]["content"][0]["toolResult"]["toolUseId"] == use.id

    # Streamed tool use reaches the SDK as a tool_use block with its whole input.
    with c.messages.stream(model=CLAUDE, max_tokens=100, tools=ANTHROPIC_TOOLS,
                           messages=[{"role": "user", "content": "[tool] Quito"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].input == {"query": "[tool] Quito"}

    with pytest.raises(anthropic.NotFoundError):
        c.messages.create(model="bedrock/mock-error-404", max_tokens=10,
                          messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model="bedrock/mock-error-429", max_tokens=10,
                          messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "1"


def test_the_openai_sdk_lists_the_bedrock_models(bedrock_gateway, mock_url):
    c = openai.OpenAI(base_url=f"{bedrock_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    ids = [m.id for m in c.models.list()]
    for model in ("bedrock/amazon.nova-lite-v1:0", "bedrock/anthropic.claude-3-haiku-20240307-v1:0"):
        assert model in ids, ids
    # Embedding and image models, and those reached only through inference profiles, are not.
    assert not {"bedrock/amazon.titan-embed-text-v2:0", "bedrock/stability.sd3-5-large-v1:0",
                "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"} & set(ids)
    # Read from the control plane's ListFoundationModels (the mock lists nothing unsigned).
    sent = httpx.get(f"{mock_url}/mock/requests").json()["data"]
    assert any(r["method"] == "GET" and r["path"] == "/foundation-models" for r in sent)
    r = c.chat.completions.create(model="bedrock/amazon.nova-lite-v1:0",
                                  messages=[{"role": "user", "content": "listed"}])
    assert r.choices[0].message.content == "Hello from the mock! You said: listed"


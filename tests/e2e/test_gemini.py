"""Gemini, end to end.

First the mock's Gemini API against Google's official `google-genai` SDK, unmodified, pointed at
it with `base_url`: text, system instructions, streaming, function declarations, parallel calls
and their responses (Gemini 3's thought signatures kept by the SDK's own history), usage,
errors as the SDK parses them, embeddings, token counting and the model list. If the SDK sends
it, parses it and streams it, the mock is a faithful stand-in for Gemini in the gateway's tests.

Then the gateway with no config file, Gemini enabled by `GEMINI_API_KEY` and `GEMINI_BASE_URL`
alone, reached by the official `openai` and `anthropic` SDKs: text, streams, tools and results.
"""

import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors, types

from conftest import MASTER_KEY, start_gateway, stop_gateway

GEMINI_KEY = "AIza-mock-gemini"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather in a city",
    parameters_json_schema={"type": "object", "properties": {"query": {"type": "string"}},
                            "required": ["query"]},
)
TIME = types.FunctionDeclaration(
    name="get_time",
    description="Current time in a city",
    parameters_json_schema={"type": "object", "properties": {"query": {"type": "string"}}},
)


def client(url, key=GEMINI_KEY):
    # The gateway speaks v1beta, the version that has every feature; the SDK is told so.
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=url, api_version="v1beta", retry_options=types.HttpRetryOptions(attempts=1)))


def tool_config(**extra):
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER, TIME])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        **extra,
    )


def test_generate_content_with_a_system_instruction_and_usage(mock_url):
    c = client(mock_url)
    resp = c.models.generate_content(
        model="gemini-2.5-flash", contents="hello",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=64,
                                           temperature=0.1))
    assert resp.text == "Hello from the mock! You said: hello"
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    u = resp.usage_metadata
    assert u.prompt_token_count > 0 and u.candidates_token_count > 0
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count
    assert resp.model_version == "gemini-2.5-flash"
    assert resp.response_id


def test_a_multi_turn_chat_streams(mock_url):
    c = client(mock_url)
    chat = c.chats.create(model="gemini-2.5-flash")
    assert chat.send_message("first").text == "Hello from the mock! You said: first"
    chunks = list(chat.send_message_stream("second turn"))
    assert len(chunks) > 1, "streamed in pieces"
    assert "".join(c.text or "" for c in chunks) == "Hello from the mock! You said: second turn"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    # Usage is cumulative: each chunk's count is at least the one before.
    counts = [c.usage_metadata.candidates_token_count or 0 for c in chunks]
    assert counts == sorted(counts)


def test_thoughts_come_back_as_thought_parts_with_their_tokens(mock_url):
    c = client(mock_url)
    resp = c.models.generate_content(
        model="gemini-2.5-flash", contents="think",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024)))
    parts = resp.candidates[0].content.parts
    assert parts[0].thought is True
    assert resp.text == "Hello from the mock! You said: think"
    assert resp.usage_metadata.thoughts_token_count > 0


def test_parallel_function_calls_and_their_responses_with_thought_signatures(mock_url):
    c = client(mock_url)
    ask = types.Content(role="user", parts=[types.Part.from_text(text="[tools2] Paris")])
    resp = c.models.generate_content(model="gemini-3-pro-preview", contents=[ask],
                                     config=tool_config())
    calls = resp.function_calls
    assert [f.name for f in calls] == ["get_weather", "get_time"]
    assert calls[0].args == {"query": "[tools2] Paris"}
    model_turn = resp.candidates[0].content
    assert model_turn.parts[0].thought_signature, "Gemini 3 signs the turn's first call"
    answers = types.Content(role="user", parts=[
        types.Part.from_function_response(name=f.name, response={"output": f"{f.name} ok"})
        for f in calls])
    # The SDK's own history carries the signature back, as the real API requires.
    resp = c.models.generate_content(model="gemini-3-pro-preview",
                                     contents=[ask, model_turn, answers], config=tool_config())
    assert resp.text == "Hello from the mock! You said: get_weather ok get_time ok"
    # Without the signature, the turn is refused as Gemini 3 refuses it.
    unsigned = types.Content(role="model", parts=[
        types.Part(function_call=p.function_call) for p in model_turn.parts])
    with pytest.raises(errors.ClientError) as e:
        c.models.generate_content(model="gemini-3-pro-preview",
                                  contents=[ask, unsigned, answers], config=tool_config())
    assert e.value.code == 400 and "thought_signature" in e.value.message


def test_a_forced_call_streams_whole(mock_url):
    c = client(mock_url)
    chunks = list(c.models.generate_content_stream(
        model="gemini-2.5-flash", contents="anything",
        config=tool_config(tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode="ANY", allowed_function_names=["get_time"])))))
    calls = [f for c in chunks for f in (c.function_calls or [])]
    assert [(f.name, f.args) for f in calls] == [("get_time", {"query": "anything"})]


def test_errors_as_the_sdk_reads_them(mock_url):
    c = client(mock_url)
    with pytest.raises(errors.ClientError) as e:
        c.models.generate_content(model="mock-error-429", contents="x")
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"
    retry = [d for d in e.value.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry[0]["retryDelay"] == "7s"
    with pytest.raises(errors.ClientError) as e:
        c.models.generate_content(model="mock-error-404", contents="x")
    assert e.value.code == 404 and e.value.status == "NOT_FOUND"
    with pytest.raises(errors.ServerError) as e:
        c.models.generate_content(model="mock-error-503", contents="x")
    assert e.value.code == 503
    wrong = client(mock_url, key="AIza-wrong")
    with pytest.raises(errors.ClientError) as e:
        wrong.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert e.value.code == 400 and "API key not valid" in e.value.message


def test_a_blocked_prompt_and_a_safety_stop(mock_url):
    c = client(mock_url)
    resp = c.models.generate_content(model="mock-blocked-prompt", contents="x")
    assert resp.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert not resp.candidates
    resp = c.models.generate_content(model="mock-safety-stop", contents="x")
    assert resp.candidates[0].finish_reason == types.FinishReason.SAFETY


def test_embeddings_tokens_and_models(mock_url):
    c = client(mock_url)
    one = c.models.embed_content(model="gemini-embedding-001", contents="hello",
                                 config=types.EmbedContentConfig(output_dimensionality=16))
    assert len(one.embeddings) == 1 and len(one.embeddings[0].values) == 16
    many = c.models.embed_content(model="gemini-embedding-001", contents=["a", "b", "c"])
    assert len(many.embeddings) == 3
    assert many.embeddings[0].values != many.embeddings[1].values
    assert c.models.count_tokens(model="gemini-2.5-flash", contents="hello").total_tokens > 0
    names = [m.name for m in c.models.list(config={"page_size": 2})]
    assert "models/gemini-2.5-flash" in names and "models/gemini-embedding-001" in names
    assert c.models.get(model="gemini-2.5-pro").display_name == "Gemini 2.5 Pro"


@pytest.fixture(scope="module")
def gemini_gateway(mock_url, tmp_path_factory):
    # No OpenAI or Anthropic: Gemini alone, enabled by its two variables.
    gw = start_gateway(mock_url, tmp_path_factory.mktemp("gemini"), extra_env={
        "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "",
        "GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": mock_url,
    })
    yield gw
    assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()


def test_the_openai_sdk_lists_geminis_models_through_the_gateway(gemini_gateway):
    """With GEMINI_API_KEY alone, `/v1/models` lists what Gemini's `GET /v1beta/models` says,
    every page of it, by the names callers use."""
    c = openai.OpenAI(base_url=f"{gemini_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    ids = [m.id for m in c.models.list()]
    for name in ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview", "gemini-embedding-001"]:
        assert f"gemini/{name}" in ids, ids
    assert not any(i.startswith("gemini/models/") for i in ids), ids
    assert c.models.retrieve("gemini/gemini-2.5-pro").owned_by == "gemini"
    a = anthropic.Anthropic(base_url=gemini_gateway.url, api_key=MASTER_KEY, max_retries=0)
    assert "gemini/gemini-2.5-flash" in [m.id for m in a.models.list(limit=1000)]


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


def test_the_openai_sdk_reaches_gemini_with_tools_streamed_and_not(gemini_gateway):
    c = openai.OpenAI(base_url=f"{gemini_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    r = c.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert r.headers["x-portcullis-provider"] == "gemini"
    resp = r.parse()
    assert resp.choices[0].message.content == "Hello from the mock! You said: hi"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0

    messages = [{"role": "user", "content": "[tools2] Oslo"}]
    stream = c.chat.completions.create(model="gemini-3-pro-preview", messages=messages,
                                       tools=OPENAI_TOOLS, stream=True,
                                       stream_options={"include_usage": True})
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
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": v["id"], "type": "function",
         "function": {"name": v["name"], "arguments": v["arguments"]}} for v in calls.values()]})
    for v in calls.values():
        messages.append({"role": "tool", "tool_call_id": v["id"],
                         "content": json.dumps({v["name"]: "done"})})
    resp = c.chat.completions.create(model="gemini-3-pro-preview", messages=messages,
                                     tools=OPENAI_TOOLS)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content.startswith("Hello from the mock! You said:")

    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="gemini/mock-error-429",
                                  messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "7"


def test_the_anthropic_sdk_reaches_gemini_with_tools_streamed_and_not(gemini_gateway):
    c = anthropic.Anthropic(base_url=gemini_gateway.url, api_key=MASTER_KEY, max_retries=0)
    msg = c.messages.create(model="gemini-2.5-flash", max_tokens=100, system="Be brief.",
                            messages=[{"role": "user", "content": "[tool] Lima"}],
                            tools=ANTHROPIC_TOOLS)
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"query": "[tool] Lima"}
    with c.messages.stream(model="gemini-2.5-flash", max_tokens=100, tools=ANTHROPIC_TOOLS,
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
    with pytest.raises(anthropic.NotFoundError):
        c.messages.create(model="gemini/mock-error-404", max_tokens=10,
                          messages=[{"role": "user", "content": "x"}])

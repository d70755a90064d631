"""Vertex AI, end to end.

First the mock's Vertex AI against the official SDKs, unmodified: Anthropic's `AnthropicVertex`
and Google's `google-genai` (`vertexai=True`), both authenticated by `google-auth` service-account
credentials whose `token_uri` is the mock's token endpoint — so the grant google-auth signs is
the one the mock verifies (RS256 signature, audience, issuer, scope, lifetime) — and both sending
their requests with the access token the mock issued. Text, system prompts, streams, tools, and
errors as each SDK reads them; google-genai's `models.list()` (the publisher models, page by
page) and `embed_content` (`:predict`). If the SDKs authenticate, send, parse and stream, the
mock is a faithful stand-in for Vertex AI in the gateway's tests.

Then the gateway with no config file, Vertex AI enabled by `GOOGLE_APPLICATION_CREDENTIALS`,
`GOOGLE_CLOUD_PROJECT` and `GOOGLE_CLOUD_LOCATION` (and `GOOGLE_VERTEX_BASE_URL` pointing at the
mock), reached by the official `openai` and `anthropic` SDKs: text, streams, tools and results,
for a Claude model and a Gemini model; `models.list()` showing Vertex's models, and
embeddings.
"""

import json
import subprocess

import anthropic
import httpx
import openai
import pytest
from anthropic import AnthropicVertex
from google import genai
from google.genai import errors, types
from google.oauth2 import service_account

from conftest import MASTER_KEY, ROOT, _bin, start_gateway, stop_gateway

PROJECT = "mock-project"
LOCATION = "us-east5"
CLAUDE = "claude-sonnet-4-5@20250929"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
WEATHER_ANTHROPIC = {"name": "get_weather", "description": "Current weather in a city",
                     "input_schema": {"type": "object", "properties": {"query": {"type": "string"}},
                                      "required": ["query"]}}
WEATHER_OPENAI = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}


@pytest.fixture(scope="module")
def vertex_mock(tmp_path_factory):
    """A mock of its own, which writes its service account's key file."""
    key_file = tmp_path_factory.mktemp("vertex") / "service-account.json"
    proc = subprocess.Popen(
        [_bin("MOCK_UPSTREAM_BIN", "mock-upstream"), "--vertex-credentials-out", str(key_file)],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    yield line.split()[-1], key_file
    proc.terminate()
    proc.wait(timeout=10)


def credentials(key_file):
    return service_account.Credentials.from_service_account_file(str(key_file), scopes=SCOPES)


def claude_client(vertex_mock):
    url, key_file = vertex_mock
    return AnthropicVertex(region=LOCATION, project_id=PROJECT, base_url=f"{url}/v1",
                           credentials=credentials(key_file), max_retries=0)


def gemini_client(vertex_mock, creds=None):
    url, key_file = vertex_mock
    return genai.Client(
        vertexai=True, project=PROJECT, location=LOCATION,
        credentials=creds or credentials(key_file),
        http_options=types.HttpOptions(base_url=url, retry_options=types.HttpRetryOptions(attempts=1)))


def requests_to(url, prefix):
    data = httpx.get(f"{url}/mock/requests").json()["data"]
    return [r for r in data if r["path"].startswith(prefix)]


# The mock against the official SDKs.

def test_anthropic_vertex_authenticates_with_a_service_account_and_gets_messages(vertex_mock):
    c = claude_client(vertex_mock)
    msg = c.messages.create(model=CLAUDE, max_tokens=64, system="Be brief.",
                            messages=[{"role": "user", "content": "hello"}])
    assert msg.content[0].text == "Hello from the mock! You said: hello"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    url, _ = vertex_mock
    sent = requests_to(url, "/v1/projects/")[-1]
    assert sent["path"] == f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/{CLAUDE}:rawPredict"
    assert "model" not in sent["body"] and sent["body"]["anthropic_version"] == "vertex-2023-10-16"
    # google-auth asked the mock's token endpoint with the JWT-bearer grant.
    assert requests_to(url, "/token")


def test_anthropic_vertex_streams_and_calls_tools(vertex_mock):
    c = claude_client(vertex_mock)
    with c.messages.stream(model=CLAUDE, max_tokens=64,
                           messages=[{"role": "user", "content": "stream this"}]) as s:
        text = "".join(s.text_stream)
    assert text == "Hello from the mock! You said: stream this"
    msg = c.messages.create(model=CLAUDE, max_tokens=64, tools=[WEATHER_ANTHROPIC],
                            messages=[{"role": "user", "content": "[tool] Paris"}])
    assert msg.stop_reason == "tool_use"
    call = next(b for b in msg.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"query": "[tool] Paris"}
    done = c.messages.create(model=CLAUDE, max_tokens=64, tools=[WEATHER_ANTHROPIC], messages=[
        {"role": "user", "content": "[tool] Paris"},
        {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
    # The mock's Messages API answers a turn of tool results with a plain end of turn.
    assert done.stop_reason == "end_turn" and done.content[0].text.startswith("Hello from the mock!")


def test_anthropic_vertex_reads_the_mocks_errors(vertex_mock):
    url, _ = vertex_mock
    bad = AnthropicVertex(region=LOCATION, project_id=PROJECT, base_url=f"{url}/v1",
                          access_token="ya29.not-issued", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model=CLAUDE, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError):
        claude_client(vertex_mock).messages.create(
            model="claude-mock-error-429", max_tokens=8, messages=[{"role": "user", "content": "x"}])


def test_google_genai_on_vertex_generates_streams_and_calls_functions(vertex_mock):
    c = gemini_client(vertex_mock)
    resp = c.models.generate_content(
        model="gemini-2.5-flash", contents="hello",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=64))
    assert resp.text == "Hello from the mock! You said: hello"
    assert resp.usage_metadata.prompt_token_count > 0
    url, _ = vertex_mock
    sent = requests_to(url, "/v1")[-1]
    assert f"/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.5-flash:generateContent" in sent["path"]

    chunks = list(c.models.generate_content_stream(model="gemini-2.5-flash", contents="stream it"))
    assert len(chunks) > 1
    assert "".join(ch.text or "" for ch in chunks) == "Hello from the mock! You said: stream it"

    weather = types.FunctionDeclaration(
        name="get_weather", description="Current weather in a city",
        parameters_json_schema={"type": "object", "properties": {"query": {"type": "string"}}})
    resp = c.models.generate_content(
        model="gemini-2.5-flash", contents="[tool] Rome",
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[weather])],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))
    call = resp.function_calls[0]
    assert call.name == "get_weather" and call.args == {"query": "[tool] Rome"}


def test_google_genai_reads_the_mocks_errors_and_a_refused_key(vertex_mock, tmp_path):
    c = gemini_client(vertex_mock)
    with pytest.raises(errors.ClientError) as e:
        c.models.generate_content(model="mock-error-429", contents="x")
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"
    # A key the mock does not know: google-auth's grant is refused as Google refuses it.
    _, key_file = vertex_mock
    info = json.loads(key_file.read_text())
    info["private_key"] = (ROOT / "crates/test-support/keys/vertex-test-unknown-key.pem").read_text()
    creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    from google.auth import exceptions
    with pytest.raises(exceptions.RefreshError, match="Invalid JWT Signature"):
        gemini_client(vertex_mock, creds).models.generate_content(model="gemini-2.5-flash", contents="x")


def test_google_genai_on_vertex_lists_the_publisher_models_page_by_page(vertex_mock):
    url, _ = vertex_mock
    before = len(requests_to(url, "/v1beta1/publishers/"))
    client = gemini_client(vertex_mock)
    names = [m.name for m in client.models.list(config={"page_size": 3})]
    assert names[:2] == ["publishers/google/models/gemini-2.5-pro", "publishers/google/models/gemini-2.5-flash"]
    assert "publishers/google/models/text-embedding-005" in names and len(names) == 8
    sent = requests_to(url, "/v1beta1/publishers/")[before:]
    assert [r["path"] for r in sent] == ["/v1beta1/publishers/google/models"] * 3
    assert "pageToken=mock-page-3" in sent[1]["query"]


def test_google_genai_on_vertex_embeds_through_predict(vertex_mock):
    url, _ = vertex_mock
    c = gemini_client(vertex_mock)
    resp = c.models.embed_content(
        model="text-embedding-005", contents=["first text", "a second, longer text"],
        config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", output_dimensionality=64))
    assert [len(e.values) for e in resp.embeddings] == [64, 64]
    assert resp.embeddings[0].values != resp.embeddings[1].values
    assert resp.embeddings[0].statistics.token_count > 0
    assert resp.embeddings[1].statistics.token_count > resp.embeddings[0].statistics.token_count
    assert resp.metadata.billable_character_count == len("first text") + len("a second, longer text")
    sent = requests_to(url, "/v1")[-1]
    assert sent["path"].endswith("/publishers/google/models/text-embedding-005:predict")
    assert sent["body"]["instances"][0] == {"content": "first text", "task_type": "RETRIEVAL_DOCUMENT"}
    with pytest.raises(errors.ClientError) as e:
        c.models.embed_content(model="text-embedding-005", contents="x",
                               config=types.EmbedContentConfig(output_dimensionality=4096))
    assert e.value.code == 400 and e.value.status == "INVALID_ARGUMENT"


# The gateway, configured by the Google variables alone, reached by the openai and anthropic SDKs.

@pytest.fixture(scope="module")
def vertex_gateway(vertex_mock, tmp_path_factory):
    url, key_file = vertex_mock
    gw = start_gateway(url, tmp_path_factory.mktemp("gateway-vertex"), extra_env={
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "GOOGLE_CLOUD_LOCATION": LOCATION,
        "GOOGLE_VERTEX_BASE_URL": url,
    })
    yield gw
    assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()


@pytest.mark.parametrize("model", ["vertex/gemini-2.5-flash", f"vertex/{CLAUDE}"])
def test_the_openai_sdk_reaches_vertex_streamed_and_not_with_tools(vertex_gateway, model):
    c = openai.OpenAI(base_url=f"{vertex_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    r = c.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from the mock! You said: hi"
    assert r.usage.prompt_tokens > 0

    stream = c.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True},
                                       messages=[{"role": "user", "content": "streamed"}])
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello from the mock! You said: streamed"
    assert chunks[-1].usage.completion_tokens > 0

    r = c.chat.completions.create(model=model, tools=[WEATHER_OPENAI],
                                  messages=[{"role": "user", "content": "[tool] Oslo"}])
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"query": "[tool] Oslo"}
    r = c.chat.completions.create(model=model, tools=[WEATHER_OPENAI], messages=[
        {"role": "user", "content": "[tool] Oslo"},
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "snow"}])
    assert r.choices[0].finish_reason == "stop"
    # Gemini's mock answers with the function's response; Claude's with a plain end of turn.
    if "gemini" in model:
        assert r.choices[0].message.content == "Hello from the mock! You said: snow"


@pytest.mark.parametrize("model", ["vertex/gemini-2.5-flash", f"vertex/{CLAUDE}"])
def test_the_anthropic_sdk_reaches_vertex_streamed_and_not_with_tools(vertex_gateway, model):
    c = anthropic.Anthropic(base_url=vertex_gateway.url, api_key=MASTER_KEY, max_retries=0)
    msg = c.messages.create(model=model, max_tokens=64, system="Be brief.",
                            messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hello from the mock! You said: hi"
    with c.messages.stream(model=model, max_tokens=64,
                           messages=[{"role": "user", "content": "streamed"}]) as s:
        assert "".join(s.text_stream) == "Hello from the mock! You said: streamed"
        final = s.get_final_message()
    assert final.usage.output_tokens > 0

    with c.messages.stream(model=model, max_tokens=64, tools=[WEATHER_ANTHROPIC],
                           messages=[{"role": "user", "content": "[tool] Lima"}]) as s:
        msg = s.get_final_message()
    assert msg.stop_reason == "tool_use"
    call = next(b for b in msg.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"query": "[tool] Lima"}
    done = c.messages.create(model=model, max_tokens=64, tools=[WEATHER_ANTHROPIC], messages=[
        {"role": "user", "content": "[tool] Lima"},
        {"role": "assistant", "content": [b.model_dump() for b in msg.content if b.type == "tool_use"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "warm"}]}])
    assert done.stop_reason == "end_turn"
    if "gemini" in model:
        assert done.content[0].text == "Hello from the mock! You said: warm"


def test_the_gateway_asked_for_one_token_and_logged_vertex(vertex_gateway, vertex_mock):
    url, _ = vertex_mock
    c = openai.OpenAI(base_url=f"{vertex_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    before = len(requests_to(url, "/token"))
    raw = c.chat.completions.with_raw_response.create(
        model="vertex/gemini-2.5-flash", messages=[{"role": "user", "content": "log me"}])
    assert raw.headers["x-portcullis-provider"] == "vertex"
    # The gateway's token was fetched once and is kept: no grant for this request.
    assert len(requests_to(url, "/token")) == before
    rec = vertex_gateway.log_of(raw.headers["x-portcullis-request-id"])
    assert rec["provider"] == "vertex" and rec["status"] == 200


def test_the_openai_sdk_lists_the_vertex_models(vertex_gateway):
    c = openai.OpenAI(base_url=f"{vertex_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    ids = [m.id for m in c.models.list()]
    for model in ("vertex/gemini-2.5-pro", "vertex/gemini-2.5-flash", "vertex/gemini-2.5-flash-lite"):
        assert model in ids, ids
    assert "vertex/text-embedding-005" in ids and "vertex/gemini-embedding-001" in ids
    assert "vertex/imagen-4.0-generate-001" not in ids and "vertex/gemma3" not in ids
    # A listed name is one the gateway serves.
    r = c.chat.completions.create(model="vertex/gemini-2.5-flash-lite",
                                  messages=[{"role": "user", "content": "listed"}])
    assert r.choices[0].message.content == "Hello from the mock! You said: listed"


def test_the_openai_sdk_embeds_through_vertex(vertex_gateway, vertex_mock):
    url, _ = vertex_mock
    c = openai.OpenAI(base_url=f"{vertex_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    r = c.embeddings.with_raw_response.create(
        model="vertex/text-embedding-005", input=["one", "two texts"], dimensions=32)
    assert r.headers["x-portcullis-provider"] == "vertex"
    out = r.parse()
    assert [len(d.embedding) for d in out.data] == [32, 32] and [d.index for d in out.data] == [0, 1]
    assert out.usage.prompt_tokens > 0 and out.usage.total_tokens == out.usage.prompt_tokens
    sent = requests_to(url, "/v1/projects/")[-1]
    assert sent["path"].endswith("/publishers/google/models/text-embedding-005:predict")
    assert sent["body"] == {"instances": [{"content": "one"}, {"content": "two texts"}],
                            "parameters": {"outputDimensionality": 32}}
    # Gemini's embedding model on Vertex takes one text a request.
    one = c.embeddings.create(model="vertex/gemini-embedding-001", input="alone")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 3072


"""A fallback chain across three providers with wire formats of their own.

One route, `chain`, tries an Azure OpenAI deployment, then a Bedrock model, then a model on
Vertex AI, each a configured provider (`kind: azure | bedrock | vertex`) at the mock upstream,
which speaks each one's format and checks each one's authentication (the `api-key` header, a
SigV4 signature, a bearer token from the service-account grant). The first two fail in ways that
pass (a 503, then Bedrock's throttling), so the answer comes from the third, translated back into
the caller's dialect. The official `openai` and `anthropic` SDKs call the route, streaming and
not, and the request log says which targets were tried and with what outcome.
"""

import json
import subprocess

import anthropic
import httpx
import openai
import pytest

from conftest import MASTER_KEY, _bin, start_gateway, stop_gateway

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GEMINI = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    """A mock of its own, which writes the service account's key file Vertex AI is called with."""
    key_file = tmp_path_factory.mktemp("chain-mock") / "service-account.json"
    proc = subprocess.Popen(
        [_bin("MOCK_UPSTREAM_BIN", "mock-upstream"), "--vertex-credentials-out", str(key_file)],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    yield line.split()[-1], key_file
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway(mock, tmp_path_factory):
    url, key_file = mock
    workdir = tmp_path_factory.mktemp("chain")
    config = workdir / "portcullis.yaml"
    config.write_text(f"""
providers:
  azure:
    kind: azure
    base_url: {url}
    api_key: azure-mock-key
    api_version: "2024-10-21"
    deployments: {{gpt-4o: mock-error-503}}
  bedrock:
    kind: bedrock
    region: us-east-1
    access_key_id: {ACCESS_KEY}
    secret_access_key: {SECRET_KEY}
    base_url: {url}
  vertex:
    kind: vertex
    project: mock-project
    location: us-east5
    credentials: {key_file}
    base_url: {url}
routes:
  chain:
    targets: [azure/gpt-4o, bedrock/mock-error-429, vertex/{GEMINI}]
""")
    gw = start_gateway(url, workdir, extra_env={
        "PORTCULLIS_CONFIG": str(config), "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""})
    yield gw
    assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()


def sent_to(url):
    """The provider requests the mock received, oldest first, by path."""
    data = httpx.get(f"{url}/mock/requests").json()["data"]
    return [r["path"] for r in data]


def tried(record):
    """The targets a request tried, with each attempt's status, from its log record."""
    return [(a["target"], a["status"]) for a in json.loads(record["attempt_log"])]


CHAIN = [("azure/gpt-4o", 503), ("bedrock/mock-error-429", 429), (f"vertex/{GEMINI}", 200)]


def test_the_openai_sdk_is_answered_by_the_third_provider_of_the_chain(gateway, mock):
    url, _ = mock
    c = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    before = len(sent_to(url))
    r = c.chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "Say hello."}])
    answer = r.parse()
    assert r.headers["x-portcullis-provider"] == "vertex"
    assert r.headers["x-portcullis-model"] == GEMINI
    assert answer.choices[0].message.content
    assert answer.usage.prompt_tokens > 0
    paths = sent_to(url)[before:]
    # Each provider was called in its own format: a deployment, a Converse call, a Vertex
    # generateContent (after the service account's token grant).
    assert any(p.startswith("/openai/deployments/mock-error-503/chat/completions") for p in paths), paths
    assert "/model/mock-error-429/converse" in paths, paths
    assert any(p.endswith(f"/publishers/google/models/{GEMINI}:generateContent") for p in paths), paths
    record = gateway.log_of(r.headers["x-portcullis-request-id"])
    assert record["status"] == 200 and record["provider"] == "vertex"
    assert tried(record) == CHAIN
    assert record["cost_usd"] > 0


def test_the_openai_sdk_streams_from_the_third_provider(gateway):
    c = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    with c.chat.completions.with_streaming_response.create(
            model="chain", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Say hello."}]) as r:
        assert r.headers["x-portcullis-provider"] == "vertex"
        request_id = r.headers["x-portcullis-request-id"]
        chunks = list(r.parse())
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert tried(gateway.log_of(request_id)) == CHAIN


def test_the_anthropic_sdk_is_answered_through_the_chain_with_tools(gateway):
    c = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0)
    tool = {"name": "get_weather", "description": "Current weather in a city",
            "input_schema": {"type": "object", "properties": {"query": {"type": "string"}},
                             "required": ["query"]}}
    r = c.messages.with_raw_response.create(
        model="chain", max_tokens=64, tools=[tool],
        messages=[{"role": "user", "content": "What is the weather in Paris? [tool]"}])
    message = r.parse()
    assert r.headers["x-portcullis-provider"] == "vertex"
    assert message.stop_reason == "tool_use"
    call = next(b for b in message.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.id
    assert tried(gateway.log_of(r.headers["x-portcullis-request-id"])) == CHAIN

    with c.messages.stream(
            model="chain", max_tokens=64,
            messages=[{"role": "user", "content": "Say hello."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens > 0

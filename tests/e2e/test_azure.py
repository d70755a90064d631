"""Azure OpenAI, end to end.

First the mock's Azure OpenAI against OpenAI's official Python SDK, unmodified: `AzureOpenAI`
in the deployments form (`azure_endpoint` + `api_version`, with `azure_deployment` or the
deployment as the model) and `OpenAI` at the v1 form's `base_url=…/openai/v1/` (as Microsoft
documents it: `AzureOpenAI` would put `/deployments/…` after that URL), streaming and not, with
tools, content-filter annotations and stops, a refused prompt, errors as the SDK reads them,
embeddings. If the SDK sends it, parses it and streams it, the mock is a faithful stand-in for
Azure in the gateway's tests.

Then the gateway with no config file, Azure enabled by `AZURE_OPENAI_API_KEY`,
`AZURE_OPENAI_ENDPOINT` and `OPENAI_API_VERSION` alone, reached by the official `openai` and
`anthropic` SDKs: text, streams, tools and results, content filters in each dialect, and the
resource's models in `/v1/models`.
"""

import json
import time

import anthropic
import httpx
import openai
import pytest

from conftest import MASTER_KEY, start_gateway, stop_gateway

AZURE_KEY = "azure-mock-key"
VERSION = "2024-10-21"
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                    "required": ["query"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Time",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
]
ANTHROPIC_TOOLS = [
    {"name": "get_weather", "description": "Weather",
     "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
]


def azure(mock_url, **kw):
    return openai.AzureOpenAI(azure_endpoint=mock_url, api_key=kw.pop("api_key", AZURE_KEY),
                              api_version=kw.pop("api_version", VERSION), max_retries=0, **kw)


def v1(mock_url, key=AZURE_KEY):
    return openai.OpenAI(base_url=f"{mock_url}/openai/v1/", api_key=key, max_retries=0)


def collect(stream):
    """Text, tool calls, finish reason, usage and Azure's annotations of a chat stream."""
    text, calls, finish, usage, prompt_filters, choice_filters = "", {}, None, None, [], []
    for chunk in stream:
        extra = chunk.model_extra or {}
        prompt_filters += extra.get("prompt_filter_results") or []
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if (choice.model_extra or {}).get("content_filter_results"):
                choice_filters.append(choice.model_extra["content_filter_results"])
            finish = choice.finish_reason or finish
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += tc.id or ""
                call["name"] += (tc.function and tc.function.name) or ""
                call["arguments"] += (tc.function and tc.function.arguments) or ""
    return text, [calls[i] for i in sorted(calls)], finish, usage, prompt_filters, choice_filters


def test_the_deployments_form_with_azure_deployment_and_by_model(mock_url):
    c = azure(mock_url, azure_deployment="chat-prod")
    r = c.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "hi"}], max_tokens=50)
    assert r.http_request.url.path == "/openai/deployments/chat-prod/chat/completions"
    assert r.http_request.url.params["api-version"] == VERSION
    assert r.http_request.headers["api-key"] == AZURE_KEY
    assert r.headers["apim-request-id"]
    resp = r.parse()
    assert resp.choices[0].message.content == "Hello from the mock! You said: hi"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "gpt-4o-2024-11-20"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    # Azure's annotations, as extra fields the SDK keeps.
    prompt = resp.model_extra["prompt_filter_results"][0]
    assert prompt["prompt_index"] == 0
    assert prompt["content_filter_results"]["jailbreak"] == {"filtered": False, "detected": False}
    assert resp.choices[0].model_extra["content_filter_results"]["hate"]["severity"] == "safe"

    # Without azure_deployment the SDK puts the model (the deployment) in the URL.
    c = azure(mock_url)
    r = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert r.http_request.url.path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert r.parse().model == "gpt-4o-mini-2024-07-18"


def test_streams_start_with_the_prompt_annotations_and_carry_tool_calls(mock_url):
    c = azure(mock_url)
    stream = c.chat.completions.create(model="gpt-4o", stream=True,
                                       stream_options={"include_usage": True},
                                       messages=[{"role": "user", "content": "stream this"}])
    chunks = list(stream)
    assert chunks[0].choices == [] and chunks[0].model_extra["prompt_filter_results"]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello from the mock! You said: stream this"
    assert chunks[-1].usage.completion_tokens > 0

    messages = [{"role": "user", "content": "[tools2] Oslo"}]
    text, calls, finish, usage, prompt_filters, _ = collect(c.chat.completions.create(
        model="gpt-4o", messages=messages, tools=TOOLS, stream=True,
        stream_options={"include_usage": True}))
    assert finish == "tool_calls" and usage.completion_tokens > 0 and prompt_filters
    assert [x["name"] for x in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"query": "[tools2] Oslo"}
    resp = c.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS,
                                     tool_choice={"type": "function",
                                                  "function": {"name": "get_time"}})
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.choices[0].message.tool_calls[0].function.name == "get_time"


def test_the_v1_form_takes_the_deployment_as_the_model(mock_url):
    c = v1(mock_url)
    r = c.chat.completions.with_raw_response.create(
        model="chat-prod", messages=[{"role": "user", "content": "hello"}])
    assert r.http_request.url.path == "/openai/v1/chat/completions"
    assert r.http_request.headers["authorization"] == f"Bearer {AZURE_KEY}"
    assert r.parse().choices[0].message.content == "Hello from the mock! You said: hello"
    text, _, finish, _, prompt_filters, _ = collect(c.chat.completions.create(
        model="chat-prod", stream=True, messages=[{"role": "user", "content": "again"}]))
    assert text == "Hello from the mock! You said: again" and finish == "stop" and prompt_filters
    assert "gpt-4o-2024-11-20" in [m.id for m in c.models.list()]
    e = c.embeddings.create(model="embed-prod", input=["a", "b"])
    assert len(e.data) == 2 and e.data[1].index == 1 and len(e.data[0].embedding) == 8


def test_content_filters_as_the_sdk_reads_them(mock_url):
    c = azure(mock_url)
    resp = c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "[filter-answer violence]"}])
    choice = resp.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content is None
    assert choice.model_extra["content_filter_results"]["violence"] == {
        "filtered": True, "severity": "medium"}

    text, _, finish, _, _, filters = collect(c.chat.completions.create(
        model="gpt-4o", stream=True,
        messages=[{"role": "user", "content": "[filter-answer self_harm]"}]))
    assert finish == "content_filter"
    assert text == "Hello from "
    assert filters[-1]["self_harm"]["filtered"] is True

    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "[filter-prompt jailbreak]"}])
    assert e.value.code == "content_filter"
    assert e.value.param == "prompt"
    inner = e.value.body["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_result"]["jailbreak"] == {"filtered": True, "detected": True}


def test_errors_as_the_sdk_reads_them(mock_url):
    c = azure(mock_url)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="nowhere", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "DeploymentNotFound"
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="mock-error-429",
                                  messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "1"
    assert e.value.response.headers["retry-after-ms"] == "1000"
    with pytest.raises(openai.AuthenticationError):
        azure(mock_url, api_key="wrong").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="o3-mini", max_tokens=10,
                                  messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "unsupported_parameter"
    ok = c.chat.completions.create(model="o3-mini", max_completion_tokens=10,
                                   messages=[{"role": "user", "content": "x"}])
    assert ok.model == "o3-mini-2025-01-31"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="text-embedding-3-small",
                                  messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "OperationNotSupported"
    with pytest.raises(openai.BadRequestError):
        azure(mock_url, api_version="2024-02-01").chat.completions.create(
            model="gpt-4o", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "x"}])
    # What the SDK never sends: no api-version, or one Azure never published.
    url = f"{mock_url}/openai/deployments/gpt-4o/chat/completions"
    body = {"messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(url, json=body, headers={"api-key": AZURE_KEY})
    assert r.status_code == 404 and r.json()["error"]["message"] == "Resource not found"
    r = httpx.post(f"{url}?api-version=2031-01-01", json=body, headers={"api-key": AZURE_KEY})
    assert r.status_code == 400 and r.json()["error"]["message"] == "API version not supported"
    # The deployments form takes no key as a bearer token.
    r = httpx.post(f"{url}?api-version={VERSION}", json=body,
                   headers={"authorization": f"Bearer {AZURE_KEY}"})
    assert r.status_code == 401


def test_embeddings(mock_url):
    c = azure(mock_url)
    r = c.embeddings.create(model="text-embedding-3-small", input=["one", "two", "three"],
                            dimensions=4)
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(len(d.embedding) == 4 for d in r.data)
    assert r.usage.prompt_tokens > 0
    with pytest.raises(openai.BadRequestError) as e:
        c.embeddings.create(model="gpt-4o", input="x")
    assert e.value.code == "OperationNotSupported"


def test_the_model_list_as_the_sdk_reads_it(mock_url):
    # The deployments form's Models - List, versioned, with the resource's key.
    r = azure(mock_url).models.with_raw_response.list()
    assert r.http_request.url.path == "/openai/models"
    assert r.http_request.url.params["api-version"] == VERSION
    assert r.http_request.headers["api-key"] == AZURE_KEY
    models = {m.id: m.model_extra for m in r.parse()}
    assert {"gpt-4o", "text-embedding-3-small", "dall-e-3", "gpt-35-turbo-0613"} <= set(models)
    assert models["gpt-4o"]["capabilities"]["chat_completion"] is True
    assert models["text-embedding-3-small"]["capabilities"]["embeddings"] is True
    assert not models["dall-e-3"]["capabilities"]["chat_completion"]
    assert models["gpt-35-turbo-0613"]["lifecycle_status"] == "deprecated"
    assert models["gpt-35-turbo-0613"]["deprecation"]["inference"] < time.time()
    assert models["gpt-4o"]["deprecation"]["inference"] > time.time()
    # The v1 form's, the same catalogue.
    assert {m.id for m in v1(mock_url).models.list()} == set(models)
    with pytest.raises(openai.AuthenticationError):
        azure(mock_url, api_key="wrong").models.list()
    with pytest.raises(openai.BadRequestError):
        azure(mock_url, api_version="2023-01-01").models.list()


# The mock's Entra ID application (test-support's defaults).
TENANT = "00000000-0000-4000-8000-00000000a2e1"
CLIENT_ID = "11111111-1111-4111-8111-1111111111c1"
CLIENT_SECRET = "mock~entra~secret"
SCOPE = "https://cognitiveservices.azure.com/.default"


def entra_token(mock_url, **form):
    data = {"grant_type": "client_credentials", "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "scope": SCOPE, **form}
    return httpx.post(f"{mock_url}/{TENANT}/oauth2/v2.0/token", data=data)


def test_entra_id_tokens_as_the_sdk_sends_them(mock_url):
    r = entra_token(mock_url)
    assert r.status_code == 200, r.text
    token = r.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3599
    c = openai.AzureOpenAI(azure_endpoint=mock_url, api_version=VERSION, max_retries=0,
                           azure_ad_token_provider=lambda: token["access_token"])
    r = c.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "token"}])
    assert r.http_request.headers["authorization"] == f"Bearer {token['access_token']}"
    assert r.parse().choices[0].message.content == "Hello from the mock! You said: token"
    with pytest.raises(openai.AuthenticationError):
        openai.AzureOpenAI(azure_endpoint=mock_url, api_version=VERSION, max_retries=0,
                           azure_ad_token="never-issued").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    # Entra's refusals, as it words them.
    r = entra_token(mock_url, client_secret="wrong")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.json()["error_codes"] == [7000215]
    r = entra_token(mock_url, scope="https://cognitiveservices.azure.com")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


@pytest.fixture(scope="module")
def azure_gateway(mock_url, tmp_path_factory):
    # No OpenAI or Anthropic: Azure alone, enabled by its three variables.
    gw = start_gateway(mock_url, tmp_path_factory.mktemp("azure"), extra_env={
        "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "",
        "AZURE_OPENAI_API_KEY": AZURE_KEY, "AZURE_OPENAI_ENDPOINT": mock_url,
        "OPENAI_API_VERSION": VERSION,
    })
    yield gw
    assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()


def last_azure_request(mock_url):
    data = httpx.get(f"{mock_url}/mock/requests").json()["data"]
    return next(r for r in reversed(data) if r["path"].startswith("/openai/"))


def test_the_openai_sdk_reaches_azure_through_the_gateway(azure_gateway, mock_url):
    c = openai.OpenAI(base_url=f"{azure_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    # With no OpenAI provider, OpenAI's names reach Azure's deployments of the same name.
    r = c.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert r.headers["x-portcullis-provider"] == "azure"
    resp = r.parse()
    assert resp.choices[0].message.content == "Hello from the mock! You said: hi"
    assert resp.model_extra["prompt_filter_results"], "Azure's fields reach OpenAI callers"
    sent = last_azure_request(mock_url)
    assert sent["path"] == "/openai/deployments/gpt-4o/chat/completions"
    assert sent["query"] == f"api-version={VERSION}"
    assert azure_gateway.log_of(r.headers["x-portcullis-request-id"])["cost_usd"] > 0

    messages = [{"role": "user", "content": "[tools2] Oslo"}]
    _, calls, finish, usage, _, _ = collect(c.chat.completions.create(
        model="azure/gpt-4o", messages=messages, tools=TOOLS, stream=True,
        stream_options={"include_usage": True}))
    assert finish == "tool_calls" and usage.completion_tokens > 0
    assert [x["name"] for x in calls] == ["get_weather", "get_time"]
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": v["id"], "type": "function",
         "function": {"name": v["name"], "arguments": v["arguments"]}} for v in calls]})
    for v in calls:
        messages.append({"role": "tool", "tool_call_id": v["id"], "content": "done"})
    resp = c.chat.completions.create(model="azure/gpt-4o", messages=messages)
    assert resp.choices[0].finish_reason == "stop"

    resp = c.chat.completions.create(
        model="azure/gpt-4o", messages=[{"role": "user", "content": "[filter-answer hate]"}])
    assert resp.choices[0].finish_reason == "content_filter"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(
            model="azure/gpt-4o", messages=[{"role": "user", "content": "[filter-prompt sexual]"}])
    assert e.value.code == "content_filter" and "sexual: medium" in e.value.message
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="azure/mock-error-429",
                                  messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "1"
    emb = c.embeddings.create(model="azure/text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2


def test_the_anthropic_sdk_reaches_azure_through_the_gateway(azure_gateway):
    c = anthropic.Anthropic(base_url=azure_gateway.url, api_key=MASTER_KEY, max_retries=0)
    msg = c.messages.create(model="azure/gpt-4o", max_tokens=100, system="Be brief.",
                            messages=[{"role": "user", "content": "Lima"}], tools=ANTHROPIC_TOOLS,
                            tool_choice={"type": "tool", "name": "get_weather"})
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"query": "Lima"}
    with c.messages.stream(model="azure/gpt-4o", max_tokens=100, tools=ANTHROPIC_TOOLS,
                           messages=[
                               {"role": "user", "content": "Lima"},
                               {"role": "assistant", "content": msg.content},
                               {"role": "user", "content": [{"type": "tool_result",
                                                             "tool_use_id": use.id,
                                                             "content": "sunny"}]},
                           ]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the mock! You said: Lima"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0

    # The content filter: a refusal naming the category, streamed and not.
    msg = c.messages.create(model="azure/gpt-4o", max_tokens=50,
                            messages=[{"role": "user", "content": "[filter-answer violence]"}])
    assert msg.stop_reason == "refusal"
    assert "violence: medium" in msg.content[-1].text
    with c.messages.stream(model="azure/gpt-4o", max_tokens=50, messages=[
            {"role": "user", "content": "[filter-answer violence]"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason == "refusal" and "content filter" in text
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="azure/gpt-4o", max_tokens=10,
                          messages=[{"role": "user", "content": "[filter-prompt violence]"}])
    assert "violence: medium" in e.value.message
    with pytest.raises(anthropic.NotFoundError):
        c.messages.create(model="azure/nowhere", max_tokens=10,
                          messages=[{"role": "user", "content": "x"}])


def test_without_a_version_the_gateway_takes_the_v1_form(mock_url, tmp_path_factory):
    gw = start_gateway(mock_url, tmp_path_factory.mktemp("azure-v1"), extra_env={
        "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "",
        "AZURE_OPENAI_API_KEY": AZURE_KEY, "AZURE_OPENAI_ENDPOINT": f"{mock_url}/",
    })
    try:
        c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=MASTER_KEY, max_retries=0)
        text, _, finish, _, _, _ = collect(c.chat.completions.create(
            model="azure/chat-prod", stream=True, messages=[{"role": "user", "content": "v1"}]))
        assert text == "Hello from the mock! You said: v1" and finish == "stop"
        sent = last_azure_request(mock_url)
        assert sent["path"] == "/openai/v1/chat/completions"
        assert sent["body"]["model"] == "chat-prod"
    finally:
        assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()


def test_the_openai_sdk_lists_azures_models_through_the_gateway(azure_gateway):
    c = openai.OpenAI(base_url=f"{azure_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
    ids = [m.id for m in c.models.list()]
    # The resource's models that chat or embed; not the retired, completions-only or image ones.
    for listed in ["azure/gpt-4o", "azure/gpt-4o-mini", "azure/o3-mini",
                   "azure/text-embedding-3-small", "azure/gpt-4o-2024-11-20"]:
        assert listed in ids, ids
    for hidden in ["azure/gpt-35-turbo-0613", "azure/davinci-002", "azure/dall-e-3"]:
        assert hidden not in ids, ids
    # A listed model deployed under its name answers; one deployed under no name is Azure's 404.
    resp = c.chat.completions.create(model="azure/gpt-4o-mini",
                                     messages=[{"role": "user", "content": "listed"}])
    assert resp.choices[0].message.content == "Hello from the mock! You said: listed"
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="azure/gpt-4o-2024-11-20",
                                  messages=[{"role": "user", "content": "x"}])


def test_without_a_key_an_entra_id_application_is_used(mock_url, tmp_path_factory):
    # The variables Azure's own SDKs read for a service principal; the authority is the mock.
    gw = start_gateway(mock_url, tmp_path_factory.mktemp("azure-entra"), extra_env={
        "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "", "AZURE_OPENAI_API_KEY": "",
        "AZURE_OPENAI_ENDPOINT": mock_url, "OPENAI_API_VERSION": VERSION,
        "AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_CLIENT_SECRET": CLIENT_SECRET, "AZURE_AUTHORITY_HOST": mock_url,
    })
    try:
        c = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
        with c.messages.stream(model="azure/gpt-4o", max_tokens=50,
                               messages=[{"role": "user", "content": "entra"}]) as stream:
            text = "".join(stream.text_stream)
        assert text == "Hello from the mock! You said: entra"
        data = httpx.get(f"{mock_url}/mock/requests").json()["data"]
        assert any(r["path"] == f"/{TENANT}/oauth2/v2.0/token" for r in data)
    finally:
        assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()

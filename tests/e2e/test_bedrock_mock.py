"""The mock's Amazon Bedrock Runtime against the official `boto3` `bedrock-runtime` client,
unmodified, pointed at it with `endpoint_url`: Converse and ConverseStream (text, system prompt,
tools and tool results, usage, stop reasons), InvokeModel for the embedding models (Titan's
and Cohere's own bodies), errors as botocore parses them (throttling,
validation, a mid-stream exception) and the SigV4 check (a wrong secret, an unknown key, a
session token); and the control plane's ListFoundationModels with boto3's `bedrock` client. This is what makes the mock a faithful stand-in for Bedrock in the gateway's own
tests: if botocore signs it, parses it and decodes its event stream, so does AWS's service."""

import json
import subprocess

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from conftest import _bin

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
MODEL = "anthropic.claude-3-5-sonnet-20241022-v2:0"
TOOLS = {"tools": [{"toolSpec": {
    "name": "get_weather",
    "description": "Current weather for a city",
    "inputSchema": {"json": {"type": "object", "properties": {"query": {"type": "string"}},
                             "required": ["query"]}},
}}]}


@pytest.fixture(autouse=True)
def _sigv4_only(monkeypatch):
    # A Bedrock API key in the environment would make botocore send it instead of signing.
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)


def bedrock(url, secret=SECRET_KEY, access_key=ACCESS_KEY, token=None, region="us-east-1"):
    return boto3.client(
        "bedrock-runtime", region_name=region, endpoint_url=url,
        aws_access_key_id=access_key, aws_secret_access_key=secret, aws_session_token=token,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def user(text):
    return {"role": "user", "content": [{"text": text}]}


def test_converse_answers_with_text_usage_and_metrics(mock_url):
    resp = bedrock(mock_url).converse(
        modelId=MODEL, system=[{"text": "Be brief."}], messages=[user("hello")],
        inferenceConfig={"maxTokens": 128, "temperature": 0.5})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["ResponseMetadata"]["RequestId"]
    assert resp["output"]["message"] == {
        "role": "assistant", "content": [{"text": "Hello from the mock! You said: hello"}]}
    assert resp["stopReason"] == "end_turn"
    usage = resp["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert resp["metrics"]["latencyMs"] >= 0
    # The SDK sent the model id percent-encoded in the path, as Bedrock receives it.
    sent = httpx.get(f"{mock_url}/mock/requests").json()["data"][-1]
    assert sent["path"] == "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    assert sent["body"]["system"] == [{"text": "Be brief."}]
    assert "modelId" not in sent["body"]


def test_converse_with_tools_calls_one_and_reads_its_result(mock_url):
    client = bedrock(mock_url)
    first = client.converse(modelId=MODEL, messages=[user("[tool] weather in Paris?")], toolConfig=TOOLS)
    assert first["stopReason"] == "tool_use"
    (block,) = first["output"]["message"]["content"]
    call = block["toolUse"]
    assert call["name"] == "get_weather"
    assert call["input"] == {"query": "[tool] weather in Paris?"}
    assert call["toolUseId"]

    result = {"role": "user", "content": [{"toolResult": {
        "toolUseId": call["toolUseId"], "content": [{"json": {"temp_c": 21}}], "status": "success"}}]}
    second = client.converse(
        modelId=MODEL, messages=[user("[tool] weather in Paris?"), first["output"]["message"], result],
        toolConfig={**TOOLS, "toolChoice": {"auto": {}}})
    assert second["stopReason"] == "end_turn"
    assert second["output"]["message"]["content"][0]["text"].startswith("Hello from the mock!")

    # Bedrock's own checks: tool blocks need toolConfig, a call needs its result.
    with pytest.raises(ClientError) as e:
        client.converse(modelId=MODEL, messages=[user("x"), first["output"]["message"], result])
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "toolConfig field must be defined" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        client.converse(modelId=MODEL, messages=[user("x"), first["output"]["message"], user("and?")],
                        toolConfig=TOOLS)
    assert e.value.response["Error"]["Message"] == (
        f"Expected toolResult blocks at messages.2.content for the following Ids: {call['toolUseId']}")


def test_converse_stream_text_events_in_bedrock_order(mock_url):
    resp = bedrock(mock_url).converse_stream(modelId=MODEL, messages=[user("hello there")])
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    events = list(resp["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(kinds[1:-3]) == {"contentBlockDelta"}
    # The padding member Bedrock adds to each event is not part of the model: the SDK drops it.
    assert events[0] == {"messageStart": {"role": "assistant"}}
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "Hello from the mock! You said: hello there"
    assert all(e["contentBlockDelta"]["contentBlockIndex"] == 0 for e in events if "contentBlockDelta" in e)
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    usage = events[-1]["metadata"]["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] > 0
    assert "latencyMs" in events[-1]["metadata"]["metrics"]


def test_converse_stream_tool_use_streams_its_input(mock_url):
    resp = bedrock(mock_url).converse_stream(
        modelId=MODEL, messages=[user("[tools2] two lookups")],
        toolConfig={"tools": TOOLS["tools"] + [{"toolSpec": {
            "name": "get_time", "inputSchema": {"json": {"type": "object"}}}}]})
    events = list(resp["stream"])
    starts = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert [s["start"]["toolUse"]["name"] for s in starts] == ["get_weather", "get_time"]
    assert [s["contentBlockIndex"] for s in starts] == [0, 1]
    for s in starts:
        i = s["contentBlockIndex"]
        fragments = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                     if "contentBlockDelta" in e and e["contentBlockDelta"]["contentBlockIndex"] == i]
        assert len(fragments) > 1
        assert json.loads("".join(fragments))["query"] == "[tools2] two lookups"
    assert {"contentBlockStop": {"contentBlockIndex": 1}} in events
    assert {"messageStop": {"stopReason": "tool_use"}} in events


def test_a_midstream_exception_reaches_the_sdk(mock_url):
    resp = bedrock(mock_url).converse_stream(modelId="mock-error-midstream", messages=[user("x")])
    seen = []
    with pytest.raises(EventStreamError) as e:
        for event in resp["stream"]:
            seen.append(event)
    assert e.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert seen[0] == {"messageStart": {"role": "assistant"}}


@pytest.mark.parametrize("streamed", [False, True])
def test_throttling_is_a_429_throttling_exception(mock_url, streamed):
    client = bedrock(mock_url)
    call = client.converse_stream if streamed else client.converse
    with pytest.raises(ClientError) as e:
        call(modelId="mock-error-429", messages=[user("x")])
    err = e.value.response
    assert err["Error"]["Code"] == "ThrottlingException"
    assert err["Error"]["Message"] == "Too many requests, please wait before trying again."
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_a_conversation_must_start_with_the_user(mock_url):
    with pytest.raises(ClientError) as e:
        bedrock(mock_url).converse(modelId=MODEL, messages=[{"role": "assistant", "content": [{"text": "hi"}]}])
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["Error"]["Message"].startswith("A conversation must start with a user message.")


def test_a_wrong_secret_gets_the_signature_error(mock_url):
    for call in ("converse", "converse_stream"):
        with pytest.raises(ClientError) as e:
            getattr(bedrock(mock_url, secret="not-the-secret"), call)(modelId=MODEL, messages=[user("x")])
        err = e.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert err["Error"]["Code"] == "InvalidSignatureException"
        assert err["Error"]["Message"].startswith(
            "The request signature we calculated does not match the signature you provided.")
        assert err["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"].startswith("InvalidSignatureException:")


def test_an_unknown_key_or_a_token_of_none_is_unrecognized(mock_url):
    for client in (bedrock(mock_url, access_key="AKIAOTHERKEY0000000"),
                   bedrock(mock_url, token="FwoGZXIvYXdzEXAMPLE")):
        with pytest.raises(ClientError) as e:
            client.converse(modelId=MODEL, messages=[user("x")])
        assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_temporary_credentials_in_another_region():
    proc = subprocess.Popen(
        [_bin("MOCK_UPSTREAM_BIN", "mock-upstream"), "--aws-access-key-id", "ASIAMOCKTEMPORARY00",
         "--aws-secret-access-key", "temporary/secret", "--aws-session-token", "FwoGZXIvYXdzEXAMPLE//token=",
         "--aws-region", "eu-west-3"],
        stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on "), line
        url = line.split()[-1]
        temporary = dict(access_key="ASIAMOCKTEMPORARY00", secret="temporary/secret",
                         token="FwoGZXIvYXdzEXAMPLE//token=")
        resp = bedrock(url, region="eu-west-3", **temporary).converse(modelId=MODEL, messages=[user("hi")])
        assert resp["stopReason"] == "end_turn"
        with pytest.raises(ClientError) as e:
            bedrock(url, region="eu-west-3", **{**temporary, "token": "another"}).converse(
                modelId=MODEL, messages=[user("hi")])
        assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
        with pytest.raises(ClientError) as e:
            bedrock(url, region="us-east-1", **temporary).converse(modelId=MODEL, messages=[user("hi")])
        assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert "region" in e.value.response["Error"]["Message"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def invoke(client, model, body):
    resp = client.invoke_model(modelId=model, body=json.dumps(body),
                               contentType="application/json", accept="application/json")
    return resp, json.loads(resp["body"].read())


def test_invoke_model_embeds_with_titan(mock_url):
    client = bedrock(mock_url)
    resp, answer = invoke(client, "amazon.titan-embed-text-v2:0",
                          {"inputText": "hello world", "dimensions": 256, "normalize": True})
    assert len(answer["embedding"]) == 256
    assert answer["inputTextTokenCount"] > 0
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-input-token-count"]) == answer["inputTextTokenCount"]
    sent = httpx.get(f"{mock_url}/mock/requests").json()["data"][-1]
    assert sent["path"] == "/model/amazon.titan-embed-text-v2%3A0/invoke"

    _, v1 = invoke(client, "amazon.titan-embed-text-v1", {"inputText": "hello"})
    assert len(v1["embedding"]) == 1536
    _, by_type = invoke(client, "amazon.titan-embed-text-v2:0",
                        {"inputText": "hello", "embeddingTypes": ["float"]})
    assert by_type["embeddingsByType"]["float"] == by_type["embedding"]
    # Titan v1 takes nothing but the text, as Bedrock says when it refuses.
    with pytest.raises(ClientError) as e:
        invoke(client, "amazon.titan-embed-text-v1", {"inputText": "hello", "dimensions": 256})
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "extraneous key [dimensions] is not permitted" in e.value.response["Error"]["Message"]


def test_invoke_model_embeds_several_texts_with_cohere(mock_url):
    client = bedrock(mock_url)
    _, answer = invoke(client, "cohere.embed-english-v3",
                       {"texts": ["a", "b", "c"], "input_type": "search_document"})
    assert answer["response_type"] == "embeddings_floats"
    assert [len(v) for v in answer["embeddings"]] == [1024] * 3
    assert answer["texts"] == ["a", "b", "c"] and answer["id"]
    _, typed = invoke(client, "cohere.embed-v4:0",
                      {"texts": ["a"], "input_type": "search_query", "embedding_types": ["float"],
                       "output_dimension": 256})
    assert typed["response_type"] == "embeddings_by_type"
    assert len(typed["embeddings"]["float"][0]) == 256
    with pytest.raises(ClientError) as e:
        invoke(client, "cohere.embed-english-v3", {"texts": ["a"]})
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "input_type" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        invoke(client, "mock-error-429", {"texts": ["a"], "input_type": "search_query"})
    assert e.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(ClientError) as e:
        invoke(bedrock(mock_url, secret="wrong"), "cohere.embed-english-v3",
               {"texts": ["a"], "input_type": "search_query"})
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"


def control_plane(url, secret=SECRET_KEY, region="us-east-1"):
    return boto3.client(
        "bedrock", region_name=region, endpoint_url=url,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def test_list_foundation_models_as_the_bedrock_client_reads_them(mock_url):
    resp = control_plane(mock_url).list_foundation_models()
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    models = {m["modelId"]: m for m in resp["modelSummaries"]}
    nova = models["amazon.nova-lite-v1:0"]
    assert nova["modelArn"] == "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0"
    assert nova["modelName"] == "Nova Lite" and nova["providerName"] == "Amazon"
    assert nova["outputModalities"] == ["TEXT"]
    assert nova["inferenceTypesSupported"] == ["ON_DEMAND", "PROVISIONED"]
    assert nova["responseStreamingSupported"] is True
    assert nova["modelLifecycle"] == {"status": "ACTIVE"}
    assert models["amazon.titan-embed-text-v2:0"]["outputModalities"] == ["EMBEDDING"]
    assert models["anthropic.claude-sonnet-4-5-20250929-v1:0"]["inferenceTypesSupported"] == ["INFERENCE_PROFILE"]
    sent = httpx.get(f"{mock_url}/mock/requests").json()["data"][-1]
    assert sent["method"] == "GET" and sent["path"] == "/foundation-models"

    # The filters narrow the list as Bedrock's do.
    text = control_plane(mock_url).list_foundation_models(byOutputModality="TEXT", byInferenceType="ON_DEMAND")
    ids = {m["modelId"] for m in text["modelSummaries"]}
    assert "amazon.nova-pro-v1:0" in ids and "meta.llama3-8b-instruct-v1:0" in ids
    assert not ids & {"amazon.titan-embed-text-v2:0", "anthropic.claude-sonnet-4-5-20250929-v1:0",
                      "stability.sd3-5-large-v1:0"}
    anthropic = control_plane(mock_url).list_foundation_models(byProvider="anthropic")
    assert {m["providerName"] for m in anthropic["modelSummaries"]} == {"Anthropic"}


def test_list_foundation_models_checks_the_signature(mock_url):
    with pytest.raises(ClientError) as e:
        control_plane(mock_url, secret="not-the-secret").list_foundation_models()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

"""The Responses API, end to end, with the official `openai` SDK's `client.responses`.

First the mock's Responses API against the SDK pointed straight at it: text, instructions, the
stream's typed events, function calls and their outputs, `previous_response_id`, retrieve and
delete, errors as the SDK raises them. If the SDK sends it, parses it and streams it, the mock
is a faithful stand-in for OpenAI's `/v1/responses`, which the gateway uses as an upstream for
the models served only there (`o3-pro`).

Then the gateway with no config file (OpenAI and Anthropic from their environment variables):
`client.responses.create` to an OpenAI-compatible upstream (Chat Completions behind), to
Anthropic, and to `o3-pro` (the Responses API behind), streamed and not, with tools, and
conversations continued by `previous_response_id`, usage and cost in the request log.
"""

import json

import httpx
import openai
import pytest

from conftest import MASTER_KEY, OPENAI_KEY

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                   "required": ["query"], "additionalProperties": False},
    "strict": True,
}


def mock_client(mock_url, key=OPENAI_KEY):
    return openai.OpenAI(base_url=f"{mock_url}/v1", api_key=key, max_retries=0)


def gateway_client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)


def events_of(stream):
    events = list(stream)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


def collapsed(events):
    """Event types in order, runs of deltas counted once."""
    out = []
    for e in events:
        if e.type.endswith(".delta") and out and out[-1] == e.type:
            continue
        out.append(e.type)
    return out


TEXT_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added",
    "response.content_part.added", "response.output_text.delta", "response.output_text.done",
    "response.content_part.done", "response.output_item.done", "response.completed",
]
CALL_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.output_item.done", "response.completed",
]


# --- The mock, proved by the SDK -------------------------------------------------------------

def test_the_mock_answers_responses_create(mock_url):
    c = mock_client(mock_url)
    r = c.responses.create(model="o3-pro", input="hello", instructions="Be brief.",
                           max_output_tokens=200, metadata={"k": "v"})
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status == "completed"
    assert r.output_text == "Hello from the mock! You said: hello"
    assert r.instructions == "Be brief." and r.metadata == {"k": "v"}
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert c.responses.retrieve(r.id).output_text == r.output_text
    cut = c.responses.create(model="o3-pro", input="a long question to answer", max_output_tokens=3)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"


def test_the_mock_streams_typed_events(mock_url):
    c = mock_client(mock_url)
    events = events_of(c.responses.create(model="o3-pro", input="stream me", stream=True))
    assert collapsed(events) == TEXT_EVENTS
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
        "Hello from the mock! You said: stream me"
    with c.responses.stream(model="o3-pro", input="helper") as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert text == final.output_text == "Hello from the mock! You said: helper"


def test_the_mock_calls_functions_and_continues_conversations(mock_url):
    c = mock_client(mock_url)
    r = c.responses.create(model="o3-pro", input="[tool] Paris", tools=[WEATHER])
    call = r.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"query": "[tool] Paris"}
    done = c.responses.create(model="o3-pro", previous_response_id=r.id, tools=[WEATHER], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert done.output_text == "Hello from the mock! You said: sunny"
    events = events_of(c.responses.create(model="o3-pro", input="[tool] Rome", tools=[WEATHER],
                                          stream=True))
    assert collapsed(events) == CALL_EVENTS
    with pytest.raises(openai.BadRequestError):
        c.responses.create(model="o3-pro", input=[
            {"type": "function_call_output", "call_id": "call_nowhere", "output": "x"}])
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="o3-pro", input="x", previous_response_id="resp_missing")
    c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    with pytest.raises(openai.AuthenticationError):
        mock_client(mock_url, key="sk-wrong").responses.create(model="o3-pro", input="x")


# --- Through the gateway ---------------------------------------------------------------------

@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-5", "o3-pro"])
def test_text_and_streams_through_the_gateway(gateway, model):
    c = gateway_client(gateway)
    raw = c.responses.with_raw_response.create(model=model, input="hi", instructions="Be kind.")
    r = raw.parse()
    assert r.id.startswith("resp_") and r.status == "completed"
    assert r.output_text == "Hello from the mock! You said: hi"
    assert r.instructions == "Be kind."
    log = gateway.log_of(raw.headers["x-portcullis-request-id"])
    assert log["endpoint"] == "responses"
    assert log["input_tokens"] == r.usage.input_tokens
    assert log["output_tokens"] == r.usage.output_tokens
    assert log["cost_usd"] > 0

    events = events_of(c.responses.create(model=model, input="hello", stream=True))
    assert collapsed(events) == TEXT_EVENTS
    final = events[-1].response
    assert final.output_text == "Hello from the mock! You said: hello"
    assert final.usage.output_tokens > 0
    assert c.responses.retrieve(final.id).output_text == final.output_text


def last_upstream_body(mock_url):
    """The body of the last request the mock received."""
    return httpx.get(f"{mock_url}/mock/requests").json()["data"][-1]["body"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-5", "o3-pro"])
def test_tools_through_the_gateway_streamed_and_continued(gateway, mock_url, model):
    c = gateway_client(gateway)
    events = events_of(c.responses.create(model=model, input="[tool] Oslo", tools=[WEATHER],
                                          stream=True))
    assert collapsed(events) == CALL_EVENTS
    first = events[-1].response
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"query": "[tool] Oslo"}
    # Only the call's output is sent: the gateway keeps the conversation.
    second = c.responses.create(model=model, previous_response_id=first.id,
                                input=[{"type": "function_call_output", "call_id": call.call_id,
                                        "output": "snow, -3°C"}])
    assert second.status == "completed" and second.output[0].type == "message"
    assert second.output_text.startswith("Hello from the mock! You said: ")
    assert second.previous_response_id == first.id
    # The upstream got the whole conversation: the question, the call and its output.
    sent = json.dumps(last_upstream_body(mock_url), ensure_ascii=False)
    assert "[tool] Oslo" in sent and call.call_id in sent and "snow, -3°C" in sent
    third = c.responses.create(model=model, previous_response_id=second.id, input="thanks")
    assert third.output_text == "Hello from the mock! You said: thanks"


def test_a_conversation_moves_between_providers_and_is_deleted(gateway):
    c = gateway_client(gateway)
    first = c.responses.create(model="claude-sonnet-4-5", input="My name is Ada.")
    second = c.responses.create(model="gpt-4o-mini", previous_response_id=first.id,
                                input="What is my name?")
    assert second.output_text == "Hello from the mock! You said: What is my name?"
    assert c.responses.delete(first.id) is None
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="gpt-4o-mini", previous_response_id=first.id, input="again")
    unkept = c.responses.create(model="gpt-4o-mini", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(unkept.id)


def test_the_sdk_lists_a_responses_input_items_page_by_page(gateway):
    c = gateway_client(gateway)
    r = c.responses.create(model="gpt-4o-mini", input=[
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
        {"role": "user", "content": "three"},
    ])
    # The SDK's auto-pagination follows `after` = the page's last id.
    items = list(c.responses.input_items.list(r.id, order="asc", limit=2))
    assert [i.type for i in items] == ["message"] * 3
    assert [i.content[0].text for i in items] == ["one", "two", "three"]
    assert len({i.id for i in items}) == 3
    newest = c.responses.input_items.list(r.id, limit=1)
    assert [i.content[0].text for i in newest.data] == ["three"] and newest.has_more
    with pytest.raises(openai.NotFoundError):
        c.responses.input_items.list("resp_unknown")


def test_errors_through_the_gateway(gateway):
    c = gateway_client(gateway)
    with pytest.raises(openai.BadRequestError) as bad:
        c.responses.create(model="gpt-4o-mini", input="x", tools=[{"type": "web_search_preview"}])
    assert bad.value.body["param"] == "tools[0].type"
    with pytest.raises(openai.RateLimitError):
        c.responses.create(model="openai/mock-error-429", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="pk-wrong",
                      max_retries=0).responses.create(model="gpt-4o-mini", input="x")

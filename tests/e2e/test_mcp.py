"""The MCP gateway driven by the official Python MCP SDK (`mcp` 2.x) as its client, in front of
two stdio servers the gateway starts: our recording server (built with the same SDK; it writes
down every tool call it receives) and `@modelcontextprotocol/server-everything`.

Each client test runs in both protocol generations the SDK speaks: `legacy` (the initialize
handshake) and `auto`, which asks `server/discover` and so speaks 2026-07-28 to the gateway.
"""

import json
import random
import sys
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client, MCPError, types
from mcp.client.streamable_http import streamable_http_client

from conftest import MASTER_KEY, ROOT, all_tools, run, start_gateway, stop_gateway

# The interpreter running the tests: the virtual environment that has the MCP SDK.
PYTHON = Path(sys.executable)
RECORDING_SERVER = Path(__file__).resolve().parent / "mcp_servers" / "recording_server.py"
EVERYTHING = ROOT / "tests" / "mcp" / "node_modules" / ".bin" / "mcp-server-everything"

MODES = ["legacy", "auto"]
NEGOTIATED = {"legacy": "2025-11-25", "auto": "2026-07-28"}

# Gaps in the gateway for requests a server sends its client while a call runs (sampling,
# elicitation), by mode. None today: with the handshake they are relayed on the call's SSE stream;
# in 2026-07-28 they become `input_required` results, and the client's retry carries its answers
# back to the server.
SERVER_REQUEST_GAPS: dict = {}


def modes_with_server_request_gaps():
    return [pytest.param(mode, marks=SERVER_REQUEST_GAPS.get(mode, ())) for mode in MODES]


def modes_with_modern_gap():
    return [pytest.param("legacy"), pytest.param("auto")]


@pytest.fixture(scope="module")
def mcp_gateway(mock_url, tmp_path_factory):
    if not EVERYTHING.exists():
        pytest.fail(f"{EVERYTHING} is missing: run `npm ci --prefix tests/mcp`")
    workdir = tmp_path_factory.mktemp("mcp-gateway")
    server_dir = workdir / "recording"
    server_dir.mkdir()
    record = server_dir / "calls.jsonl"
    config = workdir / "portcullis.yaml"
    config.write_text(json.dumps({"mcp": {"servers": {
        "recording": {"command": str(PYTHON), "args": [str(RECORDING_SERVER)],
                      "env": {"RECORD_FILE": str(record)}, "cwd": str(server_dir), "timeout": "20s"},
        # Short enough that the known gaps below fail fast, long enough for every call here.
        "everything": {"command": str(EVERYTHING), "args": ["stdio"], "timeout": "8s"},
    }}}))
    gw = start_gateway(mock_url, workdir, {"PORTCULLIS_CONFIG": str(config)})
    gw.record = record
    yield gw
    assert stop_gateway(gw) == 0, (workdir / "gateway.log").read_text()


def recorded(gw) -> list:
    """The tool calls the recording server received."""
    if not gw.record.exists():
        return []
    return [json.loads(line) for line in gw.record.read_text().splitlines()]


def new_key(gw, tools) -> dict:
    r = httpx.post(f"{gw.url}/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"},
                   json={"name": f"mcp-{uuid.uuid4().hex[:8]}", "tools": tools})
    assert r.status_code == 201, r.text
    return r.json()


@asynccontextmanager
async def connect(gw, path: str, key: str, mode: str, **callbacks):
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30) as http:
        transport = streamable_http_client(f"{gw.url}{path}", http_client=http)
        async with Client(transport, mode=mode, **callbacks) as client:
            assert client.protocol_version == NEGOTIATED[mode]
            yield client


def wait_for_logs(gw, wanted, what: str) -> list:
    """The log records matching `wanted`, waiting for the log writer."""
    deadline = time.time() + 10
    while True:
        found = [r for r in gw.logs() if r["endpoint"] == "mcp" and wanted(r)]
        if found or time.time() > deadline:
            assert found, f"no log record for {what}"
            return found
        time.sleep(0.1)


@pytest.mark.parametrize("mode", MODES)
def test_the_aggregated_endpoint_lists_every_server_under_its_name(mcp_gateway, mode):
    async def scenario():
        async with connect(mcp_gateway, "/mcp", MASTER_KEY, mode) as client:
            if mode == "legacy":
                assert client.server_info.name == "portcullis"
            tools = await all_tools(client)
            assert {"recording__add", "recording__delete_everything", "everything__echo",
                    "everything__get-sum"} <= set(tools), tools
            assert all(n.startswith(("recording__", "everything__")) and len(n) <= 64 for n in tools), tools
            resources = [r.uri for r in (await client.list_resources()).resources]
            assert "portcullis://recording/recording://notes" in resources, resources
            prompts = [p.name for p in (await client.list_prompts()).prompts]
            assert "recording__greet" in prompts, prompts

            echoed = await client.call_tool("everything__echo", {"message": f"through the gateway ({mode})"})
            assert not echoed.is_error
            assert echoed.content[0].text == f"Echo: through the gateway ({mode})"
    run(scenario())


@pytest.mark.parametrize("mode", modes_with_modern_gap())
def test_calls_reach_the_python_server_through_both_endpoints(mcp_gateway, mode):
    a, b = random.randrange(1, 10**6), random.randrange(1, 10**6)

    async def scenario():
        async with connect(mcp_gateway, "/mcp", MASTER_KEY, mode) as client:
            added = await client.call_tool("recording__add", {"a": a, "b": b})
            assert not added.is_error, added
            assert added.structured_content == {"result": a + b}
            notes = await client.read_resource("portcullis://recording/recording://notes")
            assert notes.contents[0].text == "The recording server keeps notes of every call."
            greeting = await client.get_prompt("recording__greet", {"name": "Ann"})
            assert greeting.messages[0].content.text == "Hello, Ann!"

        # The server's own endpoint speaks its own names.
        async with connect(mcp_gateway, "/mcp/recording", MASTER_KEY, mode) as client:
            assert sorted(await all_tools(client)) == ["add", "delete_everything"]
            added = await client.call_tool("add", {"a": b, "b": a + 1})
            assert added.structured_content == {"result": a + b + 1}
            notes = await client.read_resource("recording://notes")
            assert notes.contents[0].text.startswith("The recording server")
    run(scenario())
    calls = recorded(mcp_gateway)
    assert {"tool": "add", "arguments": {"a": a, "b": b}} in calls
    assert {"tool": "add", "arguments": {"a": b, "b": a + 1}} in calls


@pytest.mark.parametrize("mode", MODES)
def test_a_keys_tool_list_filters_what_it_sees_and_refusals_never_reach_the_server(mcp_gateway, mode):
    key = new_key(mcp_gateway, ["recording__add"])
    before = recorded(mcp_gateway)

    async def scenario():
        async with connect(mcp_gateway, "/mcp", key["key"], mode) as client:
            assert await all_tools(client) == ["recording__add"]
            with pytest.raises(MCPError) as refused:
                await client.call_tool("recording__delete_everything", {"confirm": True})
            assert refused.value.error.code == -32602
            assert "recording__delete_everything" in refused.value.error.message
            with pytest.raises(MCPError) as elsewhere:
                await client.call_tool("everything__echo", {"message": "not for this key"})
            assert "everything__echo" in elsewhere.value.error.message

        async with connect(mcp_gateway, "/mcp/recording", key["key"], mode) as client:
            assert await all_tools(client) == ["add"]
            with pytest.raises(MCPError) as refused:
                await client.call_tool("delete_everything", {"confirm": True})
            assert refused.value.error.code == -32602
            assert "delete_everything" in refused.value.error.message
    run(scenario())

    # Nothing the key was refused reached the server.
    assert recorded(mcp_gateway) == before
    def refused_call(r):
        return r["key_id"] == key["id"] and json.loads(r["metadata"] or "{}").get("method") == "tools/call"

    refusals = wait_for_logs(mcp_gateway, refused_call, "the refusals")
    for rec in refusals:
        assert rec["model"] in ("recording__delete_everything", "everything__echo", "delete_everything"), rec
        assert json.loads(rec["metadata"])["decision"] == "refused", rec


def test_a_key_calls_the_tool_it_is_allowed_and_the_server_records_it(mcp_gateway):
    key = new_key(mcp_gateway, ["recording__add"])
    a = random.randrange(1, 10**6)

    async def scenario():
        async with connect(mcp_gateway, "/mcp", key["key"], "legacy") as client:
            added = await client.call_tool("recording__add", {"a": a, "b": 1})
            assert added.structured_content == {"result": a + 1}
    run(scenario())
    assert {"tool": "add", "arguments": {"a": a, "b": 1}} in recorded(mcp_gateway)


def test_a_refused_call_is_proved_by_a_server_that_records_what_it_gets(mcp_gateway):
    """The master key may call `delete_everything`, and the server writes it down: the record
    is what shows that the refusals above never arrived."""
    before = len([c for c in recorded(mcp_gateway) if c["tool"] == "delete_everything"])

    async def scenario():
        async with connect(mcp_gateway, "/mcp", MASTER_KEY, "legacy") as client:
            done = await client.call_tool("recording__delete_everything", {"confirm": False})
            assert done.content[0].text == "everything deleted"
    run(scenario())
    after = [c for c in recorded(mcp_gateway) if c["tool"] == "delete_everything"]
    assert len(after) == before + 1


@pytest.mark.parametrize("path", ["/mcp", "/mcp/recording"])
def test_a_request_without_credentials_is_told_where_the_resource_metadata_is(mcp_gateway, path):
    r = httpx.post(f"{mcp_gateway.url}{path}", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={"accept": "application/json, text/event-stream"})
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge, challenge
    metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
    doc = httpx.get(metadata_url).json()
    assert doc["resource"] == f"{mcp_gateway.url}{path}"

    # The SDK's client gets no further.
    async def scenario():
        async with connect(mcp_gateway, path, "not-a-key", "legacy"):
            pass
    with pytest.raises(MCPError) as failed:
        run(scenario())
    assert "API key" in failed.value.error.message, failed.value


def test_every_call_is_in_the_log_with_its_server_and_tool(mcp_gateway):
    marker = f"logged {uuid.uuid4().hex[:8]}"
    a = random.randrange(1, 10**6)

    async def scenario():
        async with connect(mcp_gateway, "/mcp", MASTER_KEY, "legacy") as client:
            await client.call_tool("recording__add", {"a": a, "b": 2})
            await client.call_tool("everything__echo", {"message": marker})
        async with connect(mcp_gateway, "/mcp/recording", MASTER_KEY, "legacy") as client:
            await client.call_tool("add", {"a": a, "b": 3})
    started = time.time()
    run(scenario())

    def recent(r):
        return (r["ts_ms"] >= (started - 1) * 1000 and r["auth_method"] == "master_key"
                and json.loads(r["metadata"] or "{}").get("method") == "tools/call")

    # A tool has one name in the log whichever endpoint called it: `<server>__<tool>`.
    for provider, model, count in [("recording", "recording__add", 2), ("everything", "everything__echo", 1)]:
        found = wait_for_logs(mcp_gateway, lambda r: recent(r) and r["provider"] == provider and r["model"] == model
                              and (len([x for x in mcp_gateway.logs() if recent(x) and x["model"] == model]) >= count),
                              f"{provider} / {model}")
        rec = found[0]
        assert rec["status"] == 200, rec
        meta = json.loads(rec["metadata"])
        assert meta["decision"] == "forwarded", meta
        assert len(meta["arguments_sha256"]) == 64, meta


@pytest.mark.parametrize("mode", MODES)
def test_a_servers_progress_reaches_the_client(mcp_gateway, mode):
    progress = []

    async def on_progress(value, total, message):
        progress.append((value, total))

    async def scenario():
        async with connect(mcp_gateway, "/mcp", MASTER_KEY, mode) as client:
            done = await client.call_tool("everything__trigger-long-running-operation", {"duration": 1, "steps": 3},
                                          progress_callback=on_progress)
            assert "completed" in done.content[0].text, done
    run(scenario())
    assert progress == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]


@pytest.mark.parametrize("mode", modes_with_server_request_gaps())
def test_a_servers_sampling_request_is_answered_by_the_client(mcp_gateway, mode):
    asked = []

    async def sampling(context, params):
        asked.append(params.messages[0].content.text)
        return types.CreateMessageResult(role="assistant", model="client-model", stop_reason="endTurn",
                                         content=types.TextContent(type="text", text="sampled by the client"))

    async def scenario():
        async with connect(mcp_gateway, "/mcp", MASTER_KEY, mode, sampling_callback=sampling) as client:
            done = await client.call_tool("everything__trigger-sampling-request", {"prompt": "hi", "maxTokens": 10})
            assert "sampled by the client" in done.content[0].text, done
    run(scenario())
    assert len(asked) == 1 and "hi" in asked[0], asked


@pytest.mark.parametrize("mode", modes_with_server_request_gaps())
def test_a_servers_elicitation_is_answered_by_the_client(mcp_gateway, mode):
    async def elicitation(context, params):
        assert "name" in params.requested_schema["properties"]
        return types.ElicitResult(action="accept", content={"name": "Ann"})

    async def scenario():
        async with connect(mcp_gateway, "/mcp", MASTER_KEY, mode, elicitation_callback=elicitation) as client:
            done = await client.call_tool("everything__trigger-elicitation-request", {})
            assert any("Name: Ann" in block.text for block in done.content), done
    run(scenario())

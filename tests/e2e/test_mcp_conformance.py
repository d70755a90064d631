"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, server mode) run
against MCP servers over Streamable HTTP twice: once directly, once through the gateway's
`/mcp/<server>` with the master key. Whatever a server passes on its own it must still pass
behind the gateway. The servers: `@modelcontextprotocol/server-everything`, and our own
`mcp_servers/conformance_server.py` (official Python SDK), which implements what the suite's
scenarios call, so that every scenario has something to pass.

The runner has no option for request headers, so a Node.js preload adds `Authorization: Bearer
<master key>` to every request it sends to the gateway (through `fetch`, which the MCP client
uses, and undici's `request`, which the DNS-rebinding scenario uses); requests elsewhere are
untouched. The runner's release imports `fs.globSync` (Node.js 22) for a command this test does
not use, so on older Node.js the same preload gives it one that throws.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import MASTER_KEY, ROOT, _free_port, start_gateway, stop_gateway

NODE_MODULES = ROOT / "tests" / "mcp" / "node_modules"
RUNNER = NODE_MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
EVERYTHING = NODE_MODULES / ".bin" / "mcp-server-everything"
# The interpreter running the tests: the virtual environment that has the MCP SDK.
PYTHON = Path(sys.executable)
CONFORMANCE_SERVER = Path(__file__).resolve().parent / "mcp_servers" / "conformance_server.py"

# Checks a server passes on its own that the gateway does not pass yet, (scenario, check id),
# each with the gap in the gateway that explains it. None today.
KNOWN_GATEWAY_FAILURES: set[tuple[str, str]] = set()

# Checks where the gateway's answer differs from the server's in a way the runner itself
# reports as optional (status INFO, not FAILURE): (scenario, check id) -> why.
OPTIONAL_DIFFERENCES = {
    ("server-sse-multiple-streams", "server-sse-streams-functional"):
        "the gateway answers each POST with JSON where the server opened an SSE stream; "
        "the runner reports `SSE streaming is optional`",
}

# What the preload is made of (see the module documentation).
AUTHORIZATION_MJS = """
const authorization = process.env.CONFORMANCE_AUTHORIZATION;
const origin = process.env.CONFORMANCE_AUTHORIZATION_ORIGIN;
export function withAuthorization(url, given) {
  const headers = new Headers(given);
  if (authorization && origin && url.startsWith(origin) && !headers.has("authorization")) {
    headers.set("authorization", authorization);
  }
  return headers;
}
"""
REGISTER_MJS = """
import { register } from "node:module";
import { withAuthorization } from "./authorization.mjs";
register("./hooks.mjs", import.meta.url);
const plainFetch = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const url = input instanceof Request ? input.url : String(input);
  const given = init.headers ?? (input instanceof Request ? input.headers : undefined);
  return plainFetch(input, { ...init, headers: withAuthorization(url, given) });
};
"""
HOOKS_MJS = """
const fsShim = new URL("./fs-with-glob.mjs", import.meta.url).href;
const undiciShim = new URL("./undici-with-authorization.mjs", import.meta.url).href;
const needsGlob = typeof (await import("node:fs")).globSync !== "function";
export async function resolve(specifier, context, next) {
  const fromRunner = context.parentURL?.includes("/@modelcontextprotocol/conformance/");
  if (fromRunner && needsGlob && (specifier === "fs" || specifier === "node:fs")) {
    return { url: fsShim, shortCircuit: true };
  }
  if (fromRunner && specifier === "undici") {
    const real = await next(specifier, context);
    return { url: `${undiciShim}?real=${encodeURIComponent(real.url)}`, shortCircuit: true };
  }
  return next(specifier, context);
}
"""
FS_WITH_GLOB_MJS = """
import fs from "node:fs";
export * from "node:fs";
export default fs;
export function globSync() {
  throw new Error("fs.globSync needs Node.js 22 or later");
}
"""
UNDICI_WITH_AUTHORIZATION_MJS = """
import { withAuthorization } from "./authorization.mjs";
const real = await import(new URL(import.meta.url).searchParams.get("real"));
export function request(url, options = {}) {
  const headers = withAuthorization(String(url), options.headers);
  return real.request(url, { ...options, headers: Object.fromEntries(headers) });
}
"""

RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")


@pytest.fixture(scope="module")
def preload(tmp_path_factory) -> Path:
    if shutil.which("node") is None or not RUNNER.exists() or not EVERYTHING.exists():
        pytest.fail("node and the npm packages of tests/mcp are needed: run `npm ci --prefix tests/mcp`")
    d = tmp_path_factory.mktemp("conformance-preload")
    for name, text in [("authorization.mjs", AUTHORIZATION_MJS), ("register.mjs", REGISTER_MJS),
                       ("hooks.mjs", HOOKS_MJS), ("fs-with-glob.mjs", FS_WITH_GLOB_MJS),
                       ("undici-with-authorization.mjs", UNDICI_WITH_AUTHORIZATION_MJS)]:
        (d / name).write_text(text)
    return d / "register.mjs"


def serve(command: list, env: dict, url: str, log: Path):
    """Starts an MCP server and waits until `url` answers; the process."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while True:
        if proc.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            httpx.get(url, timeout=2)
            return proc
        except httpx.TransportError:
            if time.time() > deadline:
                proc.kill()
                raise AssertionError(f"{command[0]} did not listen: {log.read_text()}")
            time.sleep(0.1)


@pytest.fixture(params=["everything", "conformance"])
def upstream(request, tmp_path):
    """An MCP server over Streamable HTTP on a free port: (its name, its URL)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    if request.param == "everything":
        proc = serve([str(EVERYTHING), "streamableHttp"], {"PORT": str(port)}, url, tmp_path / "server.log")
    else:
        proc = serve([str(PYTHON), str(CONFORMANCE_SERVER), str(port)], {}, url, tmp_path / "server.log")
    yield request.param, url
    proc.terminate()
    proc.wait(timeout=10)


def run_conformance(preload: Path, url: str, out: Path, authorization=None) -> dict:
    """Runs the active server suite against `url`; the checks by (scenario, check id), each a
    list of the statuses reported under that id."""
    env = {**os.environ}
    if authorization:
        origin, value = authorization
        env.update({"CONFORMANCE_AUTHORIZATION": value, "CONFORMANCE_AUTHORIZATION_ORIGIN": origin})
    r = subprocess.run(["node", "--import", str(preload), str(RUNNER), "server", "--url", url, "-o", str(out)],
                       env=env, capture_output=True, text=True, timeout=600)
    # Exit 1 means some check failed, which the comparison judges; anything else is a crash.
    assert r.returncode in (0, 1), r.stdout + r.stderr
    checks: dict = {}
    for result in sorted(out.iterdir()):
        m = RESULT_DIR.match(result.name)
        assert m, result.name
        for check in json.loads((result / "checks.json").read_text()):
            checks.setdefault((m["scenario"], check["id"]), []).append(check)
    assert checks, r.stdout + r.stderr
    return checks


def passed(entries: list) -> bool:
    return bool(entries) and all(c["status"] == "SUCCESS" for c in entries)


def failed(entries: list) -> bool:
    return any(c["status"] in ("FAILURE", "WARNING") for c in entries)


def test_the_gateway_passes_every_conformance_check_the_server_passes(preload, upstream, mock_url, tmp_path):
    name, server_url = upstream
    direct = run_conformance(preload, server_url, tmp_path / "direct")
    # The run is meaningful: the server passes the core scenarios on its own.
    for core in [("server-initialize", "server-initialize"), ("tools-list", "tools-list"),
                 ("ping", "ping"), ("resources-list", "resources-list"), ("prompts-list", "prompts-list")]:
        assert passed(direct.get(core, [{"status": "missing"}])), (core, direct.get(core))

    workdir = tmp_path / "gateway"
    workdir.mkdir()
    (workdir / "portcullis.yaml").write_text(
        f"mcp:\n  servers:\n    {name}:\n      url: {server_url}\n      timeout: 5s\n")
    gw = start_gateway(mock_url, workdir, {"PORTCULLIS_CONFIG": str(workdir / "portcullis.yaml")})
    try:
        endpoint = f"{gw.url}/mcp/{name}"
        # Without the key the gateway refuses: the preload is what lets the runner in.
        refused = httpx.post(endpoint, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                             headers={"accept": "application/json, text/event-stream"})
        assert refused.status_code == 401
        through = run_conformance(preload, endpoint, tmp_path / "through-gateway",
                                  authorization=(gw.url, f"Bearer {MASTER_KEY}"))
    finally:
        assert stop_gateway(gw) == 0, (workdir / "gateway.log").read_text()

    regressions = {}
    for key, entries in direct.items():
        if not passed(entries) or key in KNOWN_GATEWAY_FAILURES:
            continue
        behind = through.get(key, [])
        if passed(behind):
            continue
        if key in OPTIONAL_DIFFERENCES and behind and not failed(behind):
            continue
        regressions[key] = [{k: c.get(k) for k in ("status", "errorMessage", "details")} for c in behind] or "missing"
    assert not regressions, json.dumps({f"{s} / {c}": v for (s, c), v in regressions.items()}, indent=1)

    # A known failure that now passes is taken off the list.
    fixed = [key for key in KNOWN_GATEWAY_FAILURES
             if passed(direct.get(key, [])) and passed(through.get(key, []))]
    assert not fixed, f"these pass through the gateway now; remove them from KNOWN_GATEWAY_FAILURES: {fixed}"

    if name == "conformance":
        # Our server gives every scenario something to pass.
        assert all(passed(entries) for entries in direct.values()), \
            [key for key, entries in direct.items() if not passed(entries)]

    # Whatever the server does, the gateway refuses DNS-rebinding requests.
    assert passed(through[("dns-rebinding-protection", "localhost-host-rebinding-rejected")])
    assert passed(through[("dns-rebinding-protection", "localhost-host-valid-accepted")])

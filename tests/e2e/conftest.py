"""Fixtures for the end-to-end suite: the mock upstream and the gateway, each a real process.

The gateway runs exactly as a new user would run it: `portcullis serve` with no config file,
configured only by environment variables, in an empty working directory (so it creates its
SQLite database there).
"""

import asyncio
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "e2e-master-key-0123456789"
OPENAI_KEY = "sk-mock-openai"
ANTHROPIC_KEY = "sk-ant-mock"


def _bin(env_var: str, name: str) -> str:
    path = os.environ.get(env_var) or str(ROOT / "target" / "debug" / name)
    if not os.path.exists(path):
        pytest.exit(f"{path} is missing: build it with `cargo build --bins` first", returncode=2)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mock_url():
    proc = subprocess.Popen(
        [_bin("MOCK_UPSTREAM_BIN", "mock-upstream")],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    yield line.split()[-1]
    proc.terminate()
    proc.wait(timeout=10)


@dataclass
class Gateway:
    url: str
    workdir: Path
    process: subprocess.Popen

    def logs(self, query: str = "limit=1000") -> list:
        r = httpx.get(f"{self.url}/admin/logs?{query}", headers={"authorization": f"Bearer {MASTER_KEY}"})
        r.raise_for_status()
        return r.json()["data"]

    def log_of(self, request_id: str) -> dict:
        deadline = time.time() + 10
        while time.time() < deadline:
            for rec in self.logs():
                if rec["id"] == request_id:
                    return rec
            time.sleep(0.05)
        raise AssertionError(f"no log record for {request_id}")


def start_gateway(mock_url: str, workdir: Path, extra_env=None, port=None) -> Gateway:
    port = port or _free_port()
    # A clean environment: no provider variables from the machine running the tests.
    env = {k: v for k, v in os.environ.items()
           if not (k.endswith("_API_KEY") or k.endswith("_BASE_URL") or k.startswith("PORTCULLIS_"))}
    env.update({
        "PORTCULLIS_LISTEN": f"127.0.0.1:{port}",
        "PORTCULLIS_MASTER_KEY": MASTER_KEY,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": f"{mock_url}/v1",
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": mock_url,
        "PORTCULLIS_LOG": "warn",
    })
    env.update(extra_env or {})
    out = open(workdir / "gateway.log", "w")
    proc = subprocess.Popen([_bin("PORTCULLIS_BIN", "portcullis"), "serve"], cwd=workdir, env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError((workdir / "gateway.log").read_text())
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return Gateway(url, workdir, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the gateway did not become ready")


def stop_gateway(gw: Gateway) -> int:
    gw.process.send_signal(signal.SIGTERM)
    return gw.process.wait(timeout=30)


def run(coro):
    """Runs `coro`; an error raised inside the client's task group comes out as itself."""
    try:
        return asyncio.run(coro)
    except BaseExceptionGroup as group:
        leaf = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        raise leaf from group


async def all_tools(client) -> list:
    """The names of the tools an MCP client session lists, every page."""
    names, cursor = [], None
    while True:
        page = await client.list_tools(cursor=cursor)
        names += [t.name for t in page.tools]
        cursor = page.next_cursor
        if not cursor:
            return names


@pytest.fixture(scope="session")
def gateway(mock_url, tmp_path_factory):
    gw = start_gateway(mock_url, tmp_path_factory.mktemp("gateway"))
    yield gw
    assert stop_gateway(gw) == 0, (gw.workdir / "gateway.log").read_text()

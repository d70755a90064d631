"""An MCP server over stdio, built with the official Python SDK, that writes down every tool
call it receives.

Each call is appended as one JSON line (`{"tool": ..., "arguments": ...}`) to the file named
by the `RECORD_FILE` environment variable, so a test can prove what reached the server and
what never did. Tools: `add` and `delete_everything` (which deletes nothing); resource:
`recording://notes`; prompt: `greet`.
"""

import json
import os

from mcp.server.mcpserver import MCPServer

RECORD_FILE = os.environ["RECORD_FILE"]
NOTES = "The recording server keeps notes of every call."

server = MCPServer("recording", version="1.0.0")


def record(tool: str, arguments: dict) -> None:
    with open(RECORD_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")
        f.flush()


@server.tool(description="Adds two integers.")
def add(a: int, b: int) -> int:
    record("add", {"a": a, "b": b})
    return a + b


@server.tool(description="Pretends to delete everything; a key should never reach it.")
def delete_everything(confirm: bool = False) -> str:
    record("delete_everything", {"confirm": confirm})
    return "everything deleted"


@server.resource("recording://notes", name="notes", mime_type="text/plain")
def notes() -> str:
    return NOTES


@server.prompt(description="Greets someone by name.")
def greet(name: str) -> str:
    return f"Hello, {name}!"


if __name__ == "__main__":
    server.run("stdio")

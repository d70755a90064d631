"""An MCP server over Streamable HTTP, built with the official Python SDK, that implements what
the scenarios of the MCP conformance suite (`@modelcontextprotocol/conformance`, server mode)
call: the `test_*` tools, prompts and resources their descriptions ask for. It lets the suite
exercise content types, logging, progress, sampling, elicitation, resources, prompts and
completion, directly and through the gateway.

Usage: python conformance_server.py PORT  (serves http://127.0.0.1:PORT/mcp)
"""

import asyncio
import base64
import json
import sys
import warnings

from mcp import types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage

# A 1x1 red pixel, and a tiny WAV file (a header and two silent samples).
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
WAV = base64.b64encode(
    b"RIFF" + (40).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    + b"data" + (4).to_bytes(4, "little") + b"\x00\x00\x00\x00").decode()

warnings.simplefilter("ignore")  # sampling, logging and subscriptions are deprecated in 2026-07-28
server = MCPServer("conformance-server", version="1.0.0")


@server.tool(description="Returns simple text.")
def test_simple_text() -> list:
    return [types.TextContent(type="text", text="This is a simple text response for testing.")]


@server.tool(description="Returns an image.")
def test_image_content() -> list:
    return [types.ImageContent(type="image", data=PNG, mime_type="image/png")]


@server.tool(description="Returns audio.")
def test_audio_content() -> list:
    return [types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")]


def embedded(uri: str, mime_type: str, text: str) -> types.EmbeddedResource:
    return types.EmbeddedResource(type="resource", resource=types.TextResourceContents(
        uri=uri, mime_type=mime_type, text=text))


@server.tool(description="Returns an embedded resource.")
def test_embedded_resource() -> list:
    return [embedded("test://embedded-resource", "text/plain", "This is an embedded resource content.")]


@server.tool(description="Returns text, an image and a resource.")
def test_multiple_content_types() -> list:
    return [types.TextContent(type="text", text="Multiple content types test:"),
            types.ImageContent(type="image", data=PNG, mime_type="image/png"),
            embedded("test://mixed-content-resource", "application/json", json.dumps({"test": "data", "value": 123}))]


@server.tool(description="Always fails.")
def test_error_handling() -> str:
    raise RuntimeError("This tool intentionally returns an error for testing")


@server.tool(description="Logs three messages while it runs.")
async def test_tool_with_logging(ctx: Context) -> str:
    for message in ["Tool execution started", "Tool processing data", "Tool execution completed"]:
        await ctx.info(message)
        await asyncio.sleep(0.05)
    return "Tool with logging executed successfully"


@server.tool(description="Reports progress 0, 50, 100 of 100.")
async def test_tool_with_progress(ctx: Context) -> str:
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100)
        await asyncio.sleep(0.05)
    return "Tool with progress executed successfully"


@server.tool(description="Asks the client to sample.")
async def test_sampling(prompt: str, ctx: Context) -> str:
    result = await ctx.session.create_message(
        [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))], max_tokens=100)
    return f"LLM response: {result.content.text}"


@server.tool(description="Asks the client for the user's details.")
async def test_elicitation(message: str, ctx: Context) -> str:
    result = await ctx.session.elicit_form(message, {
        "type": "object",
        "properties": {"username": {"type": "string", "description": "User's response"},
                       "email": {"type": "string", "description": "User's email address"}},
        "required": ["username", "email"]})
    return f"User response: action={result.action}, content={json.dumps(result.content)}"


@server.tool(description="Elicitation with defaults for every primitive type.")
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    result = await ctx.session.elicit_form("Please review and update the form fields with defaults", {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"],
                       "default": "active"},
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": []})
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"


@server.tool(description="Elicitation with every enum variant.")
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    result = await ctx.session.elicit_form("Please select options from the enum fields", {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": [{"const": "value1", "title": "First Option"},
                                                         {"const": "value2", "title": "Second Option"},
                                                         {"const": "value3", "title": "Third Option"}]},
            "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                           "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "items": {"anyOf": [{"const": "value1", "title": "First Choice"},
                                                                 {"const": "value2", "title": "Second Choice"},
                                                                 {"const": "value3", "title": "Third Choice"}]}},
        },
        "required": []})
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"


@server.resource("test://static-text", name="static-text", description="A static text resource.",
                 mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource("test://static-binary", name="static-binary", description="A static binary resource.",
                 mime_type="image/png")
def static_binary() -> bytes:
    return base64.b64decode(PNG)


@server.resource("test://watched-resource", name="watched-resource", description="A resource to subscribe to.",
                 mime_type="text/plain")
def watched_resource() -> str:
    return "Watched resource content."


@server.resource("test://template/{id}/data", name="template-data", description="Data by id.",
                 mime_type="application/json")
def template_data(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@server.prompt(description="A simple prompt.")
def test_simple_prompt() -> str:
    return "This is a simple prompt for testing."


@server.prompt(description="A prompt with two arguments.")
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@server.prompt(description="A prompt embedding a resource.")
def test_prompt_with_embedded_resource(resourceUri: str) -> list:
    return [UserMessage(content=embedded(resourceUri, "text/plain", "Embedded resource content for testing.")),
            UserMessage(content="Please process the embedded resource above.")]


@server.prompt(description="A prompt with an image.")
def test_prompt_with_image() -> list:
    return [UserMessage(content=types.ImageContent(type="image", data=PNG, mime_type="image/png")),
            UserMessage(content="Please analyze the image above.")]


@server.completion()
async def complete(ref, argument, context):
    values = [v for v in ["paris", "park", "party"] if v.startswith(argument.value)]
    return types.Completion(values=values, total=len(values), has_more=False)


async def accept(ctx, params) -> types.EmptyResult:
    """`logging/setLevel`, `resources/subscribe` and `resources/unsubscribe`: accepted."""
    return types.EmptyResult()


# MCPServer has no decorators for these handshake-era requests; its low-level server takes them.
server._lowlevel_server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, accept)
server._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, accept)
server._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, accept)

if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))

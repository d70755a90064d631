// A minimal MCP server over stdio (newline-delimited JSON-RPC), without dependencies, whose
// tools probe what its sandbox lets it do: read and write files, connect over TCP, see its
// environment, allocate memory. Failures come back as tool errors naming the error code
// (EACCES, ECONNREFUSED, …); `allocate` does not catch: a server out of memory dies.

import { readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { createInterface } from "node:readline";

const held = [];

const tools = {
  read_file: {
    description: "Reads a file (relative paths in the working directory).",
    properties: { path: { type: "string" } },
    required: ["path"],
    run: ({ path }) => readFileSync(path, "utf8"),
  },
  write_file: {
    description: "Writes text to a file (relative paths in the working directory).",
    properties: { path: { type: "string" }, text: { type: "string" } },
    required: ["path", "text"],
    run: ({ path, text }) => {
      writeFileSync(path, text);
      return `wrote ${text.length} characters`;
    },
  },
  connect: {
    description: "Opens a TCP connection to 127.0.0.1:port and closes it.",
    properties: { port: { type: "integer" } },
    required: ["port"],
    run: ({ port }) =>
      new Promise((resolve, reject) => {
        const socket = connect({ host: "127.0.0.1", port });
        socket.setTimeout(3000, () => {
          socket.destroy();
          reject(Object.assign(new Error("no answer within 3 s"), { code: "ETIMEDOUT" }));
        });
        socket.on("connect", () => {
          socket.end();
          resolve("connected");
        });
        socket.on("error", reject);
      }),
  },
  env: {
    description: "Returns the server's environment.",
    properties: {},
    required: [],
    run: () => JSON.stringify(process.env),
  },
  allocate: {
    description: "Allocates and keeps that many MiB, every byte written.",
    properties: { mb: { type: "integer" } },
    required: ["mb"],
    run: ({ mb }) => {
      for (let i = 0; i < mb; i++) held.push(Buffer.alloc(1 << 20, 1));
      return `holding ${held.length} MiB`;
    },
  },
};

const send = (message) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n");

async function call(name, args) {
  const tool = tools[name];
  if (!tool) return { error: { code: -32602, message: `unknown tool ${name}` } };
  if (name === "allocate") return { result: { content: [{ type: "text", text: tool.run(args) }] } };
  try {
    const text = await tool.run(args ?? {});
    return { result: { content: [{ type: "text", text }] } };
  } catch (e) {
    const code = e.code ?? "error";
    const text = e.message.startsWith(code) ? e.message : `${code}: ${e.message}`;
    return { result: { content: [{ type: "text", text }], isError: true } };
  }
}

async function handle(message) {
  const { id, method, params } = message;
  switch (method) {
    case "initialize":
      return {
        result: {
          protocolVersion: params?.protocolVersion ?? "2025-06-18",
          capabilities: { tools: {} },
          serverInfo: { name: "probe", version: "1.0.0" },
        },
      };
    case "ping":
      return { result: {} };
    case "tools/list":
      return {
        result: {
          tools: Object.entries(tools).map(([name, t]) => ({
            name,
            description: t.description,
            inputSchema: { type: "object", properties: t.properties, required: t.required },
          })),
        },
      };
    case "tools/call":
      return call(params?.name, params?.arguments);
    default:
      return id === undefined ? null : { error: { code: -32601, message: `no method ${method}` } };
  }
}

createInterface({ input: process.stdin }).on("line", async (line) => {
  if (!line.trim()) return;
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    return;
  }
  // Notifications (notifications/initialized, cancellations) need no answer.
  if (message.id === undefined || message.method === undefined) return;
  const answer = await handle(message);
  if (answer) send({ id: message.id, ...answer });
});

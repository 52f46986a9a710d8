import net from "node:net";
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { listen, startApp, type App } from "./harness/apps.js";
import { createWorkspace, startAgent, startServer, upgradeAndCount, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

describe("WebSocket and upgrades through the tunnel", () => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let app: App;
  let rawApp: net.Server;
  let rawAppPort: number;

  beforeAll(async () => {
    app = await startApp((_req, res) => res.end("plain"), { webSocketEcho: true });
    // A raw upgrade app: after "101", it collects everything until the client half-closes,
    // then answers with the byte count and closes its side.
    const upgradeServer = http.createServer();
    upgradeServer.on("upgrade", (_req, socket: net.Socket) => {
      socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: count\r\nConnection: Upgrade\r\n\r\n");
      let n = 0;
      socket.on("data", (c: Buffer) => (n += c.length));
      socket.on("end", () => socket.end(`received ${n} bytes`));
    });
    rawApp = upgradeServer as unknown as net.Server;
    rawAppPort = await listen(upgradeServer);
    server = await startServer();
    const ws = await createWorkspace(server, "sockets", [app.port, rawAppPort]);
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
    rawApp?.close();
  });

  function connect(headers: Record<string, string> = { "x-warren-token": server.adminToken }): WebSocket {
    return new WebSocket(`ws://127.0.0.1:${server.httpPort}/socket`, { headers: { host: workspaceHost("sockets", app.port), ...headers } });
  }

  it("echoes text and binary messages", async () => {
    const ws = connect();
    const messages: Array<{ data: Buffer; binary: boolean }> = [];
    await new Promise<void>((resolve, reject) => {
      ws.on("error", reject);
      ws.on("message", (data: Buffer, binary) => {
        messages.push({ data, binary });
        if (messages.length === 1) {
          ws.send("hello");
          ws.send(Buffer.from([0, 1, 2, 255]));
          ws.send(Buffer.alloc(1024 * 1024, 7));
        }
        if (messages.length === 4) resolve();
      });
    });
    ws.close();
    expect(JSON.parse(messages[0]!.data.toString())).toEqual({ hello: workspaceHost("sockets", app.port) });
    expect(messages[1]!.data.toString()).toBe("hello");
    expect(messages[1]!.binary).toBe(false);
    expect([...messages[2]!.data]).toEqual([0, 1, 2, 255]);
    expect(messages[3]!.data.equals(Buffer.alloc(1024 * 1024, 7))).toBe(true);
  });

  it("refuses an upgrade without credentials with 401", async () => {
    const ws = connect({});
    const status = await new Promise<number>((resolve) => {
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("error", () => resolve(-1));
    });
    expect(status).toBe(401);
  });

  it("passes a client half-close through and still delivers the answer", async () => {
    const text = await upgradeAndCount(server, workspaceHost("sockets", rawAppPort), 300_000);
    expect(text).toMatch(/^HTTP\/1.1 101/);
    expect(text.endsWith("received 300000 bytes")).toBe(true);
  });
});

import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, listen, startApp, type App } from "./harness/apps.js";
import { createWorkspace, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

// Both ways through the front door: the spliced fast path (default) and node's HTTP client.
describe.each([
  ["spliced fast path", "true"],
  ["node HTTP client", "false"],
])("HTTP front door (%s)", (_mode, fastPath) => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let app: App;
  let slowApp: App;
  let downPort: number;
  const requests: http.IncomingMessage[] = [];

  beforeAll(async () => {
    app = await startApp((req, res) => {
      requests.push(req);
      if (req.url === "/slow") return; // never answers
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        res.setHeader("content-type", "application/json");
        res.setHeader("set-cookie", ["a=1; Path=/", "b=2; Path=/"]);
        res.setHeader("x-app", "yes");
        res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body.toString("utf8") }));
      });
    });
    slowApp = await startApp(() => {});
    downPort = await freePort();
    server = await startServer({ WARREN_UPSTREAM_TIMEOUT: "3s", WARREN_HTTP_FAST_PATH: fastPath });
    const ws = await createWorkspace(server, "demo", [app.port, slowApp.port, downPort, { port: 1, public: true }]);
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
    await slowApp?.close();
  });

  const token = () => ({ "x-warren-token": server.adminToken });

  it("round-trips a GET with the app's status, headers and body", async () => {
    const res = await httpRequest({ port: server.httpPort, host: workspaceHost("demo", app.port), path: "/hello?x=1", headers: token() });
    expect(res.status).toBe(200);
    expect(res.headers["x-app"]).toBe("yes");
    expect(res.headers["set-cookie"]).toEqual(["a=1; Path=/", "b=2; Path=/"]);
    const echoed = JSON.parse(res.body.toString());
    expect(echoed.method).toBe("GET");
    expect(echoed.url).toBe("/hello?x=1");
  });

  it("round-trips a POST body", async () => {
    const body = JSON.stringify({ hello: "world", n: [1, 2, 3] });
    const res = await httpRequest({
      port: server.httpPort,
      host: workspaceHost("demo", app.port),
      method: "POST",
      path: "/submit",
      headers: { ...token(), "content-type": "application/json" },
      body,
    });
    expect(res.status).toBe(200);
    const echoed = JSON.parse(res.body.toString());
    expect(echoed.method).toBe("POST");
    expect(echoed.body).toBe(body);
  });

  it("sets X-Forwarded-*, strips Warren's token and hop-by-hop headers, passes the app's Authorization", async () => {
    const host = workspaceHost("demo", app.port);
    const res = await httpRequest({
      port: server.httpPort,
      host,
      headers: {
        ...token(),
        authorization: "Bearer app-own-credential",
        "x-forwarded-for": "10.1.2.3",
        connection: "keep-alive, x-drop-me",
        "x-drop-me": "1",
        "keep-alive": "timeout=5",
        "proxy-authorization": "Basic abc",
        te: "trailers",
      },
    });
    const h = JSON.parse(res.body.toString()).headers as Record<string, string>;
    expect(h["authorization"]).toBe("Bearer app-own-credential");
    expect(h["x-warren-token"]).toBeUndefined();
    expect(h["x-forwarded-for"]).toBe("10.1.2.3, 127.0.0.1");
    expect(h["x-forwarded-proto"]).toBe("http");
    expect(h["x-forwarded-host"]).toBe(host);
    expect(h["host"]).toBe(host);
    expect(h["x-drop-me"]).toBeUndefined();
    expect(h["keep-alive"]).toBeUndefined();
    expect(h["proxy-authorization"]).toBeUndefined();
    expect(h["te"]).toBeUndefined();
  });

  it("reads the whole body of a request that asks to close the connection", async () => {
    // On a kept-alive connection, a last request with Connection: close and a body far larger
    // than one read: its body must still be read after the connection stops taking requests.
    const host = workspaceHost("demo", app.port);
    const body = Buffer.alloc(3 * 1024 * 1024, "x");
    const socket = net.connect(server.httpPort, "127.0.0.1");
    socket.write(`GET /first HTTP/1.1\r\nHost: ${host}\r\nX-Warren-Token: ${server.adminToken}\r\n\r\n`);
    socket.write(`POST /big HTTP/1.1\r\nHost: ${host}\r\nX-Warren-Token: ${server.adminToken}\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body);
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve) => socket.on("close", () => resolve()));
    const text = Buffer.concat(chunks).toString("latin1");
    expect(text.match(/HTTP\/1.1 200 OK\r\n/g)).toHaveLength(2);
    expect(text).toContain('"url":"/big"');
    expect(text).toContain(`"body":"${"x".repeat(16)}`);
    const bodies = [...text.matchAll(/"body":"(x*)"/g)].map((m) => m[1]!.length);
    expect(bodies).toEqual([0, body.length]);
    // The client asked to close: the answer says so.
    expect(text.split("HTTP/1.1 200 OK").at(-1)).toMatch(/\r\nConnection: close\r\n/i);
  });

  it("streams a chunked request body", async () => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port: server.httpPort, method: "PUT", path: "/chunked", headers: { host: workspaceHost("demo", app.port), ...token() } },
        (r) => {
          let text = "";
          r.setEncoding("utf8").on("data", (c: string) => (text += c));
          r.on("end", () => resolve({ status: r.statusCode!, body: text }));
        },
      );
      req.on("error", reject);
      req.write("part1-");
      setTimeout(() => req.end("part2"), 50);
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).body).toBe("part1-part2");
  });

  it("answers 401 without a token and with a wrong one", async () => {
    const host = workspaceHost("demo", app.port);
    const missing = await httpRequest({ port: server.httpPort, host });
    expect(missing.status).toBe(401);
    expect(missing.body.toString()).toMatch(/X-Warren-Token/);
    const wrong = await httpRequest({ port: server.httpPort, host, headers: { "x-warren-token": "wut_0123456789abcdefAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" } });
    expect(wrong.status).toBe(401);
    const garbage = await httpRequest({ port: server.httpPort, host, headers: { "x-warren-token": "nonsense" } });
    expect(garbage.status).toBe(401);
  });

  it("answers 404 for unknown workspaces and malformed hosts", async () => {
    const unknown = await httpRequest({ port: server.httpPort, host: workspaceHost("nope", app.port), headers: token() });
    expect(unknown.status).toBe(404);
    expect(unknown.body.toString()).toBe('workspace "nope" not found\n');
    for (const host of ["demo.warren.localhost", "x-demo.warren.localhost", "99999-demo.warren.localhost", "8000-Demo_.warren.localhost", "8000-demo.example.com", "0-demo.warren.localhost", "8000--demo.warren.localhost"]) {
      const res = await httpRequest({ port: server.httpPort, host, headers: token() });
      expect(res.status, host).toBe(404);
      expect(res.headers["content-type"]).toMatch(/^text\/plain/);
    }
  });

  it("answers 400 to a request with two Host headers, whichever comes first", async () => {
    for (const hosts of [[workspaceHost("demo", app.port), "warren.localhost"], ["warren.localhost", workspaceHost("demo", app.port)]]) {
      const socket = net.connect(server.httpPort, "127.0.0.1");
      socket.write(`GET /two-hosts HTTP/1.1\r\nHost: ${hosts[0]}\r\nHost: ${hosts[1]}\r\nX-Warren-Token: ${server.adminToken}\r\n\r\n`);
      let text = "";
      socket.setEncoding("latin1").on("data", (c: string) => (text += c));
      await new Promise<void>((resolve) => socket.on("close", () => resolve()));
      expect(text).toMatch(/^HTTP\/1.1 400 /);
      expect(text).toContain("more than one Host header");
    }
    expect(requests.some((r) => r.url === "/two-hosts")).toBe(false);
  });

  it("answers a request head over 32 KiB with 431 and goes on serving", async () => {
    const socket = net.connect(server.httpPort, "127.0.0.1");
    socket.write(`GET /huge HTTP/1.1\r\nHost: ${workspaceHost("demo", app.port)}\r\nX-Warren-Token: ${server.adminToken}\r\nX-Big: ${"b".repeat(40 * 1024)}\r\n\r\n`);
    let text = "";
    socket.setEncoding("latin1").on("data", (c: string) => (text += c));
    socket.on("error", () => {});
    await new Promise<void>((resolve) => socket.on("close", () => resolve()));
    expect(text).toMatch(/^HTTP\/1.1 431 /);
    expect(text).toContain("request head over 32768 bytes");
    expect(requests.some((r) => r.url === "/huge")).toBe(false);
    expect((await httpRequest({ port: server.httpPort, host: workspaceHost("demo", app.port), headers: token() })).status).toBe(200);
  });

  it("answers 403 for a port the workspace does not expose", async () => {
    const res = await httpRequest({ port: server.httpPort, host: workspaceHost("demo", 9), headers: token() });
    expect(res.status).toBe(403);
    expect(res.body.toString()).toBe('port 9 is not exposed by workspace "demo"\n');
  });

  it("answers 502 when nothing listens on the port in the workspace", async () => {
    const res = await httpRequest({ port: server.httpPort, host: workspaceHost("demo", downPort), headers: token() });
    expect(res.status).toBe(502);
    expect(res.body.toString()).toMatch(new RegExp(`nothing is listening on port ${downPort} in workspace "demo"`));
  });

  it("answers 504 when the app does not respond in time", async () => {
    const res = await httpRequest({ port: server.httpPort, host: workspaceHost("demo", slowApp.port), path: "/slow", headers: token() });
    expect(res.status).toBe(504);
    expect(res.body.toString()).toMatch(/did not respond within 3000 ms/);
  });

  it("lets a public port through without credentials", async () => {
    // Port 1 is public but nothing listens there: the answer is the app's absence, not 401.
    const res = await httpRequest({ port: server.httpPort, host: workspaceHost("demo", 1) });
    expect(res.status).toBe(502);
  });

  it("serves 200 concurrent requests", async () => {
    const agentPool = new http.Agent({ keepAlive: true, maxSockets: 200 });
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        httpRequest({ port: server.httpPort, host: workspaceHost("demo", app.port), path: `/c/${i}`, headers: token(), agent: agentPool }),
      ),
    );
    agentPool.destroy();
    expect(results.map((r) => r.status)).toEqual(Array(200).fill(200));
    results.forEach((r, i) => expect(JSON.parse(r.body.toString()).url).toBe(`/c/${i}`));
  });

  it("reuses upstream connections: far fewer tunnel streams than requests", async () => {
    const before = app.connections;
    // A keep-alive client, as browsers are: its requests ride one tunnel stream to one app connection.
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 100; i++) {
      const res = await httpRequest({ port: server.httpPort, host: workspaceHost("demo", app.port), path: `/seq/${i}`, headers: token(), agent: keepAlive });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body.toString()).url).toBe(`/seq/${i}`);
    }
    keepAlive.destroy();
    // Each new upstream connection is one tunnel stream; sequential requests share one.
    expect(app.connections - before).toBeLessThanOrEqual(3);
  });

  it("serves clients that open a connection per request over kept-alive app connections, each answer saying Connection: close", async () => {
    const before = app.connections;
    const host = workspaceHost("demo", app.port);
    for (let i = 0; i < 20; i++) {
      // A raw client: the server must close the connection itself after the answer.
      const socket = net.connect(server.httpPort, "127.0.0.1");
      socket.write(`GET /once/${i} HTTP/1.1\r\nHost: ${host}\r\nX-Warren-Token: ${server.adminToken}\r\nConnection: close\r\n\r\n`);
      let text = "";
      socket.setEncoding("latin1").on("data", (c: string) => (text += c));
      await new Promise<void>((resolve) => socket.on("close", () => resolve()));
      const head = text.slice(0, text.indexOf("\r\n\r\n"));
      expect(head).toMatch(/^HTTP\/1.1 200 OK\r\n/);
      expect(head.match(/^connection:.*$/gim)).toEqual(["Connection: close"]);
      expect(head).not.toMatch(/^keep-alive:/im);
      expect(JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4)).url).toBe(`/once/${i}`);
    }
    // One app connection (tunnel stream) serves them one after another.
    expect(app.connections - before).toBeLessThanOrEqual(2);
  });

  it("keeps pipelined requests and their answers in order on one connection", async () => {
    const socket = net.connect(server.httpPort, "127.0.0.1");
    const host = workspaceHost("demo", app.port);
    const request = (path: string, close = false) =>
      `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nX-Warren-Token: ${server.adminToken}\r\n${close ? "Connection: close\r\n" : ""}\r\n`;
    socket.write(request("/p/1") + request("/p/2") + request("/p/3", true));
    let text = "";
    socket.setEncoding("latin1").on("data", (c: string) => (text += c));
    await new Promise<void>((resolve) => socket.on("close", () => resolve()));
    const urls = [...text.matchAll(/"url":"(\/p\/\d)"/g)].map((m) => m[1]);
    expect(urls).toEqual(["/p/1", "/p/2", "/p/3"]);
    expect(text.match(/HTTP\/1.1 200 OK\r\n/g)).toHaveLength(3);
  });

  it("keeps serving the root domain API and health", async () => {
    const res = await httpRequest({ port: server.httpPort, host: "warren.localhost", path: "/healthz" });
    expect(res.status).toBe(200);
    const unknownPath = await httpRequest({ port: server.httpPort, host: "warren.localhost", path: "/nope" });
    expect(unknownPath.status).toBe(404);
  });
});

// A pooled app connection may have been closed by the app just as a client's request goes out
// on it: a request without a body goes again on a fresh connection; one with a body is not
// sent twice.
describe("kept-alive app connections shared between client connections (fast path)", () => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let rude: net.Server;
  let rudePort: number;
  let rudeConnections = 0;
  let rudeTwice: net.Server;
  let rudeTwicePort: number;
  let polite: net.Server;
  let politePort: number;
  let politeConnections = 0;

  beforeAll(async () => {
    // Answers the first requests of each connection (each answer names its connection and
    // path), keeps it open without a word, and drops it when one more request comes: the worst
    // timing a kept-alive connection can have.
    const rudeApp = (answers: number) =>
      net.createServer((socket) => {
        const id = ++rudeConnections;
        let answered = 0;
        socket.on("data", (data: Buffer) => {
          if (answered++ >= answers) {
            socket.destroy();
            return;
          }
          const path = /^\w+ (\S+)/.exec(data.toString("latin1"))?.[1] ?? "?";
          const body = `connection ${id} ${path}`;
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        });
        socket.on("error", () => {});
      });
    rude = rudeApp(1);
    rudeTwice = rudeApp(2);
    rudeTwicePort = await listen(rudeTwice);
    rudePort = await listen(rude);
    // Closes each connection 100 ms after its answer, as an app's keep-alive timeout does.
    polite = net.createServer((socket) => {
      politeConnections++;
      socket.once("data", () => {
        socket.write("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\npolite");
        setTimeout(() => socket.end(), 100);
      });
      socket.on("error", () => {});
    });
    politePort = await listen(polite);

    server = await startServer({ WARREN_UPSTREAM_TIMEOUT: "3s" });
    const ws = await createWorkspace(server, "pool", [rudePort, politePort, rudeTwicePort]);
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    for (const app of [rude, rudeTwice, polite]) await new Promise<void>((resolve) => app.close(() => resolve()));
  });

  const once = (port: number, init: { method?: string; body?: string } = {}) =>
    httpRequest({
      port: server.httpPort,
      host: workspaceHost("pool", port),
      method: init.method ?? "GET",
      path: "/",
      headers: { "x-warren-token": server.adminToken, connection: "close" },
      ...(init.body === undefined ? {} : { body: init.body }),
      agent: new http.Agent({ keepAlive: false }),
    });

  it("sends a bodiless request again on a fresh app connection when the pooled one was dropped", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const res = await once(rudePort);
      expect(res.status).toBe(200);
      seen.add(res.body.toString());
    }
    // Every request ended on a connection of its own: the dropped ones were retried.
    expect(seen.size).toBe(5);
  });

  it("never sends a request body twice: a POST on a dropped pooled connection gets 502", async () => {
    expect((await once(rudePort)).status).toBe(200);
    const before = rudeConnections;
    const res = await once(rudePort, { method: "POST", body: "pay once" });
    expect(res.status).toBe(502);
    expect(res.body.toString()).toMatch(/connection to port \d+ of workspace "pool" failed/);
    expect(rudeConnections).toBe(before);
    // And the next request is served.
    expect((await once(rudePort)).status).toBe(200);
  });

  it("sends a later idempotent request on a dropped app connection again too (the one retry rule of both client sides), never answering it with another request's answer", async () => {
    // This app answers two requests per connection, then drops it.
    expect((await once(rudeTwicePort)).status).toBe(200); // leaves a pooled app connection
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (path: string) =>
      httpRequest({ port: server.httpPort, host: workspaceHost("pool", rudeTwicePort), path, headers: { "x-warren-token": server.adminToken }, agent: keepAlive });
    // The first request of this client rides the pooled connection, which answers it.
    const a = await get("/a");
    expect(a.status).toBe(200);
    expect(a.body.toString()).toMatch(/ \/a$/);
    // The second is dropped by the app: it goes again, once, on a fresh connection, and is
    // answered for itself, never with a replay of /a.
    const b = await get("/b");
    expect(b.status).toBe(200);
    expect(b.body.toString()).toMatch(/ \/b$/);
    keepAlive.destroy();
  });

  it("lets go of pooled connections the app closed while idle", async () => {
    expect((await once(politePort)).body.toString()).toBe("polite");
    await new Promise((r) => setTimeout(r, 400)); // past the app's keep-alive timeout
    expect((await once(politePort)).body.toString()).toBe("polite");
    expect(politeConnections).toBe(2);
  });
});


import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "./harness/apps.js";
import { callApi, createWorkspace, eventually, httpRequest, ROOT_DOMAIN, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";
import { exchange, statuses } from "./harness/raw-http.js";


/** Regressions of issue 12 on the HTTP front door: framing, routing and cookies, both paths. */
describe.each([
  ["spliced fast path", "true"],
  ["node HTTP client", "false"],
])("HTTP framing and routing (%s)", (_mode, fastPath) => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let app: App;
  const seen: http.IncomingMessage[] = [];
  const host = () => workspaceHost("framing", app.port);
  const token = () => server.adminToken;

  beforeAll(async () => {
    app = await startApp((req, res) => {
      seen.push(req);
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/hinted") {
        // 103 Early Hints, then the final answer a little later.
        res.writeEarlyHints({ link: "</style.css>; rel=preload; as=style" });
        setTimeout(() => res.end(`final for ${url.searchParams.get("who")}`), Number(url.searchParams.get("delay") ?? "50"));
        return;
      }
      if (url.pathname === "/cookies") {
        res.setHeader("set-cookie", ["a=1; Domain=warren.localhost; Path=/", "b=2; path=/; domain=.warren.localhost; HttpOnly", "c=3"]);
        res.end("cookies");
        return;
      }
      if (url.pathname === "/no-upgrade") {
        res.statusCode = 426;
        res.end("this app speaks no other protocol");
        return;
      }
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ url: req.url, headers: req.headers, who: url.searchParams.get("who") }));
    });
    server = await startServer({ WARREN_HTTP_FAST_PATH: fastPath });
    const ws = await createWorkspace(server, "framing", [app.port]);
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  it("passes 103 Early Hints through, then the final answer (a 1xx used to end the request)", async () => {
    const text = await exchange(
      server.httpPort,
      `GET /hinted?who=me HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\n\r\nGET /json HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\nConnection: close\r\n\r\n`,
    );
    expect(statuses(text)).toEqual([103, 200, 200]);
    expect(text).toMatch(/^HTTP\/1\.1 103 Early Hints\r\n[^]*link: <\/style\.css>; rel=preload; as=style\r\n/i);
    expect(text).toContain("final for me");
    expect(text).toContain('"url":"/json"');
  });

  it("never gives the next client the answer owed to one who left right after the 103 (the app connection went back to the pool)", async () => {
    for (let i = 0; i < 3; i++) {
      // A leaves as soon as it has the 103; the app answers A a little later.
      const left = await exchange(
        server.httpPort,
        `GET /hinted?who=A&delay=300 HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\n\r\n`,
        (t) => t.includes("\r\n\r\n"),
      );
      expect(statuses(left)).toEqual([103]);
      const res = await httpRequest({ port: server.httpPort, host: host(), path: `/json?who=B${i}`, headers: { "x-warren-token": token() } });
      expect(res.status).toBe(200);
      expect(res.body.toString()).not.toContain("final for A");
      expect(JSON.parse(res.body.toString()).who).toBe(`B${i}`);
    }
  });

  it("keeps app cookies to the workspace host: Domain is taken out of the app's Set-Cookie", async () => {
    const res = await httpRequest({ port: server.httpPort, host: host(), path: "/cookies", headers: { "x-warren-token": token() } });
    expect(res.status).toBe(200);
    expect(res.headers["set-cookie"]).toEqual(["a=1; Path=/", "b=2; path=/; HttpOnly", "c=3"]);
    // Split across reads too: the app's head arrives in pieces on a raw connection.
    const raw = await exchange(server.httpPort, `GET /cookies HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\nConnection: close\r\n\r\n`);
    expect(raw).not.toMatch(/domain=/i);
  });

  it("answers the first of two requests sent in one write, then 400 for the malformed second (it used to answer neither)", async () => {
    for (const [name, target, auth] of [
      ["workspace", host(), `X-Warren-Token: ${token()}\r\n`],
      ["root", ROOT_DOMAIN, ""],
    ] as const) {
      const text = await exchange(server.httpPort, `GET /healthz HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\nGET / HTTP/1.1\r\nHost: ${target}\r\nBad Header\r\n\r\n`);
      expect(statuses(text), name).toEqual([200, 400]);
    }
  });

  it("answers 431 to a head of many small headers over 32 KiB on the root domain and on workspace hosts (about 49 KB used to pass)", async () => {
    // 42 KB on the wire, but only 14 KB of names and values: what llhttp's own limit counts.
    const many = "x: y\r\n".repeat(7000);
    expect(many.length).toBeGreaterThan(40_000);
    for (const target of [ROOT_DOMAIN, host()]) {
      const text = await exchange(server.httpPort, `GET /healthz HTTP/1.1\r\nHost: ${target}\r\nX-Warren-Token: ${token()}\r\n${many}\r\n`);
      expect(statuses(text), target).toEqual([431]);
    }
    // Just under the limit still passes.
    const under = "x: y\r\n".repeat(3000);
    const ok = await exchange(server.httpPort, `GET /healthz HTTP/1.1\r\nHost: ${ROOT_DOMAIN}\r\nConnection: close\r\n${under}\r\n`);
    expect(statuses(ok)).toEqual([200]);
  });

  it("keeps the Host header when the client names it in Connection (Connection: host), and Content-Length too", async () => {
    const text = await exchange(
      server.httpPort,
      `POST /json HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\nConnection: host, content-length\r\nContent-Length: 5\r\n\r\nhello` +
        `GET /json?who=second HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\nConnection: close\r\n\r\n`,
    );
    expect(statuses(text)).toEqual([200, 200]);
    const bodies = text
      .split(/HTTP\/1\.1 \d{3} /)
      .slice(1)
      .map((r) => JSON.parse(r.slice(r.indexOf("\r\n\r\n") + 4)) as { url: string; headers: http.IncomingHttpHeaders });
    expect(bodies[0]!.headers.host).toBe(host());
    expect(bodies[0]!.headers["content-length"]).toBe("5");
    expect(bodies[1]!.url).toBe("/json?who=second");
  });

  it("routes /./.warren/logout and absolute-form targets to Warren on every path, never to the app", async () => {
    const before = seen.length;
    for (const target of ["/./.warren/logout", "/x/../.warren/logout", "/%2e/.warren/logout", `http://${host()}/.warren/logout`]) {
      const text = await exchange(server.httpPort, `GET ${target} HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\nConnection: close\r\n\r\n`);
      expect(statuses(text), target).toEqual([303]);
      expect(text, target).toMatch(/\r\nLocation: http:\/\/warren\.localhost:\d+\/-\/logout\r\n/i);
    }
    // As a later request on a kept-alive connection (the fast path's own decision), too.
    const later = await exchange(
      server.httpPort,
      `GET /json HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\n\r\nGET /./.warren/logout HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\nConnection: close\r\n\r\n`,
    );
    expect(statuses(later)[0]).toBe(200);
    expect(seen.slice(before).map((r) => r.url)).toEqual(["/json"]);
    // An absolute-form target naming another host than Host is refused.
    const other = await exchange(server.httpPort, `GET http://${workspaceHost("other", app.port)}/ HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\n\r\n`);
    expect(statuses(other)).toEqual([400]);
    // The origin-form of an absolute-form target reaches the app.
    const absolute = await exchange(server.httpPort, `GET http://${host()}/json?q=1 HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\nConnection: close\r\n\r\n`);
    expect(absolute).toContain('"url":"/json?q=1"');
  });

  it("takes a connection back to HTTP after the app declines an upgrade (non-101): later requests are parsed, authorized and rewritten", async () => {
    const before = seen.length;
    const text = await exchange(
      server.httpPort,
      `GET /no-upgrade HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n` +
        `GET /json?who=after HTTP/1.1\r\nHost: ${host()}\r\nX-Warren-Token: ${token()}\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n` +
        `GET /json?who=anonymous HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n\r\n`,
    );
    expect(statuses(text)).toEqual([426, 200, 401]);
    const after = seen.slice(before).find((r) => r.url === "/json?who=after");
    expect(after).toBeDefined();
    expect(after!.headers["x-warren-token"]).toBeUndefined();
    expect(after!.headers["x-forwarded-for"]).toBe("10.9.9.9, 127.0.0.1");
    expect(seen.slice(before).some((r) => r.url === "/json?who=anonymous")).toBe(false);
  });

  it("does not take a Host of only hex digits (cafe) for an IP literal: it does not reach the root domain", async () => {
    const res = await httpRequest({ port: server.httpPort, host: "cafe", path: "/healthz" });
    expect(res.status).toBe(404);
    expect((await httpRequest({ port: server.httpPort, host: "127.0.0.1", path: "/healthz" })).status).toBe(200);
  });
});

describe("workspace names and the DNS label limit", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startServer();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("refuses new workspace names of 58-63 characters, whose {port}-{name} would not fit a 63-octet DNS label", async () => {
    for (const n of [58, 63]) {
      const res = await callApi<{ code: string; message: string }>(server, "WorkspaceService/CreateWorkspace", { name: "a".repeat(n), ports: [{ port: 80 }] });
      expect(res.status, String(n)).toBe(400);
      expect(res.body.code).toBe("invalid_argument");
      expect(res.body.message).toMatch(/at most 57 characters/);
    }
    const ok = await callApi(server, "WorkspaceService/CreateWorkspace", { name: "a".repeat(57), ports: [{ port: 65535 }] });
    expect(ok.status).toBe(200);
    await eventually(async () => (await callApi(server, "WorkspaceService/GetWorkspace", { name: "a".repeat(57) })).status === 200);
  });
});

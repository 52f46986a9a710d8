import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { openSync, readFileSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "./harness/apps.js";
import { launchChromium } from "./harness/chromium.js";
import { cliHome, spawnCli } from "./harness/cli.js";
import { createTestCa, type TestCa } from "./harness/test-ca.js";
import { callApi, createWorkspace, eventually, httpRequest, ROOT_DOMAIN, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

const MIB = 1024 * 1024;
/** Big enough to take many HTTP/2 windows and frames each way; small enough for 2 loaded cores. */
const BLOB_BYTES = 24 * MIB;

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

interface CurlResult {
  readonly version: string;
  readonly status: number;
  readonly headers: Array<[string, string]>;
  readonly body: Buffer;
}

/**
 * HTTP/2 (or what `args` ask for) over TLS with curl, to the server's port under the name of
 * `host`; never synchronous (the test app runs in this process).
 */
function curl(dir: string, port: number, ca: string, url: string, args: string[] = [], stdinFile?: string): Promise<CurlResult> {
  const headerFile = join(dir, `headers-${randomBytes(4).toString("hex")}`);
  const bodyFile = join(dir, `body-${randomBytes(4).toString("hex")}`);
  const host = new URL(url).hostname;
  return new Promise((resolve, reject) => {
    const child = spawn(
      "curl",
      ["-sS", "--cacert", ca, "--resolve", `${host}:${port}:127.0.0.1`, "-D", headerFile, "-o", bodyFile, "-w", "%{http_version}", ...args, url],
      { stdio: [stdinFile ? openSync(stdinFile, "r") : "ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    child.on("close", (code) => {
      if (code !== 0) {
        reject(new Error(`curl exited with ${code}: ${err}`));
        return;
      }
      const lines = readFileSync(headerFile, "latin1").split("\r\n").filter(Boolean);
      const status = Number(lines[0]!.split(" ")[1]);
      const headers = lines.slice(1).map((l): [string, string] => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]);
      resolve({ version: out.trim(), status, headers, body: readFileSync(bodyFile) });
    });
  });
}

/** The protocol the page itself was loaded over ("h2", "http/1.1"), as the browser reports it. */
const NEXT_HOP_PROTOCOL = 'performance.getEntriesByType("navigation")[0].nextHopProtocol';

const header = (r: CurlResult, name: string) => r.headers.filter(([n]) => n === name).map(([, v]) => v);

/** Browsers over HTTP/2 on the TLS listener: workspaces, their WebSockets, login and the dashboard. */
describe("HTTP/2 for browsers (TLS, ALPN h2)", () => {
  let ca: TestCa;
  let app: App;
  let server: ServerHandle;
  let agent: AgentHandle;
  let dir: string;
  const blob = randomBytes(BLOB_BYTES);
  const name = "h2";
  let host = "";
  let origin = "";

  beforeAll(async () => {
    ca = createTestCa();
    dir = tempDir("warren-h2-");
    const cert = ca.issue("warren", [ROOT_DOMAIN, `*.${ROOT_DOMAIN}`, "127.0.0.1"]);
    app = await startApp(
      (req, res) => {
        if (req.url === "/headers") {
          res.setHeader("set-cookie", [`app=1; Domain=${ROOT_DOMAIN}; Path=/`, "plain=2; Path=/"]);
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify(req.headers));
        } else if (req.url === "/blob") {
          res.setHeader("content-type", "application/octet-stream");
          res.end(blob);
        } else if (req.url === "/upload") {
          const hash = createHash("sha256");
          let bytes = 0;
          req.on("data", (c: Buffer) => {
            hash.update(c);
            bytes += c.length;
          });
          req.on("end", () => res.end(JSON.stringify({ method: req.method, sha256: hash.digest("hex"), bytes })));
        } else if (req.url === "/ws-page") {
          res.setHeader("content-type", "text/html");
          res.end(`<!doctype html><title>ws</title><p id="out">waiting</p><script>
            const got = [];
            const ws = new WebSocket("wss://" + location.host + "/");
            ws.onmessage = (e) => { got.push(e.data); if (got.length === 1) ws.send("echo from the page"); else document.getElementById("out").textContent = got.join(" | "); };
            ws.onerror = () => { document.getElementById("out").textContent = "websocket error"; };
          </script>`);
        } else if (req.url === "/hold") {
          // An answer that never ends: a long-lived stream.
          res.write("started");
        } else res.end("ok");
      },
      { webSocketEcho: true },
    );
    server = await startServer({ WARREN_TLS_CERT: cert.certFile, WARREN_TLS_KEY: cert.keyFile, WARREN_AGENT_ADDR: "off" }, [], ca.ca);
    const ws = await createWorkspace(server, name, [app.port]);
    agent = await startAgent({ agentUrl: `https://127.0.0.1:${server.httpPort}` }, ws.agentToken, { env: { WARREN_CA_FILE: ca.caFile } });
    host = workspaceHost(name, app.port);
    origin = `https://${host}:${server.httpPort}`;
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  it("an HTTP/2 connection opened with an access token closes when the token is revoked (issue 12 leases over h2)", async () => {
    expect((await callApi(server, "UserService/CreateUser", { name: "hana" })).status).toBe(200);
    const token = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "hana", ttlSeconds: 3600 })).body.token;
    const ws = await createWorkspace(server, "h2-hana", [app.port], {}, token);
    const hers = await startAgent({ agentUrl: `https://127.0.0.1:${server.httpPort}` }, ws.agentToken, { env: { WARREN_CA_FILE: ca.caFile } });
    try {
      const hanaHost = workspaceHost("h2-hana", app.port);
      const session = http2.connect(`https://127.0.0.1:${server.httpPort}`, { ca: readFileSync(ca.caFile), servername: hanaHost });
      session.on("error", () => {});
      const stream = session.request({ ":path": "/hold", ":authority": `${hanaHost}:${server.httpPort}`, "x-warren-token": token });
      stream.on("error", () => {});
      const first = await new Promise<string>((resolve) => stream.once("data", (c: Buffer) => resolve(c.toString())));
      expect(first).toBe("started");
      let closed = false;
      stream.once("close", () => (closed = true));
      expect((await callApi(server, "UserService/RevokeAccessToken", { token })).status).toBe(200);
      await eventually(() => closed, 3000, "the held HTTP/2 stream to close after the revocation");
      session.destroy();
    } finally {
      await hers.stop();
    }
  });

  it("proxies a workspace request over HTTP/2 with the same header hygiene as HTTP/1.1", async () => {
    const args = ["--http2", "-H", `x-warren-token: ${server.adminToken}`, "-H", "x-forwarded-for: 203.0.113.7", "-H", "cookie: warren_session=secret-session; mine=kept"];
    const h2 = await curl(dir, server.httpPort, ca.caFile, `${origin}/headers`, args);
    expect(h2.version).toBe("2");
    expect(h2.status).toBe(200);
    const seen = JSON.parse(h2.body.toString()) as Record<string, string>;
    // Warren's credentials never reach the app; everything else does, with the forwarding headers.
    expect(seen["x-warren-token"]).toBeUndefined();
    expect(seen["cookie"]).toBe("mine=kept");
    expect(seen["x-forwarded-for"]).toBe("203.0.113.7, 127.0.0.1");
    expect(seen["x-forwarded-proto"]).toBe("https");
    expect(seen["x-forwarded-host"]).toBe(`${host}:${server.httpPort}`);
    expect(seen["host"]).toBe(`${host}:${server.httpPort}`);
    // The app's cookies stay on the workspace host.
    expect(header(h2, "set-cookie")).toEqual(["app=1; Path=/", "plain=2; Path=/"]);
    // HTTP/1.1 on the same port answers the same.
    const h1 = await curl(dir, server.httpPort, ca.caFile, `${origin}/headers`, ["--http1.1", ...args.slice(1)]);
    expect(h1.version).toBe("1.1");
    // (Connection is the app connection's own: node's HTTP client says keep-alive, the spliced path passes none.)
    const { connection: _h1, ...h1Seen } = JSON.parse(h1.body.toString()) as Record<string, string>;
    const { connection: _h2, ...h2Seen } = seen;
    expect(h1Seen).toEqual(h2Seen);
    expect(header(h1, "set-cookie")).toEqual(header(h2, "set-cookie"));
  });

  it("streams both ways over HTTP/2: a large download and uploads with and without a length, checksums intact", async () => {
    const token = ["-H", `x-warren-token: ${server.adminToken}`];
    const down = await curl(dir, server.httpPort, ca.caFile, `${origin}/blob`, ["--http2", ...token]);
    expect(down.version).toBe("2");
    expect(down.body.length).toBe(BLOB_BYTES);
    expect(sha256(down.body)).toBe(sha256(blob));

    const file = join(dir, "upload.bin");
    const upload = randomBytes(BLOB_BYTES);
    writeFileSync(file, upload);
    const sized = await curl(dir, server.httpPort, ca.caFile, `${origin}/upload`, ["--http2", ...token, "--data-binary", `@${file}`, "-H", "content-type: application/octet-stream"]);
    expect(sized.version).toBe("2");
    expect(JSON.parse(sized.body.toString())).toEqual({ method: "POST", sha256: sha256(upload), bytes: BLOB_BYTES });
    // From a pipe: no content-length; the app gets it chunked over HTTP/1.1.
    const streamed = await curl(dir, server.httpPort, ca.caFile, `${origin}/upload`, ["--http2", ...token, "-T", "-"], file);
    expect(streamed.version).toBe("2");
    expect(JSON.parse(streamed.body.toString())).toEqual({ method: "PUT", sha256: sha256(upload), bytes: BLOB_BYTES });
  });

  it("answers errors and login redirects over HTTP/2 as over HTTP/1.1", async () => {
    for (const version of ["--http2", "--http1.1"]) {
      // A browser without a session is sent to the login page on the root domain.
      const redirect = await curl(dir, server.httpPort, ca.caFile, `${origin}/page?x=1`, [version, "-H", "accept: text/html"]);
      expect(redirect.status, version).toBe(302);
      const location = new URL(header(redirect, "location")[0]!);
      expect(location.origin).toBe(`https://${ROOT_DOMAIN}:${server.httpPort}`);
      expect(location.pathname).toBe("/-/login");
      // A script gets 401 with Warren's error code; an unknown workspace 404.
      const refused = await curl(dir, server.httpPort, ca.caFile, `${origin}/`, [version]);
      expect(refused.status, version).toBe(401);
      expect(header(refused, "x-warren-error")).toEqual(["unauthenticated"]);
      const unknown = await curl(dir, server.httpPort, ca.caFile, `https://80-nowhere.${ROOT_DOMAIN}:${server.httpPort}/`, [version, "-H", `x-warren-token: ${server.adminToken}`]);
      expect(unknown.status, version).toBe(404);
      expect(unknown.body.toString()).toContain("nowhere");
    }
  });

  it("headless Chromium: logs in, loads the dashboard and a workspace page over h2, whose WebSocket works", async () => {
    const chromium = await launchChromium();
    try {
      const context = await chromium.context({ ignoreHTTPSErrors: true });
      const page = await context.newPage();
      await page.goto(`${origin}/ws-page`);
      // Not logged in: the login page on the root domain, over HTTP/2.
      expect(new URL(page.url()).pathname).toBe("/-/login");
      expect(await page.evaluate(NEXT_HOP_PROTOCOL)).toBe("h2");
      await page.getByLabel("Access token").fill(server.adminToken);
      await Promise.all([page.waitForURL(`${origin}/ws-page`), page.getByRole("button", { name: "Log in" }).click()]);
      expect(await page.evaluate(NEXT_HOP_PROTOCOL)).toBe("h2");
      // The WebSocket: Warren does not offer RFC 8441, so Chromium opens it over HTTP/1.1.
      await page.locator("#out").filter({ hasText: "|" }).waitFor({ timeout: 15_000 });
      expect(await page.locator("#out").textContent()).toBe(`${JSON.stringify({ hello: `${host}:${server.httpPort}` })} | echo from the page`);
      // The dashboard on the root domain, over HTTP/2 too.
      await page.goto(`https://${ROOT_DOMAIN}:${server.httpPort}/`);
      await page.getByRole("heading", { name: "Workspaces", level: 1 }).waitFor();
      expect(await page.evaluate(NEXT_HOP_PROTOCOL)).toBe("h2");
    } finally {
      await chromium.close();
    }
  });

  it("warren port-forward (a WebSocket on the root domain) works through the TLS listener", async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", () => resolve()));
    const echoPort = (echo.address() as net.AddressInfo).port;
    const forwarded = await createWorkspace(server, "h2forward", [echoPort]);
    const forwardAgent = await startAgent({ agentUrl: `https://127.0.0.1:${server.httpPort}` }, forwarded.agentToken, { env: { WARREN_CA_FILE: ca.caFile } });
    const home = cliHome();
    const child = spawnCli(home, ["port-forward", "h2forward", "--tcp", `0:${echoPort}`, "--server", `https://127.0.0.1:${server.httpPort}`, "--token", server.adminToken], {
      NODE_EXTRA_CA_CERTS: ca.caFile,
    });
    try {
      let local = 0;
      await eventually(() => {
        const line = child.output().split("\n").find((l) => l.startsWith("Forwarding "));
        if (line) local = Number(/:(\d+) -> /.exec(line)![1]);
        if (child.exitCode !== null) throw new Error(child.output());
        return local > 0;
      }, 15_000, "port-forward to start");
      const payload = randomBytes(256 * 1024);
      const back = await new Promise<Buffer>((resolve, reject) => {
        const socket = net.connect(local, "127.0.0.1");
        const chunks: Buffer[] = [];
        let got = 0;
        socket.on("data", (c: Buffer) => {
          chunks.push(c);
          got += c.length;
          if (got >= payload.length) {
            socket.end();
            resolve(Buffer.concat(chunks));
          }
        });
        socket.on("error", reject);
        socket.write(payload);
      });
      expect(sha256(back)).toBe(sha256(payload));
    } finally {
      child.kill();
      await forwardAgent.stop();
      echo.close();
    }
  });

  it("a plain HTTP/1.1 client on the TLS port still gets HTTP/1.1", async () => {
    const res = await httpRequest({ port: server.httpPort, host, path: "/", headers: { "x-warren-token": server.adminToken }, ca: ca.ca });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("ok");
  });
});

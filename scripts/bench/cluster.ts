import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchNodeFlags } from "./processes.js";
import type { BenchContext, BenchRow, BenchSection } from "./report.js";

/**
 * The cross-server path of a cluster: the same small-response app reached through the server
 * that holds its agent, and through another server that forwards over the private API, in
 * one run, with wrk (64 keep-alive connections).
 */

const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";
const CLUSTER_SECRET = "bench-cluster-secret-0123456789abcdef";
const CONNECTIONS = 64;

interface WrkResult {
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
}

export async function benchCluster(ctx: BenchContext): Promise<BenchSection> {
  ensureWrk(ctx);
  const durationS = ctx.quick ? 3 : 10;
  const children: ChildProcess[] = [];
  const app = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-length": "3" });
    res.end("ok\n");
  });
  try {
    const appPort = await listen(app);
    const redisPort = await freePort();
    const redisDir = mkdtempSync(join(tmpdir(), "warren-bench-redis-"));
    children.push(
      spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", redisDir], { stdio: "ignore" }),
    );
    await waitForPort(redisPort);
    const serverEnv = (id: string) => ({
      ...process.env,
      WARREN_HTTP_ADDR: "127.0.0.1:0",
      WARREN_AGENT_ADDR: "127.0.0.1:0",
      WARREN_OBSERVABILITY_ADDR: "127.0.0.1:0",
      WARREN_PRIVATE_ADDR: "127.0.0.1:0",
      // Benchmarks never take the default ports, nor wait for a load balancer when they stop.
      WARREN_SSH_ADDR: "off",
      WARREN_DRAIN_DELAY: "0s",
      WARREN_ADMIN_TOKEN: ADMIN_TOKEN,
      WARREN_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      WARREN_CLUSTER_SECRET: CLUSTER_SECRET,
      WARREN_SERVER_ID: id,
      WARREN_LOG_LEVEL: "info",
    });
    const [holding, other] = await Promise.all(
      ["holding", "other"].map(async (id) => {
        const child = spawn(process.execPath, [...benchNodeFlags("server"), `${ctx.root}dist/warren-server.cjs`], { env: serverEnv(id), stdio: ["ignore", "pipe", "inherit"] });
        children.push(child);
        return readyPorts(child);
      }),
    );
    const created = await createWorkspace(holding!.http, "bench", appPort);
    const agent = spawn(process.execPath, [...benchNodeFlags("agent"), `${ctx.root}dist/warren-agent.cjs`], {
      env: { ...process.env, WARREN_SERVER: `http://127.0.0.1:${holding!.agent}`, WARREN_TOKEN: created.agentToken, WARREN_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(agent);
    await waitForLine(agent, (l) => l["event"] === "ready", "agent ready");
    const host = `${appPort}-bench.warren.localhost`;
    const url = (port: number) => `http://127.0.0.1:${port}/`;
    // Both paths answer before measuring (presence is written a few ms after the agent's welcome).
    for (const port of [holding!.http, other!.http]) await waitForOk(port, host);

    ctx.log(`cluster: wrk ${CONNECTIONS} connections, ${durationS}s per path`);
    const results: Record<string, WrkResult> = {};
    for (const [name, port] of [
      ["holding server", holding!.http],
      ["other server", other!.http],
    ] as const) {
      await wrk(url(port), host, 1); // warm-up
      results[name] = await wrk(url(port), host, durationS);
      ctx.log(`cluster: ${name}: ${Math.round(results[name]!.requestsPerSecond)} req/s, p50 ${results[name]!.p50Ms} ms, p99 ${results[name]!.p99Ms} ms`);
    }
    const values = (pick: (r: WrkResult) => number) => Object.fromEntries(Object.entries(results).map(([k, r]) => [k, round(pick(r))]));
    const ratios = [["other server", "holding server"]] as const;
    const rows: BenchRow[] = [
      { figure: `HTTP requests/s (${CONNECTIONS} keep-alive connections, 3-byte response)`, unit: "req/s", values: values((r) => r.requestsPerSecond), ratios, higherIsBetter: true },
      { figure: "HTTP latency p50", unit: "ms", values: values((r) => r.p50Ms), ratios, higherIsBetter: false },
      { figure: "HTTP latency p99", unit: "ms", values: values((r) => r.p99Ms), ratios, higherIsBetter: false },
    ];
    const errors = Object.entries(results).filter(([, r]) => r.errors > 0);
    return {
      title: "Cluster: request on the server holding the agent vs forwarded from another server",
      rows,
      notes: [
        "Two warren-servers and one Redis on this machine; the agent is connected to the holding server. The other server forwards each new connection over the private API (pooled HTTP/2 session), and keeps it alive like a local one.",
        `wrk -t2 -c${CONNECTIONS} -d${durationS}s --latency, after a 1 s warm-up per path; wrk, servers, agent and app share the machine's cores.`,
        ...errors.map(([name, r]) => `${name}: ${r.errors} non-2xx responses or socket errors`),
      ],
    };
  } finally {
    app.close();
    app.closeAllConnections();
    for (const child of children.reverse()) child.kill("SIGKILL");
  }
}

/** wrk is a Debian package: installed with apt-get when missing (as root, or through sudo). */
function ensureWrk(ctx: BenchContext): void {
  if (spawnSync("wrk", ["--version"]).error === undefined) return;
  ctx.log("cluster: installing wrk (Debian package)");
  const aptGet = (...args: string[]) => {
    const argv = process.getuid?.() === 0 ? ["apt-get", ...args] : ["sudo", "apt-get", ...args];
    return spawnSync(argv[0]!, argv.slice(1), { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } }).status === 0;
  };
  if (aptGet("install", "-y", "--no-install-recommends", "wrk")) return;
  if (aptGet("update") && aptGet("install", "-y", "--no-install-recommends", "wrk")) return;
  throw new Error("wrk is missing and could not be installed (apt-get install wrk)");
}

/** Runs wrk without blocking this process, which serves the app. */
async function wrk(url: string, host: string, durationS: number): Promise<WrkResult> {
  const child = spawn("wrk", ["-t2", `-c${CONNECTIONS}`, `-d${durationS}s`, "--latency", "-H", `Host: ${host}`, "-H", `X-Warren-Token: ${ADMIN_TOKEN}`, url], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  if (code !== 0) throw new Error(`wrk failed: ${err || out}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const percentile = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, "m").exec(out);
    if (!m) return NaN;
    const v = Number(m[1]);
    return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
  };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((n, v) => n + Number(v), 0) : 0);
  return { requestsPerSecond: rps, p50Ms: percentile("50"), p99Ms: percentile("99"), errors };
}

function round(v: number): number {
  return v >= 100 ? Math.round(v) : Math.round(v * 100) / 100;
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", () => resolve()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function waitForLine(child: ChildProcess, match: (line: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buffer = "";
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 20_000);
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const text = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        try {
          const line = JSON.parse(text) as Record<string, unknown>;
          if (match(line)) {
            clearTimeout(timer);
            resolve(line);
          }
        } catch {
          // Not a log line.
        }
      }
    });
    child.once("exit", () => reject(new Error(`process exited while waiting for ${what}`)));
  });
}

/** Ports of a server, from its "ready" log line (its stdout keeps being read, so the pipe never fills). */
async function readyPorts(child: ChildProcess): Promise<{ http: number; agent: number }> {
  const line = await waitForLine(child, (l) => l["msg"] === "warren server ready", "server ready");
  const port = (v: unknown) => Number(String(v).split(":").pop());
  return { http: port(line["http"]), agent: port(line["agent"]) };
}

async function createWorkspace(httpPort: number, name: string, port: number): Promise<{ agentToken: string }> {
  const body = JSON.stringify({ name, ports: [{ port }] });
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port: httpPort,
        method: "POST",
        path: "/warren.v1.WorkspaceService/CreateWorkspace",
        headers: { host: "warren.localhost", authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(text) as { agentToken: string }) : reject(new Error(`CreateWorkspace: ${res.statusCode} ${text}`))));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function waitForOk(port: number, host: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = http.request({ host: "127.0.0.1", port, headers: { host, "x-warren-token": ADMIN_TOKEN }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", () => resolve(0));
      req.end();
    });
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`http://${host} through port ${port} answers ${status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

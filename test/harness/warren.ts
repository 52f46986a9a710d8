import net from "node:net";
import http from "node:http";
import https from "node:https";
import { AGENT_BUNDLE, Proc, requireAgentBinary, requireBuilt, SERVER_BUNDLE } from "./processes.js";
import { tempDir } from "./temp-dirs.js";

export const ADMIN_TOKEN = "test-admin-token-0123456789abcdef";
export const ROOT_DOMAIN = "warren.localhost";

/** A clean environment: nothing WARREN_* leaks in from the machine running the tests. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("WARREN_")) env[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export interface ServerHandle {
  readonly proc: Proc;
  readonly httpPort: number;
  /** Address the HTTP listener is reachable at (127.0.0.1 unless WARREN_HTTP_ADDR says otherwise). */
  readonly httpHost: string;
  /** Port of the separate agent listener (0 when it is off). */
  readonly agentPort: number;
  readonly observabilityPort: number;
  /** Port of the SSH listener (0 when it is off). */
  readonly sshPort: number;
  readonly agentUrl: string;
  readonly adminToken: string;
  /** CA that verifies the server's certificate, when it serves TLS. */
  ca?: Buffer;
  stop(): Promise<void>;
}

function portOf(addr: unknown): number {
  return Number(String(addr).split(":").pop());
}

/** The address to connect to for a listener's "host:port" (all interfaces: loopback). */
function hostOf(addr: unknown): string {
  const host = String(addr).replace(/:\d+$/, "");
  return host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
}

/**
 * A fresh data directory (removed after the test file, see tempDir), so that servers never write
 * under $HOME and each server starts with an empty embedded store of its own. Tests that
 * restart a server on the same state pass the same WARREN_DATA_DIR again.
 */
export function testDataDir(): string {
  return tempDir("warren-data-");
}

/** Starts warren-server on free ports (port 0) and waits until it is ready; `node` runs the bundle. */
export async function startServer(
  env: Record<string, string | undefined> = {},
  args: string[] = [],
  ca?: Buffer,
  node: string = process.execPath,
): Promise<ServerHandle> {
  requireBuilt();
  const proc = new Proc(
    node,
    [SERVER_BUNDLE, ...args],
    cleanEnv({
      WARREN_HTTP_ADDR: "127.0.0.1:0",
      WARREN_AGENT_ADDR: "127.0.0.1:0",
      WARREN_OBSERVABILITY_ADDR: "127.0.0.1:0",
      WARREN_SSH_ADDR: "127.0.0.1:0",
      WARREN_DATA_DIR: testDataDir(),
      WARREN_ADMIN_TOKEN: ADMIN_TOKEN,
      WARREN_LOG_LEVEL: "debug",
      // Tests stop servers often; the drain delay exists for load balancers, which tests are not.
      WARREN_DRAIN_DELAY: "0s",
      ...env,
    }),
  );
  const ready = await proc.waitFor((l) => l.msg === "warren server ready", 15_000, "server ready");
  // Without a separate agent listener (WARREN_AGENT_ADDR=off), agents use the HTTP listener.
  const agentPort = ready["agent"] ? portOf(ready["agent"]) : 0;
  return {
    proc,
    httpPort: portOf(ready["http"]),
    httpHost: hostOf(ready["http"]),
    agentPort,
    observabilityPort: portOf(ready["observability"]),
    sshPort: ready["ssh"] ? portOf(ready["ssh"]) : 0,
    agentUrl: ready["agent"] ? `http://${hostOf(ready["agent"])}:${agentPort}` : `http://${hostOf(ready["http"])}:${portOf(ready["http"])}`,
    adminToken: env["WARREN_ADMIN_TOKEN"] ?? ADMIN_TOKEN,
    ca,
    stop: () => proc.stop(),
  };
}

export interface AgentHandle {
  readonly proc: Proc;
  stop(): Promise<void>;
}

/**
 * Starts warren-agent (the bundle on node, or with `binary: true` the single-file binary);
 * waits for its "ready" line unless told not to.
 */
export async function startAgent(
  server: { agentUrl: string },
  token: string,
  options: { env?: Record<string, string | undefined>; args?: string[]; waitReady?: boolean; binary?: boolean; node?: string } = {},
): Promise<AgentHandle> {
  requireBuilt();
  const [command, ...prefix] = options.binary ? [requireAgentBinary()] : [options.node ?? process.execPath, AGENT_BUNDLE];
  const proc = new Proc(
    command!,
    [...prefix, ...(options.args ?? [])],
    cleanEnv({ WARREN_SERVER: server.agentUrl, WARREN_TOKEN: token, WARREN_LOG_LEVEL: "debug", ...options.env }),
  );
  if (options.waitReady !== false) await proc.waitFor((l) => l["event"] === "ready", 15_000, "agent ready");
  return { proc, stop: () => proc.stop() };
}

export interface ApiResult<T = Record<string, unknown>> {
  readonly status: number;
  readonly body: T;
}

/** Calls a Connect method on the root domain with JSON, like curl would. */
export async function callApi<T = Record<string, unknown>>(
  server: ServerHandle,
  method: string,
  body: unknown,
  token: string | undefined = server.adminToken,
): Promise<ApiResult<T>> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token) headers["authorization"] = `Bearer ${token}`;
  const res = await httpRequest({
    port: server.httpPort,
    address: server.httpHost,
    host: ROOT_DOMAIN,
    method: "POST",
    path: `/warren.v1.${method}`,
    headers,
    body: JSON.stringify(body),
    ca: server.ca,
  });
  return { status: res.status, body: JSON.parse(res.body.toString("utf8") || "{}") as T };
}

export interface CreatedWorkspace {
  readonly name: string;
  /** The immutable workspace id (ws_...): presence records and dials are keyed by it. */
  readonly id: string;
  readonly agentToken: string;
  readonly urls: string[];
}

export async function createWorkspace(
  server: ServerHandle,
  name: string,
  ports: Array<number | { port: number; public?: boolean }>,
  extra: Record<string, unknown> = {},
  /** Whose workspace: the admin's unless a user's access token is given. */
  token: string = server.adminToken,
): Promise<CreatedWorkspace> {
  const res = await callApi<{ workspace: { name: string; id: string; urls: string[] }; agentToken: string }>(
    server,
    "WorkspaceService/CreateWorkspace",
    { name, ports: ports.map((p) => (typeof p === "number" ? { port: p } : p)), ...extra },
    token,
  );
  if (res.status !== 200) throw new Error(`CreateWorkspace failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { name, id: res.body.workspace.id, agentToken: res.body.agentToken, urls: res.body.workspace.urls };
}

export interface HttpResult {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One HTTP/1.1 request to 127.0.0.1:port (or address:port) with the given Host header. */
export function httpRequest(options: {
  port: number;
  address?: string;
  host: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  agent?: http.Agent | false;
  /** Speak HTTPS, verifying the server with this CA. */
  ca?: Buffer;
}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const request = options.ca ? https.request : http.request;
    const req = request(
      {
        host: options.address ?? "127.0.0.1",
        port: options.port,
        method: options.method ?? "GET",
        path: options.path ?? "/",
        headers: { host: options.host, ...options.headers },
        agent: options.agent ?? false,
        ...(options.ca ? { ca: options.ca, servername: options.host.split(":")[0] } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Host header of a workspace port. */
export function workspaceHost(workspace: string, port: number): string {
  return `${port}-${workspace}.${ROOT_DOMAIN}`;
}

/** Retries `fn` until it returns true or the time is up. */
export async function eventually(fn: () => Promise<boolean> | boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await fn()) return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ""}`);
}

/**
 * Upgrades a raw connection to the "count" protocol of a test app on a workspace port, sends
 * `bytes` bytes and half-closes; resolves with everything read until the connection closed.
 */
export async function upgradeAndCount(server: { httpPort: number; adminToken: string }, host: string, bytes: number): Promise<string> {
  const socket = net.connect(server.httpPort, "127.0.0.1");
  socket.write(`GET /count HTTP/1.1\r\nHost: ${host}\r\nX-Warren-Token: ${server.adminToken}\r\nConnection: Upgrade\r\nUpgrade: count\r\n\r\n`);
  let text = "";
  socket.setEncoding("utf8").on("data", (c: string) => {
    text += c;
    if (text.includes("\r\n\r\n") && !socket.writableEnded) {
      socket.write(Buffer.alloc(bytes, 1));
      socket.end();
    }
  });
  await new Promise<void>((resolve) => socket.on("close", () => resolve()));
  return text;
}

import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import http from "node:http";
import https from "node:https";
import { join } from "node:path";
import { BackgroundProcess, benchNodeFlags, freePort, run, waitForPort } from "./processes.js";

export interface Rival {
  readonly name: string;
  /** Base URL that wrk and curl connect to. */
  readonly url: string;
  /** Headers every request needs (Host, credentials). */
  readonly headers: Record<string, string>;
  stop(): Promise<void>;
}

export const ADMIN_TOKEN = "bench-admin-token-0123456789";

/** The app itself, reached directly. */
export async function startApp(root: string): Promise<{ port: number; proc: BackgroundProcess }> {
  const port = await freePort();
  const proc = new BackgroundProcess(process.execPath, [`${root}dist/bench.cjs`, "--app", String(port)]);
  await proc.waitFor(/bench app listening/);
  return { port, proc };
}

export interface WarrenRival extends Rival {
  readonly server: BackgroundProcess;
  readonly agent: BackgroundProcess;
  readonly httpPort: number;
  readonly sshPort: number;
}

/** A Warren server and agent on this machine, the app's port exposed through the tunnel. */
export async function startWarren(
  root: string,
  appPort: number,
  env: Record<string, string> = {},
  workspace: Record<string, unknown> = {},
): Promise<WarrenRival> {
  const [httpPort, agentPort, obsPort, sshPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const server = new BackgroundProcess(process.execPath, [...benchNodeFlags("server"), `${root}dist/warren-server.cjs`], {
    ...process.env,
    WARREN_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    WARREN_AGENT_ADDR: `127.0.0.1:${agentPort}`,
    WARREN_OBSERVABILITY_ADDR: `127.0.0.1:${obsPort}`,
    WARREN_SSH_ADDR: `127.0.0.1:${sshPort}`,
    // Benchmarks do not wait for a load balancer when they stop.
    WARREN_DRAIN_DELAY: "0s",
    WARREN_DATA_DIR: mkdtempSync(join(tmpdir(), "warren-bench-data-")),
    WARREN_ADMIN_TOKEN: ADMIN_TOKEN,
    WARREN_LOG_LEVEL: "info",
    ...env,
  });
  await server.waitFor(/warren server ready/);
  await new Promise((r) => setTimeout(r, 200));
  // With TLS (a self-signed certificate for the bench): the agent trusts that certificate.
  const tlsCert = env["WARREN_TLS_CERT"];
  const scheme = tlsCert ? "https" : "http";
  const created = await postJson(`${scheme}://127.0.0.1:${httpPort}/warren.v1.WorkspaceService/CreateWorkspace`, { name: "bench", ports: [{ port: appPort }], ...workspace });
  if (created.status !== 200) throw new Error(`CreateWorkspace: ${created.status} ${created.body}`);
  const { agentToken } = JSON.parse(created.body) as { agentToken: string };
  const agent = new BackgroundProcess(process.execPath, [...benchNodeFlags("agent"), `${root}dist/warren-agent.cjs`], {
    ...process.env,
    WARREN_SERVER: `${scheme}://127.0.0.1:${agentPort}`,
    WARREN_TOKEN: agentToken,
    WARREN_LOG_LEVEL: "info",
    ...(tlsCert ? { WARREN_CA_FILE: tlsCert } : {}),
  });
  await agent.waitFor(/"event":"ready"/);
  return {
    name: "warren",
    url: `http://127.0.0.1:${httpPort}`,
    headers: { Host: `${appPort}-bench.warren.localhost`, "X-Warren-Token": ADMIN_TOKEN },
    server,
    agent,
    httpPort,
    sshPort,
    stop: async () => {
      await agent.stop();
      await server.stop();
    },
  };
}

/** POSTs JSON to the root domain's API with the admin token (https: the bench's own self-signed certificate). */
function postJson(url: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const request = u.protocol === "https:" ? https.request : http.request;
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
        rejectUnauthorized: false,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

/**
 * OpenSSH's reverse tunnel: a throwaway sshd on a free port, and `ssh -R` from "the
 * workspace" forwarding a port of the sshd host to the app.
 */
export async function startSshReverse(appPort: number): Promise<Rival> {
  const dir = mkdtempSync(join(tmpdir(), "warren-bench-ssh-"));
  const { sshd, sshdPort } = await startThrowawaySshd(dir, ["GatewayPorts no"]);
  const forwardPort = await freePort();
  const user = process.env["USER"] ?? "root";
  const ssh = new BackgroundProcess("ssh", [
    "-N",
    "-v",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "ExitOnForwardFailure=yes",
    "-o", "BatchMode=yes",
    "-i", join(dir, "client_key"),
    "-p", String(sshdPort),
    "-R", `127.0.0.1:${forwardPort}:127.0.0.1:${appPort}`,
    `${user}@127.0.0.1`,
  ]);
  await ssh.waitFor(/remote forward success|All remote forwarding requests processed|Entering interactive session/);
  return {
    name: "ssh -R",
    url: `http://127.0.0.1:${forwardPort}`,
    headers: {},
    stop: async () => {
      await ssh.stop();
      await sshd.stop();
    },
  };
}

/**
 * A throwaway sshd on a free loopback port that lets in the key pair it writes to
 * `dir/client_key`, with TCP forwarding on (the OpenSSH rival of the benchmarks).
 */
export async function startThrowawaySshd(dir: string, extraConfig: readonly string[] = []): Promise<{ sshd: BackgroundProcess; sshdPort: number }> {
  run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "host_key")]);
  run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "client_key")]);
  const sshdPort = await freePort();
  writeFileSync(join(dir, "authorized_keys"), run("cat", [join(dir, "client_key.pub")]));
  chmodSync(join(dir, "authorized_keys"), 0o600);
  writeFileSync(
    join(dir, "sshd_config"),
    [
      `Port ${sshdPort}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${join(dir, "host_key")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PasswordAuthentication no",
      "PermitRootLogin yes",
      "UsePAM no",
      "StrictModes no",
      "AllowTcpForwarding yes",
      ...extraConfig,
      `PidFile ${join(dir, "sshd.pid")}`,
      "LogLevel ERROR",
    ].join("\n") + "\n",
  );
  // sshd insists on its privilege separation directory.
  mkdirSync("/run/sshd", { recursive: true });
  const sshd = new BackgroundProcess("/usr/sbin/sshd", ["-D", "-e", "-f", join(dir, "sshd_config")]);
  await waitForPort(sshdPort, 10_000, `sshd (${sshd.output.join("")})`);
  return { sshd, sshdPort };
}

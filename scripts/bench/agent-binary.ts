import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import { createInterface } from "node:readline";
import { gzipSync } from "node:zlib";
import type { BenchContext, BenchRow, BenchSection } from "./report.js";

const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";
const MIB = 1024 * 1024;

/**
 * The single-file agent: its size (raw, gzip as the server sends it, xz for reference) and
 * its start-up time from exec to the "ready" log line against a real server on loopback,
 * beside the agent bundle on node and `node -e 0`, the floor for anything built on node.
 */
export async function benchAgentBinary(ctx: BenchContext): Promise<BenchSection> {
  const binary = `${ctx.root}dist/warren-agent-linux-x64`;
  const bundle = `${ctx.root}dist/warren-agent.cjs`;
  if (!existsSync(binary)) throw new Error(`${binary} is missing: run \`npm run build:agent\` on linux-x64`);
  const runs = ctx.quick ? 3 : 9;
  const notes: string[] = [`node ${process.version}; medians of ${runs} runs`];

  ctx.log("agent binary: sizes");
  const bytes = readFileSync(binary);
  const sizes: Record<string, number> = { raw: bytes.length / MIB, "gzip -6 (served)": gzipSync(bytes).length / MIB };
  if (ctx.quick) notes.push("xz size skipped in quick mode");
  else sizes["xz -6"] = (await xzSize(binary)) / MIB;

  ctx.log("agent binary: start-up");
  const server = await startServer(ctx.root);
  try {
    const token = await createWorkspace(server.httpPort, `bench-${process.pid}`);
    const env = { WARREN_SERVER: `http://127.0.0.1:${server.agentPort}`, WARREN_TOKEN: token };
    const toReady = { "warren-agent binary": [] as number[], "agent bundle on node": [] as number[], "node -e 0 (floor)": [] as number[] };
    const toExit = { "warren-agent --version": [] as number[], "node -e 0 (floor)": [] as number[] };
    // Interleaved, so that a slow moment of the machine hits every rival alike.
    for (let i = 0; i < runs; i++) {
      toReady["warren-agent binary"].push(await timeToReady(binary, [], env));
      toReady["agent bundle on node"].push(await timeToReady(process.execPath, [bundle], env));
      const floor = await timeToExit(process.execPath, ["-e", "0"]);
      toReady["node -e 0 (floor)"].push(floor);
      toExit["node -e 0 (floor)"].push(floor);
      toExit["warren-agent --version"].push(await timeToExit(binary, ["--version"]));
    }
    const rows: BenchRow[] = [
      { figure: "agent binary size", unit: "MiB", values: round(sizes, 1), higherIsBetter: false },
      {
        figure: 'start-up: exec to the "ready" log line (connected, pool open)',
        unit: "ms",
        values: round(medians(toReady), 0),
        ratios: [["warren-agent binary", "node -e 0 (floor)"], ["warren-agent binary", "agent bundle on node"]],
        higherIsBetter: false,
      },
      {
        figure: "exec to exit, no connection",
        unit: "ms",
        values: round(medians(toExit), 0),
        ratios: [["warren-agent --version", "node -e 0 (floor)"]],
        higherIsBetter: false,
      },
    ];
    return { title: "Single-file agent", rows, notes };
  } finally {
    server.child.kill("SIGTERM");
  }
}

function medians(samples: Record<string, number[]>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(samples).map(([k, v]) => {
      const sorted = [...v].sort((a, b) => a - b);
      return [k, sorted[Math.floor(sorted.length / 2)]!];
    }),
  );
}

function round(values: Record<string, number>, digits: number): Record<string, number> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Number(v.toFixed(digits))]));
}

function xzSize(file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn("xz", ["-6", "-T0", "-c", file], { stdio: ["ignore", "pipe", "inherit"] });
    let size = 0;
    child.stdout.on("data", (chunk: Buffer) => (size += chunk.length));
    child.once("error", (err) => reject(new Error(`xz: ${err.message} (apt-get install xz-utils)`)));
    child.once("close", (code) => (code === 0 ? resolve(size) : reject(new Error(`xz exited with ${code}`))));
  });
}

/** Resolves with each JSON log line of a child's stdout until `match` says stop. */
function waitForLine(child: ChildProcess, match: (line: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 20_000);
    lines.on("line", (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      if (match(line)) {
        clearTimeout(timer);
        lines.close();
        child.stdout!.resume();
        resolve(line);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} while waiting for ${what}`));
    });
  });
}

async function timeToReady(command: string, args: string[], env: Record<string, string>): Promise<number> {
  const started = process.hrtime.bigint();
  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  await waitForLine(child, (l) => l["event"] === "ready", "the agent's ready line");
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  child.kill("SIGTERM");
  await exited;
  return ms;
}

async function timeToExit(command: string, args: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  const child = spawn(command, args, { env: {}, stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return Number(process.hrtime.bigint() - started) / 1e6;
}

async function startServer(root: string): Promise<{ child: ChildProcess; httpPort: number; agentPort: number }> {
  const child = spawn(process.execPath, [`${root}dist/warren-server.cjs`], {
    env: {
      WARREN_HTTP_ADDR: "127.0.0.1:0",
      WARREN_AGENT_ADDR: "127.0.0.1:0",
      WARREN_OBSERVABILITY_ADDR: "127.0.0.1:0",
      // Benchmarks never take the default ports, nor wait for a load balancer when they stop.
      WARREN_SSH_ADDR: "off",
      WARREN_DRAIN_DELAY: "0s",
      WARREN_ADMIN_TOKEN: ADMIN_TOKEN,
      WARREN_LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const ready = await waitForLine(child, (l) => l["msg"] === "warren server ready", "the server").catch(async () => {
    child.kill("SIGKILL");
    throw new Error("warren-server did not start (is dist/ built?)");
  });
  const port = (addr: unknown) => Number(String(addr).split(":").pop());
  return { child, httpPort: port(ready["http"]), agentPort: port(ready["agent"]) };
}

function createWorkspace(httpPort: number, name: string): Promise<string> {
  const body = JSON.stringify({ name, ports: [{ port: 8000 }] });
  return new Promise((resolve, reject) => {
    // An IP literal as the host reaches the root domain.
    const req = http.request(
      {
        host: "127.0.0.1",
        port: httpPort,
        method: "POST",
        path: "/warren.v1.WorkspaceService/CreateWorkspace",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () => {
          if (res.statusCode !== 200) reject(new Error(`CreateWorkspace: ${res.statusCode} ${text}`));
          else resolve((JSON.parse(text) as { agentToken: string }).agentToken);
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

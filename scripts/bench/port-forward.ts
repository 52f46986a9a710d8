import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BackgroundProcess, benchNodeFlags, freePort, waitForPort } from "./processes.js";
import type { BenchContext, BenchRow, BenchSection } from "./report.js";
import { ADMIN_TOKEN, startThrowawaySshd, startWarren, type WarrenRival } from "./rivals.js";

const MiB = 1024 * 1024;

/**
 * A TCP app in "the workspace": a connection that sends "d" gets `bulkBytes` and the end; one
 * that sends "u" has everything after it read and counted, and gets the count when it ends
 * (an upload); one that sends "p" gets "p" back and the end (a short connection).
 */
async function startTcpApp(bulkBytes: number): Promise<{ port: number; close(): void }> {
  const block = Buffer.alloc(MiB, 7);
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    socket.on("error", () => {});
    socket.once("data", (d: Buffer) => {
      if (d[0] === 0x75) {
        let got = d.length - 1;
        socket.on("data", (c: Buffer) => (got += c.length));
        socket.on("end", () => socket.end(String(got)));
        return;
      }
      if (d[0] !== 0x64) {
        socket.end("p");
        return;
      }
      writeAndEnd(socket, block, bulkBytes);
    });
  });
  const port = await new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)));
  return { port, close: () => server.close() };
}

/** Downloads from a forwarded port: MB/s. */
function download(port: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    let received = 0;
    const socket = net.connect({ port, host: "127.0.0.1", noDelay: true }, () => socket.write("d"));
    socket.on("data", (c: Buffer) => (received += c.length));
    socket.on("error", reject);
    socket.on("close", () => {
      if (received !== bytes) return reject(new Error(`download: ${received} of ${bytes} bytes`));
      resolve(bytes / (Number(process.hrtime.bigint() - started) / 1e9) / 1e6);
    });
  });
}

/** Uploads to a forwarded port and waits for the app's count: MB/s. */
function upload(port: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const block = Buffer.alloc(MiB, 9);
    const started = process.hrtime.bigint();
    let answer = "";
    const socket = net.connect({ port, host: "127.0.0.1", noDelay: true, allowHalfOpen: true }, () => {
      socket.write("u");
      writeAndEnd(socket, block, bytes);
    });
    socket.setEncoding("utf8").on("data", (c: string) => (answer += c));
    socket.on("error", reject);
    socket.on("close", () => {
      if (Number(answer) !== bytes) return reject(new Error(`upload: the app counted ${answer || "nothing"} of ${bytes} bytes`));
      resolve(bytes / (Number(process.hrtime.bigint() - started) / 1e9) / 1e6);
    });
  });
}

/** Opens `count` short connections, `concurrency` at a time: connections/s. */
async function connections(port: number, count: number, concurrency: number): Promise<number> {
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const socket = net.connect({ port, host: "127.0.0.1", noDelay: true }, () => socket.write("p"));
      let got = "";
      socket.setEncoding("utf8").on("data", (c: string) => (got += c));
      socket.on("error", reject);
      socket.on("close", () => (got === "p" ? resolve() : reject(new Error(`short connection got "${got}"`))));
    });
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        await one();
      }
    }),
  );
  return count / (Number(process.hrtime.bigint() - started) / 1e9);
}

/**
 * `warren port-forward` (local port -> CLI -> WebSocket over the public HTTP listener -> server
 * -> tunnel -> agent -> app) against `ssh -L` through OpenSSH's sshd and against the app
 * directly, in the same run.
 */
export async function benchPortForward(ctx: BenchContext): Promise<BenchSection> {
  const bytes = (ctx.quick ? 64 : 256) * MiB;
  const count = ctx.quick ? 100 : 400;
  const app = await startTcpApp(bytes);
  const dir = mkdtempSync(join(tmpdir(), "warren-bench-forward-"));
  const stops: Array<() => Promise<void> | void> = [() => app.close(), () => rmSync(dir, { recursive: true, force: true })];
  try {
    // OpenSSH: sshd on a free port, `ssh -N -L` to the app.
    const { sshd, sshdPort } = await startThrowawaySshd(dir, ["MaxSessions 1000"]);
    stops.push(() => sshd.stop());
    const sshLocal = await freePort();
    const ssh = new BackgroundProcess("ssh", [
      "-N",
      "-o", "StrictHostKeyChecking=no",
      "-o", "UserKnownHostsFile=/dev/null",
      "-o", "ExitOnForwardFailure=yes",
      "-o", "BatchMode=yes",
      "-o", "Ciphers=aes128-gcm@openssh.com",
      "-i", join(dir, "client_key"),
      "-p", String(sshdPort),
      "-L", `127.0.0.1:${sshLocal}:127.0.0.1:${app.port}`,
      `${process.env["USER"] ?? "root"}@127.0.0.1`,
    ]);
    stops.push(() => ssh.stop());
    await waitForPort(sshLocal, 10_000, `ssh -L (${ssh.output.join("")})`);

    // Warren: server and agent, then `warren port-forward` to the same app; with
    // WARREN_BENCH_BASELINE=<another built checkout>, that one too ("warren before").
    const pids: Record<string, number[]> = {};
    const forwardFrom = async (root: string) => {
      const warren: WarrenRival = await startWarren(root, app.port);
      stops.push(() => warren.stop());
      const cli = new BackgroundProcess(process.execPath, [
        ...benchNodeFlags("cli"),
        `${root}dist/warren.cjs`, "port-forward", "bench", "--tcp", `0:${app.port}`,
        "--server", `http://127.0.0.1:${warren.httpPort}`, "--token", ADMIN_TOKEN,
      ]);
      stops.push(() => cli.stop());
      const port = Number((await cli.waitFor(/Forwarding 127\.0\.0\.1:(\d+) ->/))[1]);
      pids[port] = [warren.server, warren.agent, cli].map((p) => p.child.pid!);
      return port;
    };
    const baseline = process.env["WARREN_BENCH_BASELINE"];
    const targets: Record<string, number> = { direct: app.port, warren: await forwardFrom(ctx.root) };
    if (baseline) targets["warren before"] = await forwardFrom(baseline.endsWith("/") ? baseline : `${baseline}/`);
    targets["ssh -L"] = sshLocal;
    const throughput: Record<string, number> = {};
    const upThroughput: Record<string, number> = {};
    const rate: Record<string, number> = {};
    // CPU time of Warren's own processes (server, agent, CLI) per unit of work: steadier than
    // speed on a shared machine, where other work takes turns on the cores.
    const cpu = { download: {} as Record<string, number>, upload: {} as Record<string, number>, connections: {} as Record<string, number> };
    const measured = async <T>(port: number, into: Record<string, number>, name: string, per: number, run: () => Promise<T>): Promise<T> => {
      const before = cpuMs(pids[port] ?? []);
      const result = await run();
      if (pids[port]) into[name] = (cpuMs(pids[port]) - before) / per;
      return result;
    };
    for (const [name, port] of Object.entries(targets)) {
      ctx.log(`port-forward ${name}: warm-up`);
      await connections(port, 20, 4);
      ctx.log(`port-forward ${name}: download ${bytes / MiB} MiB`);
      throughput[name] = await measured(port, cpu.download, name, bytes / MiB, () => download(port, bytes));
      ctx.log(`port-forward ${name}: upload ${bytes / MiB} MiB`);
      upThroughput[name] = await measured(port, cpu.upload, name, bytes / MiB, () => upload(port, bytes));
      ctx.log(`port-forward ${name}: ${count} short connections`);
      rate[name] = await measured(port, cpu.connections, name, count, () => connections(port, count, 8));
    }
    const cpuRatios: Array<readonly [string, string]> = baseline ? [["warren", "warren before"]] : [];
    const ratios: Array<readonly [string, string]> = [["warren", "direct"], ["warren", "ssh -L"], ...(baseline ? [["warren", "warren before"] as const] : [])];
    const rows: BenchRow[] = [
      { figure: `forwarded TCP download, ${bytes / MiB} MiB on one connection`, unit: "MB/s", values: throughput, ratios, higherIsBetter: true },
      { figure: `forwarded TCP upload, ${bytes / MiB} MiB on one connection`, unit: "MB/s", values: upThroughput, ratios, higherIsBetter: true },
      { figure: `forwarded short connections (connect, 1 byte each way, close), 8 at a time`, unit: "conn/s", values: rate, ratios, higherIsBetter: true },
      { figure: "CPU of server + agent + CLI per MiB downloaded", unit: "ms/MiB", values: cpu.download, ratios: cpuRatios, higherIsBetter: false },
      { figure: "CPU of server + agent + CLI per MiB uploaded", unit: "ms/MiB", values: cpu.upload, ratios: cpuRatios, higherIsBetter: false },
      { figure: "CPU of server + agent + CLI per short connection", unit: "ms", values: cpu.connections, ratios: cpuRatios, higherIsBetter: false },
    ];
    return {
      title: "Port forwarding: `warren port-forward` vs `ssh -L` through OpenSSH vs the app directly (same app, same run)",
      rows,
      notes: [
        "warren: one WebSocket per forwarded connection over the public HTTP listener (plain HTTP here), then the agent's tunnel; ssh -L: one SSH connection (aes128-gcm) multiplexing every forwarded connection.",
      ],
    };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

/** User and system CPU time of processes so far, in ms (from /proc; clock ticks of 10 ms). */
function cpuMs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Gone: counts nothing more.
    }
  }
  return ticks * 10;
}

/** Writes `bytes` in blocks with backpressure, then half-closes. */
function writeAndEnd(socket: net.Socket, block: Buffer, bytes: number): void {
  let left = bytes;
  const pump = () => {
    while (left > 0) {
      left -= block.length;
      if (!socket.write(block)) return void socket.once("drain", pump);
    }
    socket.end();
  };
  pump();
}

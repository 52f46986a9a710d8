import { readdirSync } from "node:fs";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startApp, type App } from "./harness/apps.js";
import { createWorkspace, eventually, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

function descriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * Sends a request head and `body` bytes after it on a raw connection, reads until the answer's
 * head has come, then leaves (as curl does after an error): resolves with the status.
 */
function sendAndLeave(port: number, head: string, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("\r\n\r\n")) {
        socket.destroy();
        resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0));
      }
    });
    socket.on("error", () => resolve(0));
    socket.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    socket.write(head);
    socket.write(body, (err) => err && reject(err));
  });
}

/** Starts a download and leaves after its first bytes. */
function downloadAndLeave(port: number, head: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("data", () => socket.destroy());
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
    socket.write(head);
  });
}

async function inBatches<T>(count: number, batch: number, run: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < count; i += batch) out.push(...(await Promise.all(Array.from({ length: Math.min(batch, count - i) }, (_, j) => run(i + j)))));
  return out;
}

/** Issue 14, item 2: every error path of the fast path releases its sockets. */
describe("failed uploads, downloads and upgrades release their sockets", () => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let slowApp: App;
  let bigApp: App;
  let downPort: number;

  beforeAll(async () => {
    slowApp = await startApp(() => {}); // never answers: 504
    bigApp = await startApp((_req, res) => {
      // 16 MiB, written as the client reads.
      const chunk = Buffer.alloc(256 * 1024, 7);
      let left = 64;
      const more = () => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) return void res.once("drain", more);
        }
        res.end();
      };
      res.on("close", () => (left = 0));
      more();
    });
    downPort = await freePort();
    server = await startServer({ WARREN_UPSTREAM_TIMEOUT: "1s", WARREN_SHUTDOWN_TIMEOUT: "30s" });
    const ws = await createWorkspace(server, "leaks", [slowApp.port, bigApp.port, downPort]);
    await createWorkspace(server, "asleep", [80]); // no agent: 503
    agent = await startAgent(server, ws.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await slowApp?.close();
    await bigApp?.close();
  });

  it("closes the client socket of every upload answered 502, 503 or 504 (it stayed paused and open: descriptors and memory leaked, SIGTERM waited the full timeout)", async () => {
    const post = (host: string, size: number) =>
      `POST /upload HTTP/1.1\r\nHost: ${host}\r\nX-Warren-Token: ${server.adminToken}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${size}\r\n\r\n`;
    const pid = server.proc.pid;
    // Warm up (first dials, first pooled streams), then take the baseline.
    await sendAndLeave(server.httpPort, post(workspaceHost("leaks", downPort), 1), Buffer.from("x"));
    const fdsBefore = descriptors(pid);
    const rssBefore = server.proc.rssBytes();

    const cases: Array<[string, number, number]> = [];
    for (const size of [64 * 1024, 256 * 1024, 1024 * 1024]) {
      cases.push([workspaceHost("leaks", downPort), size, 502], [workspaceHost("asleep", 80), size, 503], [workspaceHost("leaks", slowApp.port), size, 504]);
    }
    for (const [host, size, status] of cases) {
      const body = Buffer.alloc(size, 1);
      const statuses = await inBatches(40, 20, () => sendAndLeave(server.httpPort, post(host, size), body));
      expect(statuses.every((s) => s === status), `${host} ${size}: ${statuses.join(",")}`).toBe(true);
    }
    // Downloads the client leaves after the first bytes, of a 16 MiB answer.
    await inBatches(60, 20, () =>
      downloadAndLeave(server.httpPort, `GET /big HTTP/1.1\r\nHost: ${workspaceHost("leaks", bigApp.port)}\r\nX-Warren-Token: ${server.adminToken}\r\n\r\n`),
    );
    // Upgrades refused by the workspace (nothing listens), the client sending on regardless.
    const upgrade = `GET /ws HTTP/1.1\r\nHost: ${workspaceHost("leaks", downPort)}\r\nX-Warren-Token: ${server.adminToken}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`;
    const upgrades = await inBatches(60, 20, () => sendAndLeave(server.httpPort, upgrade, Buffer.alloc(64 * 1024, 2)));
    expect(upgrades.every((s) => s === 502), upgrades.join(",")).toBe(true);

    // Every one of those connections is gone again (each client left); memory went back too.
    await eventually(() => descriptors(pid) <= fdsBefore + 10, 15_000, `descriptors back near ${fdsBefore} (now ${descriptors(pid)})`);
    // The descriptors are what tells a leak (each leaked socket kept one); RSS is only bounded:
    // V8 and malloc keep the high-water mark of 360 bodies of up to 1 MiB for a while, which
    // measured up to 68 MB on the 2-core machine with nothing leaked.
    expect(server.proc.rssBytes() - rssBefore).toBeLessThan(128 * 1024 * 1024);

    // Nothing is left open for a shutdown to wait for.
    server.proc.kill("SIGTERM");
    await server.proc.exited;
    expect(server.proc.lines.some((l) => /shutdown timeout/.test(String(l.msg)))).toBe(false);
  });
});

import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "./harness/apps.js";
import { createWorkspace, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

const MiB = 1024 * 1024;
const SIZE = 100 * MiB;
/** The server may grow by this much while moving 100 MiB: a few windows, never the payload. */
const MEMORY_BUDGET = 80 * MiB;

/** A deterministic pseudo-random 100 MiB stream: 1 MiB of random bytes, repeated with a counter. */
const block = randomBytes(MiB);
function chunkAt(i: number): Buffer {
  const b = Buffer.from(block);
  b.writeUInt32BE(i, 0);
  return b;
}
function expectedDigest(): string {
  const h = createHash("sha256");
  for (let i = 0; i < SIZE / MiB; i++) h.update(chunkAt(i));
  return h.digest("hex");
}

describe("bulk transfers through the tunnel", () => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let app: App;
  let digest: string;
  let onAppPause: (() => void) | undefined;

  beforeAll(async () => {
    digest = expectedDigest();
    app = await startApp((req, res) => {
      if (req.url === "/download") {
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": SIZE });
        let i = 0;
        const pump = () => {
          while (i < SIZE / MiB) {
            if (!res.write(chunkAt(i++))) return void res.once("drain", pump);
          }
          res.end();
        };
        pump();
        return;
      }
      if (req.url === "/upload-slow") {
        // Reads half, stops for two seconds, then reads the rest.
        const h = createHash("sha256");
        let n = 0;
        let paused = false;
        req.on("data", (c: Buffer) => {
          h.update(c);
          n += c.length;
          if (!paused && n > SIZE / 2) {
            paused = true;
            req.pause();
            onAppPause?.();
            setTimeout(() => req.resume(), 2000);
          }
        });
        req.on("end", () => res.end(JSON.stringify({ bytes: n, sha256: h.digest("hex") })));
        return;
      }
      if (req.url === "/upload") {
        const h = createHash("sha256");
        let n = 0;
        req.on("data", (c: Buffer) => {
          h.update(c);
          n += c.length;
        });
        req.on("end", () => res.end(JSON.stringify({ bytes: n, sha256: h.digest("hex") })));
        return;
      }
      res.writeHead(404).end();
    });
    server = await startServer({ WARREN_LOG_LEVEL: "info" });
    const ws = await createWorkspace(server, "bulk", [app.port]);
    agent = await startAgent(server, ws.agentToken, { env: { WARREN_LOG_LEVEL: "info" } });
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  /** Samples the server's RSS every 100 ms while `fn` runs; returns the peak growth. */
  async function peakGrowth(fn: () => Promise<void>): Promise<number> {
    const base = server.proc.rssBytes();
    let peak = base;
    const timer = setInterval(() => (peak = Math.max(peak, server.proc.rssBytes())), 100);
    try {
      await fn();
    } finally {
      clearInterval(timer);
    }
    return Math.max(peak, server.proc.rssBytes()) - base;
  }

  /** POSTs the 100 MiB stream to `path`, respecting backpressure; resolves with the app's answer. */
  function upload(path: string): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      let answer = "";
      const req = http.request(
        {
          host: "127.0.0.1",
          port: server.httpPort,
          method: "POST",
          path,
          headers: { host: workspaceHost("bulk", app.port), "x-warren-token": server.adminToken, "content-length": SIZE },
        },
        (res) => {
          res.setEncoding("utf8").on("data", (c: string) => (answer += c));
          res.on("end", () => resolve(answer));
        },
      );
      req.on("error", reject);
      let i = 0;
      const pump = () => {
        while (i < SIZE / MiB) {
          if (!req.write(chunkAt(i++))) return void req.once("drain", pump);
        }
        req.end();
      };
      pump();
    });
  }

  it("downloads 100 MiB intact with bounded server memory, even with a slow reader", async () => {
    let result = { bytes: 0, sha256: "" };
    let pauseGrowth = Infinity;
    const growth = await peakGrowth(
      () =>
        new Promise<void>((resolve, reject) => {
          const req = http.get(
            { host: "127.0.0.1", port: server.httpPort, path: "/download", headers: { host: workspaceHost("bulk", app.port), "x-warren-token": server.adminToken } },
            (res) => {
              expect(res.statusCode).toBe(200);
              const h = createHash("sha256");
              let n = 0;
              let paused = false;
              res.on("data", (c: Buffer) => {
                h.update(c);
                n += c.length;
                // Halfway through, stop reading for two seconds: the app keeps writing, and
                // nothing but flow-control windows may pile up in the server.
                if (!paused && n > SIZE / 2) {
                  paused = true;
                  res.pause();
                  const atPause = server.proc.rssBytes();
                  setTimeout(() => {
                    pauseGrowth = server.proc.rssBytes() - atPause;
                    res.resume();
                  }, 2000);
                }
              });
              res.on("end", () => {
                result = { bytes: n, sha256: h.digest("hex") };
                resolve();
              });
              res.on("error", reject);
            },
          );
          req.on("error", reject);
        }),
    );
    expect(result.bytes).toBe(SIZE);
    expect(result.sha256).toBe(digest);
    expect(growth).toBeLessThan(MEMORY_BUDGET);
    // While the reader was stopped the app kept writing: flow control held it back.
    expect(pauseGrowth).toBeLessThan(16 * MiB);
  });

  it("uploads 100 MiB intact with bounded server memory", async () => {
    let answer = "";
    const growth = await peakGrowth(async () => {
      answer = await upload("/upload");
    });
    expect(JSON.parse(answer)).toEqual({ bytes: SIZE, sha256: digest });
    expect(growth).toBeLessThan(MEMORY_BUDGET);
  });

  it("uploads 100 MiB to an app that stops reading: server and agent memory stay bounded", async () => {
    let answer = "";
    let pauseGrowth = { server: Infinity, agent: Infinity };
    onAppPause = () => {
      const at = { server: server.proc.rssBytes(), agent: agent.proc.rssBytes() };
      setTimeout(() => (pauseGrowth = { server: server.proc.rssBytes() - at.server, agent: agent.proc.rssBytes() - at.agent }), 1900);
    };
    const agentBase = agent.proc.rssBytes();
    let agentPeak = agentBase;
    const sampler = setInterval(() => (agentPeak = Math.max(agentPeak, agent.proc.rssBytes())), 100);
    try {
      answer = await upload("/upload-slow");
    } finally {
      clearInterval(sampler);
      onAppPause = undefined;
    }
    expect(JSON.parse(answer)).toEqual({ bytes: SIZE, sha256: digest });
    // While the app was not reading, the client kept sending: flow control held it back in
    // both processes on the way.
    expect(pauseGrowth.server).toBeLessThan(16 * MiB);
    expect(pauseGrowth.agent).toBeLessThan(16 * MiB);
    expect(agentPeak - agentBase).toBeLessThan(MEMORY_BUDGET);
  });
});

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BackgroundProcess, freePort, run, waitForPort } from "./processes.js";
import type { BenchContext, BenchSection } from "./report.js";
import { startWarren } from "./rivals.js";

/**
 * A stand-in for a VS Code workbench (used when code-server is not installed): one page whose
 * script fetches 300 files at once, sized like a workbench's load (one big bundle, a few large
 * stylesheets and chunks, many small modules, NLS files, icons and extension manifests):
 * about 13 MB in all. Every answer is no-store, as a cold load would be.
 */
export const WORKBENCH_FILES: ReadonlyArray<{ path: string; bytes: number; type: string }> = [
  { path: "/static/workbench.js", bytes: 8 * 1024 * 1024, type: "text/javascript" },
  ...Array.from({ length: 4 }, (_, i) => ({ path: `/static/chunk-${i}.css`, bytes: 500 * 1024, type: "text/css" })),
  ...Array.from({ length: 40 }, (_, i) => ({ path: `/static/module-${i}.js`, bytes: 50 * 1024, type: "text/javascript" })),
  ...Array.from({ length: 255 }, (_, i) => ({ path: `/static/small-${i}.json`, bytes: 4 * 1024, type: "application/json" })),
];

const PAGE = `<!doctype html><meta charset="utf-8"><title>workbench</title><script>
const files = ${JSON.stringify(WORKBENCH_FILES.map((f) => f.path))};
Promise.all(files.map((f) => fetch(f).then((r) => { if (!r.ok) throw new Error(f + " " + r.status); return r.arrayBuffer(); })))
  .then((bodies) => { window.__loaded = { ms: performance.now(), bytes: bodies.reduce((n, b) => n + b.byteLength, 0) }; })
  .catch((e) => { window.__loaded = { error: String(e) }; });
</script>`;

/** `bench --workbench-app PORT`: the synthetic workbench, in a process of its own. */
export function runWorkbenchApp(port: number): void {
  const bodies = new Map(WORKBENCH_FILES.map((f) => [f.path, { body: Buffer.alloc(f.bytes, 0x61), type: f.type }]));
  http
    .createServer((req, res) => {
      const file = bodies.get(req.url ?? "");
      if (req.url === "/") {
        res.writeHead(200, { "content-type": "text/html", "cache-control": "no-store" });
        res.end(PAGE);
      } else if (file) {
        res.writeHead(200, { "content-type": file.type, "content-length": file.body.length, "cache-control": "no-store" });
        res.end(file.body);
      } else {
        res.writeHead(404);
        res.end();
      }
    })
    .listen(port, "127.0.0.1", () => process.stdout.write(`workbench app listening on ${port}\n`));
}

/**
 * code-server, when installed (WARREN_BENCH_CODE_SERVER, or /tmp/code-server as the docs say);
 * WARREN_BENCH_WORKBENCH=synthetic uses the synthetic workbench all the same.
 */
function codeServerBinary(): string | undefined {
  if (process.env["WARREN_BENCH_WORKBENCH"] === "synthetic") return undefined;
  const candidates = [process.env["WARREN_BENCH_CODE_SERVER"], "/tmp/code-server/node_modules/.bin/code-server"];
  return candidates.find((c): c is string => c !== undefined && existsSync(c));
}

interface Workbench {
  readonly kind: "code-server" | "synthetic";
  readonly port: number;
  readonly proc: BackgroundProcess;
  /** Resolves with the load time in ms in the page, once the workbench has loaded. */
  readonly loadedScript: string;
}

async function startWorkbench(root: string, dir: string): Promise<Workbench> {
  const port = await freePort();
  const codeServer = codeServerBinary();
  if (codeServer) {
    // In a process group of its own: code-server leaves an extension host behind per page load.
    const proc = new BackgroundProcess(codeServer, ["--auth", "none", "--bind-addr", `127.0.0.1:${port}`, "--disable-telemetry", "--user-data-dir", join(dir, "user"), "--extensions-dir", join(dir, "ext"), dir], process.env, { group: true });
    await waitForPort(port, 60_000, "code-server");
    // The workbench is up when its parts are drawn and the explorer lists the folder.
    return { kind: "code-server", port, proc, loadedScript: "document.querySelector('.monaco-workbench .part.sidebar .monaco-list-row') ? performance.now() : undefined" };
  }
  const proc = new BackgroundProcess(process.execPath, [`${root}dist/bench.cjs`, "--workbench-app", String(port)]);
  await proc.waitFor(/workbench app listening/);
  return { kind: "synthetic", port, proc, loadedScript: "window.__loaded ? (window.__loaded.error ? 'error: ' + window.__loaded.error : window.__loaded.ms) : undefined" };
}

/** A self-signed certificate for the root domain and its wildcard (Chromium is told to accept it). */
function certificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", "/CN=warren.localhost", "-addext", "subjectAltName=DNS:warren.localhost,DNS:*.warren.localhost,IP:127.0.0.1",
    "-keyout", key, "-out", cert,
  ]);
  return { cert, key };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * A VS Code workbench load in headless Chromium (code-server when installed, else the synthetic
 * workbench above): directly (plain HTTP/1.1), and through Warren over TLS with HTTP/1.1 (six
 * connections per host) and HTTP/2 (one). Each load is cold: a new browser context.
 */
export async function benchWorkbench(ctx: BenchContext): Promise<BenchSection> {
  const { chromium } = (await import("playwright-core")) as typeof import("playwright-core");
  const dir = mkdtempSync(join(tmpdir(), "warren-bench-workbench-"));
  const workbench = await startWorkbench(ctx.root, dir);
  ctx.log(`workbench: ${workbench.kind} on port ${workbench.port}`);
  const tls = certificate(dir);
  const warren = await startWarren(ctx.root, workbench.port, { WARREN_TLS_CERT: tls.cert, WARREN_TLS_KEY: tls.key }, { ports: [{ port: workbench.port, public: true }] });
  const workspaceUrl = `https://${workbench.port}-bench.warren.localhost:${warren.httpPort}/`;
  const runs = ctx.quick ? 2 : 6;
  const values: Record<string, number> = {};
  const launch = (http1Only: boolean) =>
    chromium.launch({
      executablePath: process.env["WARREN_BENCH_CHROMIUM"] ?? "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", ...(http1Only ? ["--disable-http2"] : [])],
    });
  try {
    for (const [name, url, http1Only] of [
      ["direct", `http://127.0.0.1:${workbench.port}/`, true],
      ["warren h1", workspaceUrl, true],
      ["warren h2", workspaceUrl, false],
    ] as const) {
      const browser = await launch(http1Only);
      const times: number[] = [];
      let protocol = "";
      try {
        // One warm-up load (JIT, the tunnel's idle streams), then the measured ones.
        for (let i = 0; i <= runs; i++) {
          const context = await browser.newContext({ ignoreHTTPSErrors: true });
          const page = await context.newPage();
          const started = Date.now();
          await page.goto(url);
          const handle = await page.waitForFunction(workbench.loadedScript, undefined, { timeout: 120_000, polling: 50 });
          const inPage = (await handle.jsonValue()) as number | string;
          if (typeof inPage === "string") throw new Error(`${name}: ${inPage}`);
          protocol = String(await page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol"));
          if (i > 0) times.push(workbench.kind === "synthetic" ? inPage : Date.now() - started);
          await context.close();
        }
      } finally {
        await browser.close();
      }
      ctx.log(`${name}: ${protocol}, median ${median(times).toFixed(0)} ms of ${times.map((t) => t.toFixed(0)).join(", ")}`);
      values[name] = median(times);
    }
  } finally {
    await warren.stop();
    await workbench.proc.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const totalBytes = WORKBENCH_FILES.reduce((n, f) => n + f.bytes, 0);
  return {
    title: `Workbench load in headless Chromium (${workbench.kind === "code-server" ? "code-server" : `synthetic workbench: ${WORKBENCH_FILES.length + 1} requests, ${(totalBytes / 1e6).toFixed(1)} MB`})`,
    rows: [
      {
        figure: "cold load, median",
        unit: "ms",
        values,
        ratios: [
          ["warren h1", "direct"],
          ["warren h2", "direct"],
          ["warren h2", "warren h1"],
        ],
        higherIsBetter: false,
      },
    ],
    notes: [
      `${runs} cold loads each (new browser context) after one warm-up. direct: plain HTTP/1.1 to the app; warren h1: through Warren over TLS with Chromium's HTTP/2 off (six connections per host); warren h2: the same with HTTP/2 (one connection). Self-signed certificate, accepted; the port public (no login).`,
      workbench.kind === "synthetic"
        ? "Synthetic workbench (code-server not found at WARREN_BENCH_CODE_SERVER or /tmp/code-server/node_modules/.bin/code-server, or WARREN_BENCH_WORKBENCH=synthetic): timed in the page from navigation start to the last of its files."
        : "code-server: timed from navigation until the workbench has drawn the explorer's first row.",
    ],
  };
}

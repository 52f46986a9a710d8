import { readFileSync } from "node:fs";
import type { BenchContext, BenchRow, BenchSection } from "./report.js";
import { wrk } from "./load.js";
import { ADMIN_TOKEN, startApp, startWarren, type WarrenRival } from "./rivals.js";

/** How many API calls are in flight at once during a write burst. */
const WRITERS = 16;

/**
 * The control plane's store: the embedded one (LMDB in the data directory, every write
 * fsynced before it is acknowledged) against the in-memory store of tests (WARREN_STORE=memory),
 * each on a server of its own: API writes/s, the tunnel's latency while the API writes, and
 * the memory the store adds.
 */
export async function benchStore(ctx: BenchContext): Promise<BenchSection> {
  const duration = ctx.quick ? 3 : 10;
  const app = await startApp(ctx.root);
  const writesPerSecond: Record<string, number> = {};
  const p99Quiet: Record<string, number> = {};
  const p99Writing: Record<string, number> = {};
  const rpsWriting: Record<string, number> = {};
  const rss: Record<string, number> = {};
  try {
    for (const store of ["memory", "embedded"]) {
      const warren = await startWarren(ctx.root, app.port, { WARREN_STORE: store });
      try {
        ctx.log(`store ${store}: API writes for ${duration}s`);
        writesPerSecond[store] = (await writeBurst(warren, `${store}-a`, duration * 1000)).perSecond;
        ctx.log(`store ${store}: tunnel, 64 connections, no writes`);
        await wrk({ url: `${warren.url}/`, headers: warren.headers, connections: 64, durationSeconds: 1 });
        p99Quiet[store] = (await wrk({ url: `${warren.url}/`, headers: warren.headers, connections: 64, durationSeconds: duration })).p99Ms;
        ctx.log(`store ${store}: tunnel while the API writes`);
        const [load] = await Promise.all([
          wrk({ url: `${warren.url}/`, headers: warren.headers, connections: 64, durationSeconds: duration }),
          writeBurst(warren, `${store}-b`, duration * 1000),
        ]);
        p99Writing[store] = load.p99Ms;
        rpsWriting[store] = load.requestsPerSecond;
        rss[store] = rssMiB(warren.server.child.pid!);
      } finally {
        await warren.stop();
      }
    }
  } finally {
    await app.proc.stop();
  }
  const ratios: Array<readonly [string, string]> = [["embedded", "memory"]];
  const rows: BenchRow[] = [
    { figure: `API writes/s (CreateUser, ${WRITERS} at once)`, unit: "writes/s", values: writesPerSecond, ratios, higherIsBetter: true },
    { figure: "tunnel HTTP p99, 64 connections, no API writes", unit: "ms", values: p99Quiet, ratios, higherIsBetter: false },
    { figure: "tunnel HTTP p99, same load during an API write burst", unit: "ms", values: p99Writing, ratios, higherIsBetter: false },
    { figure: "tunnel HTTP requests/s during the write burst", unit: "req/s", values: rpsWriting, ratios, higherIsBetter: true },
    { figure: "server RSS after the runs", unit: "MiB", values: rss, ratios, higherIsBetter: false },
  ];
  return {
    title: "Store: embedded (LMDB, fsync per commit) vs memory, same app, same run",
    rows,
    notes: [
      "memory is WARREN_STORE=memory (tests only): the floor. The embedded store acknowledges a write once it is on disk;",
      "its commits run on LMDB's writer thread, so the tunnel's event loop does not wait for the disk.",
    ],
  };
}

/** CreateUser calls, WRITERS at once, for `ms`; resolves with the rate of acknowledged writes. */
async function writeBurst(warren: WarrenRival, prefix: string, ms: number): Promise<{ perSecond: number }> {
  const started = Date.now();
  let done = 0;
  let n = 0;
  const writer = async () => {
    while (Date.now() - started < ms) {
      const res = await fetch(`http://127.0.0.1:${warren.httpPort}/warren.v1.UserService/CreateUser`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
        body: JSON.stringify({ name: `${prefix}-${n++}` }),
      });
      await res.arrayBuffer();
      if (res.ok) done++;
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, writer));
  return { perSecond: done / ((Date.now() - started) / 1000) };
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

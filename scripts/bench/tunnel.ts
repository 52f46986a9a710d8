import type { BenchContext, BenchRow, BenchSection } from "./report.js";
import { curlDownload, curlUpload, wrk } from "./load.js";
import { startApp, startSshReverse, startWarren, type Rival } from "./rivals.js";

const MiB = 1024 * 1024;

/**
 * The core comparison: the same app reached directly, through Warren and through `ssh -R`,
 * measured one after the other in the same run.
 */
export async function benchTunnel(ctx: BenchContext): Promise<BenchSection> {
  const duration = ctx.quick ? 3 : 10;
  const bulkBytes = ctx.quick ? 64 * MiB : 1024 * MiB;
  const app = await startApp(ctx.root);
  const rivals: Rival[] = [];
  try {
    rivals.push({ name: "direct", url: `http://127.0.0.1:${app.port}`, headers: {}, stop: async () => {} });
    rivals.push(await startWarren(ctx.root, app.port));
    rivals.push(await startSshReverse(app.port));

    const rps: Record<string, number> = {};
    const p50: Record<string, number> = {};
    const p99: Record<string, number> = {};
    const closeRps: Record<string, number> = {};
    const down: Record<string, number> = {};
    const up: Record<string, number> = {};
    for (const rival of rivals) {
      ctx.log(`${rival.name}: warming up`);
      await wrk({ url: `${rival.url}/`, headers: rival.headers, connections: 64, durationSeconds: 1 });
      ctx.log(`${rival.name}: 64 keep-alive connections for ${duration}s`);
      const keepAlive = await wrk({ url: `${rival.url}/`, headers: rival.headers, connections: 64, durationSeconds: duration });
      if (keepAlive.errors > 0) ctx.log(`  ${rival.name}: ${keepAlive.errors} errors`);
      rps[rival.name] = keepAlive.requestsPerSecond;
      p50[rival.name] = keepAlive.p50Ms;
      p99[rival.name] = keepAlive.p99Ms;
      ctx.log(`${rival.name}: new connection per request for ${duration}s`);
      const close = await wrk({ url: `${rival.url}/`, headers: { ...rival.headers, Connection: "close" }, connections: 16, durationSeconds: duration });
      closeRps[rival.name] = close.requestsPerSecond;
      ctx.log(`${rival.name}: download ${bulkBytes / MiB} MiB`);
      down[rival.name] = await curlDownload(`${rival.url}/bytes?n=${bulkBytes}`, rival.headers, bulkBytes);
      ctx.log(`${rival.name}: upload ${bulkBytes / MiB} MiB`);
      up[rival.name] = await curlUpload(`${rival.url}/sink`, rival.headers, bulkBytes);
    }
    const ratios: Array<readonly [string, string]> = [
      ["warren", "direct"],
      ["warren", "ssh -R"],
    ];
    const rows: BenchRow[] = [
      { figure: "HTTP requests/s, 64 keep-alive connections", unit: "req/s", values: rps, ratios, higherIsBetter: true },
      { figure: "HTTP p50 latency at that load", unit: "ms", values: p50, ratios, higherIsBetter: false },
      { figure: "HTTP p99 latency at that load", unit: "ms", values: p99, ratios, higherIsBetter: false },
      { figure: "new connections/s (Connection: close, 16 clients)", unit: "req/s", values: closeRps, ratios, higherIsBetter: true },
      { figure: `bulk download, ${bulkBytes / MiB} MiB`, unit: "MB/s", values: down, ratios, higherIsBetter: true },
      { figure: `bulk upload, ${bulkBytes / MiB} MiB`, unit: "MB/s", values: up, ratios, higherIsBetter: true },
    ];
    return {
      title: "Tunnel: direct vs Warren vs ssh -R (same app, same run)",
      rows,
      notes: ["wrk (2 threads) for requests; curl for bulk transfers; 13-byte responses."],
    };
  } finally {
    for (const rival of rivals.reverse()) await rival.stop();
    await app.proc.stop();
  }
}

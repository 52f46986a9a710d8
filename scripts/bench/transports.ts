// The transport choice, measured (docs/transport-choice.md): the same Tunnel-shaped streaming RPC
// over grpc-js, connect-node and Warren's own framing on node:http2, plus Warren's chunk size,
// HTTP/2 frame size and flow-control windows. The two ends are scripts/bench/transport-peers.ts.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { TUNNEL_WINDOWS } from "../../shared/tunnel-windows.js";
import { BackgroundProcess, freePort } from "./processes.js";
import type { BenchContext, BenchRow, BenchSection } from "./report.js";
import type { Direction, Transfer, TransferResult, TransportConfig } from "./transport-peers.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const REPEATS = 3;
const SMALL_MESSAGE_BYTES = 1 * KiB;
const DIRECTIONS: Record<Direction, string> = { c2s: "client->server", s2c: "server->client" };

/** One configuration: a library with its settings and the payload size of its bulk messages. */
interface Variant {
  readonly label: string;
  readonly config: TransportConfig;
  readonly chunkBytes: number;
  /** Row label for 1 KiB messages when this configuration also measures them. */
  readonly small?: string;
}

const WARREN = {
  streamWindow: TUNNEL_WINDOWS.streamWindowBytes,
  sessionWindow: TUNNEL_WINDOWS.sessionWindowBytes,
  maxFrameSize: TUNNEL_WINDOWS.maxFrameBytes,
} as const;

function size(bytes: number): string {
  return bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`;
}

function variants(): Variant[] {
  const list: Variant[] = [
    { label: "grpc-js, defaults, 64 KiB msgs", config: { lib: "grpc-js" }, chunkBytes: 64 * KiB },
    {
      label: "grpc-js, client flow_control_window 32 MiB, 64 KiB msgs",
      config: { lib: "grpc-js", streamWindow: 32 * MiB },
      chunkBytes: 64 * KiB,
      small: "grpc-js (client window 32 MiB), 1 KiB msgs",
    },
    { label: "connect-node, defaults, 64 KiB msgs", config: { lib: "connect" }, chunkBytes: 64 * KiB },
    {
      label: "connect-node, windows 4 MiB stream / 32 MiB conn, 64 KiB msgs",
      config: { lib: "connect", streamWindow: 4 * MiB, sessionWindow: 32 * MiB },
      chunkBytes: 64 * KiB,
      small: "connect-node (windows raised), 1 KiB msgs",
    },
    {
      label: `Warren TunnelSocket as shipped (${size(TUNNEL_WINDOWS.maxChunkBytes)} chunks, ${size(WARREN.maxFrameSize)} frames)`,
      config: { lib: "warren-socket", ...WARREN },
      chunkBytes: TUNNEL_WINDOWS.maxChunkBytes,
      small: "Warren TunnelSocket, 1 KiB writes",
    },
  ];
  for (const frame of [16 * KiB, 64 * KiB]) {
    for (const chunk of [16 * KiB, 64 * KiB, 256 * KiB]) {
      list.push({
        label: `Warren codec, ${size(chunk)} chunks, ${size(frame)} frames`,
        config: { lib: "warren-codec", ...WARREN, maxFrameSize: frame },
        chunkBytes: chunk,
      });
    }
  }
  list.push({
    label: "Warren codec, 64 KiB chunks, 64 KiB frames, unbatched writes",
    config: { lib: "warren-codec", ...WARREN, unbatched: true },
    chunkBytes: 64 * KiB,
    small: "Warren codec, 1 KiB msgs, unbatched writes",
  });
  const windows: Array<[number | undefined, number | undefined, string]> = [
    [undefined, undefined, "node default 64 KiB / 64 KiB"],
    [1 * MiB, 8 * MiB, "1 MiB / 8 MiB"],
    [16 * MiB, 64 * MiB, "16 MiB / 64 MiB"],
  ];
  for (const [stream, session, name] of windows) {
    list.push({
      label: `Warren TunnelSocket, windows ${name}`,
      config: { lib: "warren-socket", maxFrameSize: WARREN.maxFrameSize, ...(stream ? { streamWindow: stream, sessionWindow: session } : {}) },
      chunkBytes: TUNNEL_WINDOWS.maxChunkBytes,
    });
  }
  return list;
}

/**
 * Runs one configuration: a server process and a client process that makes the calls, started
 * together (the client waits for the port), both stopped after.
 */
async function trial(ctx: BenchContext, variant: Variant, transfers: Transfer[]): Promise<TransferResult[]> {
  const bench = `${ctx.root}dist/bench.cjs`;
  const config = JSON.stringify(variant.config);
  const port = String(await freePort());
  const server = new BackgroundProcess(process.execPath, [bench, "--transport-role", "server", "--transport-config", config, "--port", port]);
  const client = new BackgroundProcess(process.execPath, [
    bench,
    "--transport-role",
    "client",
    "--transport-config",
    config,
    "--port",
    port,
    "--server-pid",
    String(server.child.pid),
    "--transfers",
    JSON.stringify(transfers),
  ]);
  try {
    const [, json] = await client.waitFor(/transport results (.*)\n/, 180_000);
    return JSON.parse(json!) as TransferResult[];
  } catch (err) {
    throw new Error(`${variant.label}: ${(err as Error).message}\nserver output: ${server.output.join("").slice(-2000)}`);
  } finally {
    await client.stop();
    await server.stop();
  }
}

function packageVersion(root: string, name: string): string {
  try {
    return (JSON.parse(readFileSync(`${root}node_modules/${name}/package.json`, "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function round(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

/**
 * One streaming RPC shaped like Warren's Tunnel rpc, moving bytes each way over grpc-js,
 * connect-node and Warren's own framing on node:http2, with client and server in two processes.
 * Every configuration runs three times, interleaved with the others; the table has medians.
 */
export async function benchTransports(ctx: BenchContext): Promise<BenchSection> {
  const bulkBytes = ctx.quick ? 64 * MiB : 512 * MiB;
  const smallMessages = ctx.quick ? 5_000 : 50_000;
  const list = variants();
  // Per row label and direction, in run order: throughput and CPU cost.
  const samples = new Map<string, Record<Direction, { rate: number[]; cpu: number[] }>>();
  const add = (label: string, direction: Direction, rate: number, cpu: number) => {
    let s = samples.get(label);
    if (!s) samples.set(label, (s = { c2s: { rate: [], cpu: [] }, s2c: { rate: [], cpu: [] } }));
    s[direction].rate.push(rate);
    s[direction].cpu.push(cpu);
  };
  const started = performance.now();
  for (let rep = 1; rep <= REPEATS; rep++) {
    for (const v of list) {
      const transfers: Transfer[] = (["c2s", "s2c"] as const).map((direction) => ({ direction, messageBytes: v.chunkBytes, totalBytes: bulkBytes }));
      if (v.small) {
        for (const direction of ["c2s", "s2c"] as const) {
          transfers.push({ direction, messageBytes: SMALL_MESSAGE_BYTES, totalBytes: smallMessages * SMALL_MESSAGE_BYTES });
        }
      }
      const trialStart = performance.now();
      const results = await trial(ctx, v, transfers);
      const trialSeconds = (performance.now() - trialStart) / 1000;
      const parts: string[] = [];
      for (const r of results) {
        if (r.messageBytes === SMALL_MESSAGE_BYTES) {
          const messages = r.totalBytes / r.messageBytes;
          const rate = messages / r.seconds;
          const cpu = (r.cpuSeconds * 1e6) / messages;
          add(v.small!, r.direction, rate, cpu);
          parts.push(`${r.direction} ${round(rate)} msg/s ${cpu.toFixed(1)} CPU µs/msg`);
        } else {
          const mbps = r.totalBytes / r.seconds / 1e6;
          const cpu = r.cpuSeconds / (r.totalBytes / 1e9);
          add(v.label, r.direction, mbps, cpu);
          parts.push(`${r.direction} ${round(mbps)} MB/s ${cpu.toFixed(2)} CPU s/GB`);
        }
      }
      ctx.log(`transports ${rep}/${REPEATS} ${v.label}: ${parts.join(", ")} (${trialSeconds.toFixed(1)} s with process start)`);
    }
  }
  const elapsed = (performance.now() - started) / 1000;

  const rows: BenchRow[] = [];
  const cpuRows: BenchRow[] = [];
  const sampleNotes: string[] = [];
  const smallLabels = new Set(list.flatMap((v) => (v.small ? [v.small] : [])));
  const labels = [...list.map((v) => v.label), ...smallLabels];
  for (const label of labels) {
    const s = samples.get(label)!;
    const small = smallLabels.has(label);
    rows.push({
      figure: label,
      unit: small ? "msg/s" : "MB/s",
      values: { [DIRECTIONS.c2s]: median(s.c2s.rate), [DIRECTIONS.s2c]: median(s.s2c.rate) },
      higherIsBetter: true,
    });
    cpuRows.push({
      figure: `CPU: ${label}`,
      unit: small ? "µs/msg" : "s/GB",
      values: { [DIRECTIONS.c2s]: median(s.c2s.cpu), [DIRECTIONS.s2c]: median(s.s2c.cpu) },
      higherIsBetter: false,
    });
    sampleNotes.push(`  ${label}: c2s ${s.c2s.rate.map(round).join(" / ")}; s2c ${s.s2c.rate.map(round).join(" / ")}`);
  }
  rows.push(...cpuRows);
  return {
    title: `Transports: one Tunnel-shaped streaming RPC, ${size(bulkBytes)} each way (medians of ${REPEATS})`,
    rows,
    notes: [
      `@grpc/grpc-js ${packageVersion(ctx.root, "@grpc/grpc-js")}, @connectrpc/connect-node ${packageVersion(ctx.root, "@connectrpc/connect-node")}. ` +
        `Client and server in separate node ${process.version} processes on 127.0.0.1 (h2c), a new pair per configuration and run (started together, the client waits for the port); ` +
        `each configuration ran ${REPEATS} times, interleaved with the others (run 1 of all, then run 2, ...), and the table shows the median.`,
      "MB/s = 10^6 payload bytes per second, from opening the call until the receiver has the last byte " +
        "(client->server: until the server's answer sent after counting every byte); each measured call follows a warm-up call of 1/16 of its size on the same connection.",
      "client->server is Warren's agent->server direction (a download from the workspace): the server's receive window governs it.",
      "grpc-js: identity serializers (raw Buffers, no protobuf); flow_control_window sets the client's stream and connection windows, the grpc-js server has no such option. " +
        "connect-node: gRPC protocol, generated TunnelRequest/TunnelResponse (protobuf copies each payload); 'windows raised' sets initialWindowSize and setLocalWindowSize on the node:http2 server and on the client session.",
      `Warren: node:http2 both sides, maxSessionMemory ${TUNNEL_WINDOWS.maxSessionMemoryMb} MB, windows ${size(WARREN.streamWindow)} stream / ${size(WARREN.sessionWindow)} connection unless the row says otherwise; ` +
        "TunnelSocket receives on both ends. 'TunnelSocket' rows write 64 KiB chunks through TunnelSocket; 'codec' rows write through a copy of TunnelSocket's write path " +
        "(256 KiB writable buffer, writev batches, corked, encodeTunnelData) with the message size as a parameter, since TunnelSocket splits at 64 KiB; " +
        "'unbatched' writes each encoded part with its own stream.write().",
      `1 KiB rows: ${smallMessages} messages of 1 KiB each way, each its own write()/yield, with backpressure.`,
      "CPU rows: user + system CPU time of both processes (all threads; the server's from /proc/PID/stat, 10 ms ticks) over the measured call, " +
        "per 10^9 payload bytes or per message. Less disturbed than MB/s by other load on this shared 2-core machine.",
      `Section took ${elapsed.toFixed(0)} s. Samples in run order:\n${sampleNotes.join("\n")}`,
    ],
  };
}

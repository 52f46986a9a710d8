// The two ends of the transport benchmark (scripts/bench/transports.ts), each run in a process of
// its own: `node dist/bench.cjs --transport-role server|client ...`. One streaming RPC per
// transfer, shaped like Warren's Tunnel rpc, over grpc-js, connect-node or Warren's own framing
// on node:http2.
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type Http2Stream, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import { spawnSync } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { createClient, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AgentService, TunnelRequestSchema, TunnelResponseSchema, type TunnelRequest } from "../../shared/gen/warren/v1/agent_pb.js";
import { encodeTunnelData } from "../../shared/tunnel-codec.js";
import { TunnelSocket } from "../../shared/tunnel-socket.js";
import { TUNNEL_WINDOWS } from "../../shared/tunnel-windows.js";
import { endWithStatus, respondOk } from "../../server/tunnel/grpc-responses.js";
import { waitForPort } from "./processes.js";

import { AGENT_TUNNEL_PATH as TUNNEL_PATH } from "../../shared/dial-protocol.js";
/** Request header (gRPC metadata) that tells the server what the client expects of this call. */
const TRANSFER_HEADER = "x-bench-transfer";

/**
 * grpc-js: both ends with identity serializers. connect: connect-node's gRPC protocol, generated
 * TunnelRequest/TunnelResponse. warren-socket: TunnelSocket on both ends, data written through
 * it. warren-codec: TunnelSocket reads; the sender is CodecWriter, TunnelSocket's write path with
 * the message size as a parameter (TunnelSocket splits at TUNNEL_WINDOWS.maxChunkBytes), or with
 * `unbatched`, one stream.write() per encoded part.
 */
export type TransportLib = "grpc-js" | "connect" | "warren-socket" | "warren-codec";

export interface TransportConfig {
  readonly lib: TransportLib;
  /**
   * Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE) on both ends; for grpc-js, the
   * client's grpc-node.flow_control_window (it also sets the client's connection window).
   * Absent: the library's default (65,535 bytes).
   */
  readonly streamWindow?: number;
  /** Connection-level receive window on both ends (session.setLocalWindowSize); not grpc-js. */
  readonly sessionWindow?: number;
  /** SETTINGS_MAX_FRAME_SIZE on both ends (warren only); absent: 16 KiB. */
  readonly maxFrameSize?: number;
  /** warren-codec: write each encoded part with its own stream.write(), no writev batches, no cork. */
  readonly unbatched?: boolean;
}

export type Direction = "c2s" | "s2c";

export interface Transfer {
  readonly direction: Direction;
  /** Payload bytes per message. */
  readonly messageBytes: number;
  /** Payload bytes in all (a multiple of messageBytes). */
  readonly totalBytes: number;
}

export interface TransferResult extends Transfer {
  readonly seconds: number;
  /** CPU time of both processes (user + system, all threads) during the transfer; NaN where /proc is missing. */
  readonly cpuSeconds: number;
}

const payloads = new Map<number, Buffer>();

/** One payload buffer per size, reused for every message: no side mutates what it sent. */
function payload(size: number): Buffer {
  let p = payloads.get(size);
  if (!p) {
    p = Buffer.alloc(size, 0x61);
    payloads.set(size, p);
  }
  return p;
}

interface DrainableWriter {
  write(chunk: Buffer): boolean;
  once(event: "drain", listener: () => void): unknown;
  once(event: "close", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

function drained(w: DrainableWriter): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      w.off("close", onClose);
      resolve();
    };
    const onClose = () => {
      w.off("drain", onDrain);
      reject(new Error("stream closed while writing"));
    };
    w.once("drain", onDrain);
    w.once("close", onClose);
  });
}

/** Writes the transfer's messages, one write each, waiting for 'drain' when write() says so. */
async function writeMessages(w: DrainableWriter, t: Transfer): Promise<void> {
  const chunk = payload(t.messageBytes);
  for (let sent = 0; sent < t.totalBytes; sent += t.messageBytes) {
    if (!w.write(chunk)) await drained(w);
  }
}

/** One data message per chunk, each encoded part written on its own: no batching, no cork. */
async function writeUnbatched(stream: Http2Stream, t: Transfer): Promise<void> {
  const chunk = payload(t.messageBytes);
  for (let sent = 0; sent < t.totalBytes; sent += t.messageBytes) {
    let ok = true;
    for (const part of encodeTunnelData(chunk)) ok = stream.write(part);
    if (!ok) await drained(stream);
  }
}

/**
 * TunnelSocket's write path (shared/tunnel-socket.ts #writeFrames) with the largest message as
 * a parameter: writes queue in a 256 KiB writable buffer, and each batch is encoded and written
 * corked, the payloads not copied.
 */
class CodecWriter extends Writable {
  readonly #stream: Http2Stream;
  readonly #maxChunkBytes: number;

  constructor(stream: Http2Stream, maxChunkBytes: number) {
    super({ highWaterMark: 256 * 1024 });
    this.#stream = stream;
    this.#maxChunkBytes = maxChunkBytes;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#writeFrames([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.#writeFrames(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  #writeFrames(chunks: Buffer[], callback: (err?: Error | null) => void): void {
    const stream = this.#stream;
    const max = this.#maxChunkBytes;
    let ok = true;
    stream.cork();
    for (const chunk of chunks) {
      for (let offset = 0; offset < chunk.length; offset += max) {
        const piece = offset === 0 && chunk.length <= max ? chunk : chunk.subarray(offset, offset + max);
        for (const part of encodeTunnelData(piece)) ok = stream.write(part);
      }
    }
    stream.uncork();
    if (ok) callback();
    else drained(stream).then(() => callback(), callback);
  }
}

/** Sends the transfer from a Warren end: through the TunnelSocket, a CodecWriter or unbatched. */
async function warrenSend(config: TransportConfig, socket: TunnelSocket, stream: Http2Stream, t: Transfer): Promise<void> {
  if (config.lib === "warren-socket") return writeMessages(socket, t);
  if (config.unbatched) return writeUnbatched(stream, t);
  const writer = new CodecWriter(stream, t.messageBytes);
  await writeMessages(writer, t);
  writer.end();
  await once(writer, "finish");
}

function checkReceived(t: Transfer, received: number, where: string): void {
  if (received !== t.totalBytes) throw new Error(`${where} received ${received} bytes, expected ${t.totalBytes}`);
}

// ---------------------------------------------------------------- servers

/** Starts the server for `config` on 127.0.0.1:port (0: any free port) and resolves with its port. */
export async function startTransportServer(config: TransportConfig, port = 0): Promise<number> {
  switch (config.lib) {
    case "grpc-js":
      return startGrpcJsServer(port);
    case "connect":
      return startConnectServer(config, port);
    case "warren-socket":
    case "warren-codec":
      return startWarrenServer(config, port);
  }
}

const identity = (b: Buffer) => b;
const GRPC_JS_TUNNEL: grpc.MethodDefinition<Buffer, Buffer> = {
  path: TUNNEL_PATH,
  requestStream: true,
  responseStream: true,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
};
const ACK = Buffer.alloc(0);

/** grpc-js server with default options: it has none for its receive windows. */
async function startGrpcJsServer(port: number): Promise<number> {
  const server = new grpc.Server();
  server.addService({ tunnel: GRPC_JS_TUNNEL }, {
    tunnel: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      const t = JSON.parse(String(call.metadata.get(TRANSFER_HEADER)[0])) as Transfer;
      let received = 0;
      call.on("error", () => {});
      call.on("data", (b: Buffer) => (received += b.length));
      if (t.direction === "c2s") {
        call.on("end", () => {
          checkReceived(t, received, "grpc-js server");
          call.write(ACK);
          call.end();
        });
      } else {
        void writeMessages(call, t).then(
          () => call.end(),
          () => {},
        );
      }
    },
  });
  return new Promise((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
}

/** connect-node's gRPC handler on a node:http2 server, with the configured windows. */
async function startConnectServer(config: TransportConfig, port: number): Promise<number> {
  const closeWrite = create(TunnelResponseSchema, { msg: { case: "closeWrite", value: {} } });
  const routes = (router: ConnectRouter) =>
    router.service(AgentService, {
      async *tunnel(requests: AsyncIterable<TunnelRequest>, ctx: HandlerContext) {
        const t = JSON.parse(ctx.requestHeader.get(TRANSFER_HEADER) ?? "") as Transfer;
        if (t.direction === "c2s") {
          let received = 0;
          for await (const r of requests) if (r.msg.case === "data") received += r.msg.value.length;
          checkReceived(t, received, "connect server");
          yield closeWrite;
          return;
        }
        const data = create(TunnelResponseSchema, { msg: { case: "data", value: payload(t.messageBytes) } });
        for (let sent = 0; sent < t.totalBytes; sent += t.messageBytes) yield data;
      },
    });
  const settings = config.streamWindow ? { initialWindowSize: config.streamWindow } : {};
  const server = http2.createServer({ settings }, connectNodeAdapter({ routes }));
  server.on("session", (session: ServerHttp2Session) => raiseSessionWindow(session, config.sessionWindow));
  return listen(server, port);
}

/** Warren's framing on node:http2, set up like server/tunnel/agent-endpoint.ts. */
async function startWarrenServer(config: TransportConfig, port: number): Promise<number> {
  const server = http2.createServer({ settings: h2Settings(config), maxSessionMemory: TUNNEL_WINDOWS.maxSessionMemoryMb });
  server.on("session", (session: ServerHttp2Session) => raiseSessionWindow(session, config.sessionWindow));
  server.on("stream", (stream: ServerHttp2Stream, headers) => {
    const t = JSON.parse(String(headers[TRANSFER_HEADER])) as Transfer;
    stream.on("error", () => {});
    respondOk(stream);
    const socket = new TunnelSocket({
      stream,
      inbound: TunnelRequestSchema,
      maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
      finish: (s) => endWithStatus(s as ServerHttp2Stream),
    });
    socket.on("error", (err) => process.stderr.write(`warren server socket: ${err.message}\n`));
    let received = 0;
    socket.on("data", (b: Buffer) => (received += b.length));
    if (t.direction === "c2s") {
      socket.on("end", () => {
        checkReceived(t, received, "warren server");
        socket.end();
      });
      return;
    }
    void warrenSend(config, socket, stream, t).then(
      () => socket.end(),
      () => {},
    );
  });
  return listen(server, port);
}

function h2Settings(config: TransportConfig): http2.Settings {
  return {
    ...(config.streamWindow ? { initialWindowSize: config.streamWindow } : {}),
    ...(config.maxFrameSize ? { maxFrameSize: config.maxFrameSize } : {}),
  };
}

function raiseSessionWindow(session: ServerHttp2Session, bytes: number | undefined): void {
  session.on("error", () => {});
  if (!bytes) return;
  session.once("remoteSettings", () => {
    if (!session.destroyed) session.setLocalWindowSize(bytes);
  });
}

async function listen(server: http2.Http2Server, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return (server.address() as { port: number }).port;
}

// ---------------------------------------------------------------- clients

/** Linux clock ticks per second, the unit of utime/stime in /proc/PID/stat. */
function clockTicks(): number {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
}

/** User + system CPU seconds of a process so far (all its threads), or NaN without /proc. */
function processCpuSeconds(pid: number, ticks: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After "pid (comm) ": state is field 3, utime field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / ticks;
  } catch {
    return Number.NaN;
  }
}

function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/**
 * Connects to the server on `port` and runs the transfers one after another on one connection,
 * each as one call. Before each, a warm-up call of a sixteenth of its size (JIT, windows).
 * The time of a transfer runs from opening the call to its last byte at the receiver: for
 * client-to-server, until the server's answer sent after it counted every byte. CPU time is
 * this process's plus the server's (read from /proc/serverPid/stat) over the same interval.
 */
export async function runTransportClient(config: TransportConfig, port: number, serverPid: number, transfers: Transfer[]): Promise<TransferResult[]> {
  const client = await connectClient(config, port);
  const ticks = clockTicks();
  const cpu = () => ownCpuSeconds() + processCpuSeconds(serverPid, ticks);
  const results: TransferResult[] = [];
  try {
    for (const t of transfers) {
      const warmMessages = Math.max(64, Math.floor(t.totalBytes / t.messageBytes / 16));
      await client.run({ ...t, totalBytes: warmMessages * t.messageBytes });
      const cpuStart = cpu();
      const start = performance.now();
      await client.run(t);
      const seconds = (performance.now() - start) / 1000;
      results.push({ ...t, seconds, cpuSeconds: cpu() - cpuStart });
    }
  } finally {
    client.close();
  }
  return results;
}

interface BenchClient {
  /** One call moving the transfer; resolves once the last byte reached the receiver. */
  run(t: Transfer): Promise<void>;
  close(): void;
}

async function connectClient(config: TransportConfig, port: number): Promise<BenchClient> {
  switch (config.lib) {
    case "grpc-js":
      return grpcJsClient(config, port);
    case "connect":
      return connectClientFor(config, port);
    case "warren-socket":
    case "warren-codec":
      return warrenClient(config, port);
  }
}

async function grpcJsClient(config: TransportConfig, port: number): Promise<BenchClient> {
  const options: grpc.ChannelOptions = config.streamWindow ? { "grpc-node.flow_control_window": config.streamWindow } : {};
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())));
  return {
    async run(t) {
      const metadata = new grpc.Metadata();
      metadata.set(TRANSFER_HEADER, JSON.stringify(t));
      const call = client.makeBidiStreamRequest(TUNNEL_PATH, identity, identity, metadata);
      let received = 0;
      call.on("data", (b: Buffer) => (received += b.length));
      const ended = once(call, "end");
      const status = new Promise<void>((resolve, reject) =>
        call.on("status", (s: grpc.StatusObject) => (s.code === grpc.status.OK ? resolve() : reject(new Error(`grpc-js status ${s.code}: ${s.details}`)))),
      );
      status.catch(() => {});
      if (t.direction === "c2s") await writeMessages(call, t);
      call.end();
      await Promise.all([ended, status]);
      if (t.direction === "s2c") checkReceived(t, received, "grpc-js client");
    },
    close: () => client.close(),
  };
}

/** An Http2SessionManager that raises the connection's receive window once it is open. */
class RaisedWindowSessionManager extends Http2SessionManager {
  readonly #sessionWindow: number;
  readonly #raised = new WeakSet<ClientHttp2Session>();

  constructor(url: string, sessionWindow: number, options: http2.ClientSessionOptions) {
    super(url, {}, options);
    this.#sessionWindow = sessionWindow;
  }

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session as ClientHttp2Session | undefined;
    if (session && !this.#raised.has(session)) {
      this.#raised.add(session);
      session.setLocalWindowSize(this.#sessionWindow);
    }
    return stream;
  }
}

async function connectClientFor(config: TransportConfig, port: number): Promise<BenchClient> {
  const baseUrl = `http://127.0.0.1:${port}`;
  const nodeOptions: http2.ClientSessionOptions = config.streamWindow ? { settings: { initialWindowSize: config.streamWindow } } : {};
  const sessionManager = config.sessionWindow
    ? new RaisedWindowSessionManager(baseUrl, config.sessionWindow, nodeOptions)
    : new Http2SessionManager(baseUrl, {}, nodeOptions);
  const transport = createGrpcTransport({ baseUrl, sessionManager });
  const client = createClient(AgentService, transport);
  return {
    async run(t) {
      const data = create(TunnelRequestSchema, { msg: { case: "data", value: payload(t.messageBytes) } });
      async function* requests(): AsyncGenerator<TunnelRequest> {
        if (t.direction === "s2c") return;
        for (let sent = 0; sent < t.totalBytes; sent += t.messageBytes) yield data;
      }
      let received = 0;
      for await (const res of client.tunnel(requests(), { headers: { [TRANSFER_HEADER]: JSON.stringify(t) } })) {
        if (res.msg.case === "data") received += res.msg.value.length;
      }
      if (t.direction === "s2c") checkReceived(t, received, "connect client");
    },
    close: () => sessionManager.abort(),
  };
}

/** Warren's framing, set up like agent/agent-session.ts and agent/tunnel-pool.ts. */
async function warrenClient(config: TransportConfig, port: number): Promise<BenchClient> {
  const session = http2.connect(`http://127.0.0.1:${port}`, {
    settings: { ...h2Settings(config), enablePush: false },
    maxSessionMemory: TUNNEL_WINDOWS.maxSessionMemoryMb,
  });
  session.on("error", () => {});
  await once(session, "connect");
  if (config.sessionWindow) session.setLocalWindowSize(config.sessionWindow);
  return {
    async run(t) {
      const stream = session.request(
        { ":method": "POST", ":path": TUNNEL_PATH, "content-type": "application/grpc", te: "trailers", [TRANSFER_HEADER]: JSON.stringify(t) },
        { endStream: false },
      );
      stream.on("error", () => {});
      const socket = new TunnelSocket({
        stream,
        inbound: TunnelResponseSchema,
        maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
        finish: (s) => s.end(),
      });
      let received = 0;
      socket.on("data", (b: Buffer) => (received += b.length));
      const ended = once(socket, "end");
      if (t.direction === "c2s") {
        await warrenSend(config, socket, stream, t);
      }
      socket.end();
      await ended;
      if (t.direction === "s2c") checkReceived(t, received, "warren client");
      if (!socket.destroyed) await once(socket, "close");
    },
    close: () => session.destroy(),
  };
}

/** Entry point of `node dist/bench.cjs --transport-role server|client`. */
export async function runTransportRole(args: string[]): Promise<void> {
  const arg = (name: string) => {
    const i = args.indexOf(name);
    if (i < 0 || i + 1 >= args.length) throw new Error(`missing ${name}`);
    return args[i + 1]!;
  };
  const role = arg("--transport-role");
  const config = JSON.parse(arg("--transport-config")) as TransportConfig;
  if (role === "server") {
    const port = await startTransportServer(config, Number(arg("--port")));
    process.stdout.write(`transport server listening on ${port}\n`);
    process.once("SIGTERM", () => process.exit(0));
    return;
  }
  if (role === "client") {
    const transfers = JSON.parse(arg("--transfers")) as Transfer[];
    const port = Number(arg("--port"));
    // Started together with the server: wait until it listens.
    await waitForPort(port, 20_000, "transport server");
    const results = await runTransportClient(config, port, Number(arg("--server-pid")), transfers);
    process.stdout.write(`transport results ${JSON.stringify(results)}\n`);
    process.exit(0);
  }
  throw new Error(`unknown transport role ${role}`);
}

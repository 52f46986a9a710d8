import type { ClientHttp2Session, ClientHttp2Stream } from "node:http2";
import { TunnelResponseSchema, type TunnelResponse } from "../shared/gen/warren/v1/agent_pb.js";
import { ErrorCode, WarrenError } from "../shared/errors.js";
import { decodeGrpcStatusMessage as decodeStatusText } from "../shared/grpc-status.js";
import type { Logger } from "../shared/logger.js";
import { TunnelSocket } from "../shared/tunnel-socket.js";
import { TUNNEL_WINDOWS } from "../shared/tunnel-windows.js";
import { handleDial } from "./local-dial.js";
import type { AllowedPorts } from "./allowed-ports.js";
import { AGENT_TUNNEL_PATH } from "../shared/dial-protocol.js";

export interface PoolSettings {
  readonly minIdle: number;
  readonly maxStreams: number;
  readonly burst: number;
  readonly idleTimeoutMs: number;
}

export interface TunnelPoolOptions {
  readonly session: ClientHttp2Session;
  readonly headers: Record<string, string>;
  readonly settings: PoolSettings;
  readonly allowedPorts: ReadonlySet<number> | AllowedPorts;
  readonly dialTimeoutMs: number;
  readonly log: Logger;
}

interface PoolEntry {
  readonly stream: ClientHttp2Stream;
  readonly socket: TunnelSocket;
  state: "idle" | "busy";
  idleSince: number;
}

/** After the server refuses a stream, wait this long before opening more. */
const REFUSAL_COOLDOWN_MS = 1000;
const RETIRE_CHECK_MS = 5000;

/**
 * The agent's pool of tunnel streams on one connection. It keeps `minIdle` streams idle,
 * replaces each stream the server claims, opens `burst` more when the idle pool runs low or as
 * many as the server asks for, never exceeds `maxStreams`, and retires streams idle for longer
 * than `idleTimeoutMs` beyond the minimum.
 */
export class TunnelPool {
  readonly #options: TunnelPoolOptions;
  readonly #entries = new Set<PoolEntry>();
  #idle = 0;
  #draining = false;
  #closed = false;
  #cooldownUntil = 0;
  #cooldownTimer: NodeJS.Timeout | undefined;
  /** Streams asked for during a cooldown: opened when it ends, not forgotten. */
  #owed = 0;
  readonly #retireTimer: NodeJS.Timeout;
  readonly #active = new Set<Promise<void>>();

  constructor(options: TunnelPoolOptions) {
    this.#options = options;
    this.#retireTimer = setInterval(() => this.#retireIdle(), RETIRE_CHECK_MS);
    this.#retireTimer.unref();
  }

  get idleCount(): number {
    return this.#idle;
  }

  get busyCount(): number {
    return this.#entries.size - this.#idle;
  }

  /** Opens streams up to the minimum idle count. */
  fill(): void {
    this.#open(this.#options.settings.minIdle - this.#idle);
  }

  /** The server asked for more streams under a burst. */
  openMore(count: number): void {
    this.#open(count);
  }

  /** Stops taking dials: closes idle streams; busy ones go on. */
  drain(): void {
    this.#draining = true;
    for (const entry of this.#entries) if (entry.state === "idle") this.#closeEntry(entry);
  }

  /** Resolves when every busy connection has finished. */
  async whenIdle(): Promise<void> {
    while (this.#active.size > 0) await Promise.allSettled([...this.#active]);
  }

  /**
   * Ends every stream: each is reset, or with `resetStreams: false` (a session that is going
   * away) only let go of, for the session's own teardown to end.
   */
  close(options: { resetStreams?: boolean } = {}): void {
    this.#closed = true;
    this.#draining = true;
    clearInterval(this.#retireTimer);
    clearTimeout(this.#cooldownTimer);
    for (const entry of this.#entries) {
      if (options.resetStreams === false) entry.socket.detach();
      else entry.socket.destroy();
    }
  }

  #open(count: number): void {
    const { maxStreams } = this.#options.settings;
    const room = maxStreams - this.#entries.size;
    const n = Math.min(count, room);
    if (n <= 0 || this.#draining || this.#closed || this.#options.session.closed || this.#options.session.destroyed) return;
    const wait = this.#cooldownUntil - Date.now();
    if (wait > 0) {
      // The server asked for these: a burst of waiting connections must not lose them to a
      // cooldown (they waited out the server's stream wait and got 503).
      this.#owed = Math.max(this.#owed, n);
      this.#cooldownTimer ??= setTimeout(() => {
        this.#cooldownTimer = undefined;
        const owed = this.#owed;
        this.#owed = 0;
        this.#open(Math.max(owed, this.#options.settings.minIdle - this.#idle));
      }, wait);
      return;
    }
    for (let i = 0; i < n; i++) this.#openOne();
  }

  #openOne(): void {
    let stream: ClientHttp2Stream;
    try {
      stream = this.#options.session.request({ ":method": "POST", ":path": AGENT_TUNNEL_PATH, ...this.#options.headers }, { endStream: false });
    } catch (err) {
      this.#options.log.debug({ err: (err as Error).message }, "could not open a tunnel stream");
      return;
    }
    stream.on("error", () => {
      // Resets end up in 'close'; the socket reports what matters.
    });
    const entry: PoolEntry = {
      stream,
      state: "idle",
      idleSince: Date.now(),
      socket: new TunnelSocket({
        stream,
        inbound: TunnelResponseSchema,
        maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
        handshake: true,
        finish: (s) => s.end(),
        onControlMessage: (message: TunnelResponse) => this.#onMessage(entry, message),
      }),
    };
    entry.socket.on("error", (err) => {
      if (err instanceof WarrenError && err.code === ErrorCode.InvalidArgument) {
        this.#options.log.warn({ err: err.message }, "server broke the tunnel protocol");
      }
    });
    stream.once("response", (headers) => {
      const status = headers["grpc-status"];
      if (status !== undefined && status !== "0") {
        // Trailers-only: the server refused this stream (limit reached, draining...).
        this.#cooldownUntil = Date.now() + REFUSAL_COOLDOWN_MS;
        this.#options.log.warn({ grpcStatus: status, message: decodeStatusText(headers["grpc-message"] as string | undefined) }, "server refused a tunnel stream");
      }
    });
    entry.socket.on("close", () => this.#onClose(entry));
    this.#entries.add(entry);
    this.#idle++;
  }

  #onMessage(entry: PoolEntry, message: TunnelResponse): void {
    if (message.msg.case !== "dial" || entry.state !== "idle") {
      throw new WarrenError(ErrorCode.InvalidArgument, `unexpected ${message.msg.case ?? "empty"} message on a tunnel stream`);
    }
    entry.state = "busy";
    this.#idle--;
    entry.socket.completeHandshake();
    // Replace the stream just taken; open a burst when the pool runs low.
    const { minIdle, burst } = this.#options.settings;
    if (this.#idle < minIdle) this.#open(Math.max(minIdle - this.#idle, burst));
    const done = handleDial({
      socket: entry.socket,
      stream: entry.stream,
      dial: message.msg.value,
      allowedPorts: this.#options.allowedPorts,
      draining: this.#draining,
      timeoutMs: this.#options.dialTimeoutMs,
      log: this.#options.log,
    });
    this.#active.add(done);
    void done.finally(() => this.#active.delete(done));
  }

  #onClose(entry: PoolEntry): void {
    if (!this.#entries.delete(entry)) return;
    if (entry.state === "idle") {
      this.#idle--;
      // An idle stream closed under us (server limit, server draining): keep the minimum.
      if (!this.#draining && !this.#closed) this.fill();
    }
  }

  /**
   * Retires an idle stream by ending our side (the server answers with its status and the
   * stream closes cleanly), not with RST_STREAM: the server counts the resets it receives.
   */
  #closeEntry(entry: PoolEntry): void {
    if (entry.state !== "idle") return;
    if (!entry.stream.closed && !entry.stream.destroyed && !entry.stream.writableEnded) entry.stream.end();
  }

  #retireIdle(): void {
    const { minIdle, idleTimeoutMs } = this.#options.settings;
    let surplus = this.#idle - minIdle;
    if (surplus <= 0) return;
    const cutoff = Date.now() - idleTimeoutMs;
    for (const entry of this.#entries) {
      if (surplus <= 0) break;
      if (entry.state === "idle" && entry.idleSince < cutoff) {
        this.#closeEntry(entry);
        surplus--;
      }
    }
  }
}

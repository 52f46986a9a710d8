import type { ClientHttp2Session, ClientHttp2Stream } from "node:http2";
import { systemClock, type Clock, type Timer } from "../shared/clock.js";
import { TunnelResponseSchema, type TunnelResponse } from "../shared/gen/warren/v1/agent_pb.js";
import { ErrorCode, WarrenError } from "../shared/errors.js";
import { decodeGrpcStatusMessage as decodeStatusText } from "../shared/grpc-status.js";
import type { Logger } from "../shared/logger.js";
import { TunnelSocket } from "../shared/tunnel-socket.js";
import { TUNNEL_WINDOWS } from "../shared/tunnel-windows.js";
import { handleDial, type LocalDialOptions } from "./local-dial.js";
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
  /** Time for the refusal cooldown and the retiring of idle streams; the system clock by default. */
  readonly clock?: Clock;
  /** Answers a dial on a claimed stream (handleDial by default: a connection to 127.0.0.1). */
  readonly handleDial?: (options: LocalDialOptions) => Promise<void>;
}

/** Where a tunnel pool is in its life; only TunnelPool.#transition changes it. */
export enum TunnelPoolState {
  /** Keeps `minIdle` streams idle and opens what the server asks for. */
  Open = "open",
  /** The server refused a stream: none opens until the cooldown ends; what is asked meanwhile is owed. */
  CoolingDown = "cooling-down",
  /** drain(): idle streams are ended and none opens; busy ones go on. */
  Draining = "draining",
  /** close(): every stream is reset or let go. Final. */
  Closed = "closed",
}

const TRANSITIONS: Readonly<Record<TunnelPoolState, readonly TunnelPoolState[]>> = {
  [TunnelPoolState.Open]: [TunnelPoolState.CoolingDown, TunnelPoolState.Draining, TunnelPoolState.Closed],
  [TunnelPoolState.CoolingDown]: [TunnelPoolState.Open, TunnelPoolState.Draining, TunnelPoolState.Closed],
  [TunnelPoolState.Draining]: [TunnelPoolState.Closed],
  [TunnelPoolState.Closed]: [],
};

/** Whether a tunnel pool may go from one state to another. */
export function mayTransition(from: TunnelPoolState, to: TunnelPoolState): boolean {
  return TRANSITIONS[from].includes(to);
}

interface PoolEntry {
  readonly stream: ClientHttp2Stream;
  readonly socket: TunnelSocket;
  state: "idle" | "busy";
  idleSince: number;
}

/** After the server refuses a stream, wait this long before opening more. */
export const REFUSAL_COOLDOWN_MS = 1000;
/** How often idle streams beyond the minimum are checked for retiring. */
export const RETIRE_CHECK_MS = 5000;

/**
 * The agent's pool of tunnel streams on one connection. It keeps `minIdle` streams idle,
 * replaces each stream the server claims, opens `burst` more when the idle pool runs low or as
 * many as the server asks for, never exceeds `maxStreams`, and retires streams idle for longer
 * than `idleTimeoutMs` beyond the minimum.
 */
export class TunnelPool {
  readonly #options: TunnelPoolOptions;
  readonly #clock: Clock;
  readonly #handleDial: (options: LocalDialOptions) => Promise<void>;
  readonly #entries = new Set<PoolEntry>();
  #idle = 0;
  #state = TunnelPoolState.Open;
  /** While cooling down: when the cooldown ends (a later refusal moves it on). */
  #cooldownUntil = 0;
  #cooldownTimer: Timer | undefined;
  /** Streams asked for during a cooldown: opened when it ends, not forgotten. */
  #owed = 0;
  readonly #retireTimer: Timer;
  readonly #active = new Set<Promise<void>>();

  constructor(options: TunnelPoolOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#handleDial = options.handleDial ?? handleDial;
    this.#retireTimer = this.#clock.setInterval(() => this.#retireIdle(), RETIRE_CHECK_MS);
    this.#retireTimer.unref();
  }

  get state(): TunnelPoolState {
    return this.#state;
  }

  /** Whether the pool keeps its streams topped up (not draining or closed). */
  get #refills(): boolean {
    return this.#state === TunnelPoolState.Open || this.#state === TunnelPoolState.CoolingDown;
  }

  /**
   * The one place the state changes. Refuses (false) a change the table does not allow,
   * staying put: callers use that as their "already done" guard. Logs every change at debug.
   */
  #transition(to: TunnelPoolState, why: string): boolean {
    const from = this.#state;
    if (!mayTransition(from, to)) return false;
    this.#state = to;
    this.#options.log.debug({ from, to, why }, "tunnel pool state");
    return true;
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
    if (!this.#transition(TunnelPoolState.Draining, "draining")) return;
    this.#clock.clearTimer(this.#cooldownTimer);
    this.#cooldownTimer = undefined;
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
    if (!this.#transition(TunnelPoolState.Closed, options.resetStreams === false ? "closed; streams let go" : "closed; streams reset")) return;
    this.#clock.clearTimer(this.#retireTimer);
    this.#clock.clearTimer(this.#cooldownTimer);
    this.#cooldownTimer = undefined;
    for (const entry of this.#entries) {
      if (options.resetStreams === false) entry.socket.detach();
      else entry.socket.destroy();
    }
  }

  #open(count: number): void {
    const { maxStreams } = this.#options.settings;
    const room = maxStreams - this.#entries.size;
    const n = Math.min(count, room);
    if (n <= 0 || !this.#refills || this.#options.session.closed || this.#options.session.destroyed) return;
    if (this.#state === TunnelPoolState.CoolingDown) {
      // The server asked for these: a burst of waiting connections must not lose them to a
      // cooldown (they waited out the server's stream wait and got 503).
      this.#owed = Math.max(this.#owed, n);
      return;
    }
    for (let i = 0; i < n; i++) this.#openOne();
  }

  /** The server refused a stream: open nothing for a while, then what was owed meanwhile. */
  #coolDown(why: string): void {
    this.#cooldownUntil = this.#clock.now() + REFUSAL_COOLDOWN_MS;
    if (this.#transition(TunnelPoolState.CoolingDown, why)) this.#endCooldownIn(REFUSAL_COOLDOWN_MS);
  }

  #endCooldownIn(ms: number): void {
    this.#cooldownTimer = this.#clock.setTimeout(() => {
      this.#cooldownTimer = undefined;
      // Another refusal meanwhile moved the end on.
      const wait = this.#cooldownUntil - this.#clock.now();
      if (wait > 0) {
        this.#endCooldownIn(wait);
        return;
      }
      if (!this.#transition(TunnelPoolState.Open, "cooldown over")) return;
      const owed = this.#owed;
      this.#owed = 0;
      this.#open(Math.max(owed, this.#options.settings.minIdle - this.#idle));
    }, ms);
    this.#cooldownTimer.unref();
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
      idleSince: this.#clock.now(),
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
        this.#options.log.warn({ grpcStatus: status, message: decodeStatusText(headers["grpc-message"] as string | undefined) }, "server refused a tunnel stream");
        this.#coolDown(`server refused a tunnel stream (gRPC status ${status})`);
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
    const done = this.#handleDial({
      socket: entry.socket,
      stream: entry.stream,
      dial: message.msg.value,
      allowedPorts: this.#options.allowedPorts,
      draining: !this.#refills,
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
      if (this.#refills) this.fill();
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
    const cutoff = this.#clock.now() - idleTimeoutMs;
    for (const entry of this.#entries) {
      if (surplus <= 0) break;
      if (entry.state === "idle" && entry.idleSince < cutoff) {
        this.#closeEntry(entry);
        surplus--;
      }
    }
  }
}

import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { create } from "@bufbuild/protobuf";
import {
  ControlRequestSchema,
  ControlResponseSchema,
  DisconnectReason,
  type ControlRequest,
  type ControlResponse,
  type Welcome,
  type WorkspaceDesiredState,
} from "../shared/gen/warren/v1/agent_pb.js";
import { GrpcFrameDecoder } from "../shared/grpc-frame-decoder.js";
import { decodeGrpcMessage, encodeGrpcMessage } from "../shared/grpc-message.js";
import { decodeGrpcMessage as decodeStatusText, GrpcStatus } from "../shared/grpc-status.js";
import type { Logger } from "../shared/logger.js";
import { noDelayConnector } from "../shared/http2-sockets.js";
import { TUNNEL_WINDOWS } from "../shared/tunnel-windows.js";
import { VERSION } from "../shared/version.js";
import { TunnelPool, type PoolSettings } from "./tunnel-pool.js";
import { AllowedPorts } from "./allowed-ports.js";

const CONTROL_PATH = "/warren.v1.AgentService/Control";
const WELCOME_TIMEOUT_MS = 15_000;
const PING_INTERVAL_MS = 20_000;
const MAX_CONTROL_MESSAGE_BYTES = 4 * 1024 * 1024;

/** How a session ended, which decides what the agent does next. */
export type SessionEnd =
  /** The server will never accept this token again (revoked, expired, workspace gone): exit. */
  | { readonly kind: "rejected"; readonly message: string }
  /**
   * The server is draining: reconnect at once, to another server when there is one. When the
   * server asked with a SERVER_DRAINING disconnect, the session is handed off rather than
   * over: it goes on carrying its streams until drain() or until the server closes it.
   */
  | { readonly kind: "server-draining"; readonly message: string }
  /** Network trouble or a server error: reconnect with backoff. */
  | { readonly kind: "lost"; readonly message: string }
  /** We closed it (shutdown). */
  | { readonly kind: "closed" };

export interface AgentSessionOptions {
  readonly server: URL;
  readonly token: string;
  readonly ca?: Buffer;
  readonly instanceId: string;
  readonly pool: PoolSettings;
  readonly dialTimeoutMs: number;
  readonly log: Logger;
  /** The server welcomed us: the tunnel is ready. */
  readonly onReady?: (welcome: Welcome) => void;
  readonly onDesiredState?: (state: WorkspaceDesiredState) => void;
}

/**
 * One connection of the agent to one server: an HTTP/2 session with its control stream and
 * its pool of tunnel streams. run() resolves with how it ended, or with server-draining as
 * soon as the server asks the agent to move (see handedOff); it never rejects.
 */
export class AgentSession {
  readonly #options: AgentSessionOptions;
  #session: ClientHttp2Session | undefined;
  #control: ClientHttp2Stream | undefined;
  #pool: TunnelPool | undefined;
  #end: SessionEnd | undefined;
  #resolveEnd: ((end: SessionEnd) => void) | undefined;
  #welcome: Welcome | undefined;
  #allowedPorts: AllowedPorts | undefined;
  #handedOff = false;
  #resolveClosed!: () => void;
  readonly #closed = new Promise<void>((resolve) => (this.#resolveClosed = resolve));

  constructor(options: AgentSessionOptions) {
    this.#options = options;
  }

  /**
   * Whether the server asked this agent to move while the session stays open: run() has
   * resolved, and the session carries its streams in flight (and takes the dials the server
   * still sends) until drain() or until the server closes it.
   */
  get handedOff(): boolean {
    return this.#handedOff && this.#end === undefined;
  }

  /** Resolves once the connection is closed, whatever the reason. Never rejects. */
  whenClosed(): Promise<void> {
    return this.#closed;
  }

  get welcome(): Welcome | undefined {
    return this.#welcome;
  }

  get busyCount(): number {
    return this.#pool?.busyCount ?? 0;
  }

  run(): Promise<SessionEnd> {
    return new Promise<SessionEnd>((resolve) => {
      this.#resolveEnd = resolve;
      this.#connect();
    });
  }

  /**
   * Sends a message on the control stream (workload state, draining). Resolves true once it is
   * written out, false when there is no open control stream; never rejects.
   */
  send(message: ControlRequest): Promise<boolean> {
    const control = this.#control;
    if (!control || control.destroyed || control.writableEnded) return Promise.resolve(false);
    return new Promise((resolve) => control.write(encodeGrpcMessage(ControlRequestSchema, message), (err) => resolve(!err)));
  }

  /**
   * Graceful stop: tell the server to send no more connections, close idle streams, let open
   * connections finish for up to `timeoutMs`, then close.
   */
  async drain(timeoutMs: number): Promise<void> {
    void this.send(create(ControlRequestSchema, { msg: { case: "draining", value: {} } }));
    const pool = this.#pool;
    if (pool) {
      pool.drain();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([pool.whenIdle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
    }
    this.close();
  }

  close(): void {
    this.#finish({ kind: "closed" });
  }

  #finish(end: SessionEnd): void {
    if (this.#end) return;
    this.#end = end;
    this.#pool?.close();
    const session = this.#session;
    if (session && !session.destroyed) {
      session.close();
      setTimeout(() => session.destroy(), 1000).unref();
    }
    // A handed-off session has already answered run(); a second resolve does nothing.
    this.#resolveEnd?.(end);
    this.#resolveClosed();
  }

  /** The server asked us to move: run() answers now, the connection stays for its streams. */
  #handOff(message: string): void {
    if (this.#end || this.#handedOff) return;
    this.#handedOff = true;
    this.#options.log.info(
      { server: this.#options.server.origin, busyStreams: this.busyCount, reason: message },
      "the server asked this agent to move: connecting again, while this connection finishes its open streams",
    );
    this.#resolveEnd?.({ kind: "server-draining", message });
  }

  #connect(): void {
    const { server, log } = this.#options;
    let session: ClientHttp2Session;
    try {
      session = http2.connect(server.origin, {
        settings: {
          initialWindowSize: TUNNEL_WINDOWS.streamWindowBytes,
          maxFrameSize: TUNNEL_WINDOWS.maxFrameBytes,
          enablePush: false,
        },
        maxSessionMemory: TUNNEL_WINDOWS.maxSessionMemoryMb,
        createConnection: noDelayConnector(server, { ca: this.#options.ca }),
      });
    } catch (err) {
      this.#finish({ kind: "lost", message: (err as Error).message });
      return;
    }
    this.#session = session;
    session.on("error", (err: NodeJS.ErrnoException) => {
      this.#finish({ kind: "lost", message: err.code === "ECONNREFUSED" ? `connection refused by ${server.host}` : err.message });
    });
    session.on("close", () => this.#finish({ kind: "lost", message: "connection closed" }));
    session.on("goaway", (code) => log.debug({ code }, "server sent GOAWAY"));
    session.once("connect", () => {
      try {
        session.setLocalWindowSize(TUNNEL_WINDOWS.sessionWindowBytes);
      } catch {
        // Session already gone: the close handler reports it.
      }
      this.#startPing(session);
      this.#openControl(session);
    });
  }

  #startPing(session: ClientHttp2Session): void {
    const timer = setInterval(() => {
      // Destroyed, but node emits 'close' on a later turn of the loop: ping() would throw (and
      // take the agent down) when this timer fires in between, as it does for a handed-off
      // session destroyed from a timer.
      if (session.destroyed) {
        clearInterval(timer);
        return;
      }
      let answered = false;
      const ok = session.ping((err) => {
        answered = true;
        if (err && !session.destroyed) this.#finish({ kind: "lost", message: `ping failed: ${err.message}` });
      });
      if (!ok) return;
      setTimeout(() => {
        if (!answered && !session.destroyed) {
          this.#finish({ kind: "lost", message: "server stopped answering pings" });
          session.destroy();
        }
      }, PING_INTERVAL_MS).unref();
    }, PING_INTERVAL_MS);
    timer.unref();
    session.once("close", () => clearInterval(timer));
  }

  #headers(): Record<string, string> {
    return {
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${this.#options.token}`,
      "user-agent": `warren-agent/${VERSION}`,
    };
  }

  #openControl(session: ClientHttp2Session): void {
    const control = session.request({ ":method": "POST", ":path": CONTROL_PATH, ...this.#headers() }, { endStream: false });
    this.#control = control;
    const welcomeTimer = setTimeout(() => {
      if (!this.#welcome) this.#finish({ kind: "lost", message: "server sent no welcome in time" });
    }, WELCOME_TIMEOUT_MS);
    welcomeTimer.unref();
    control.on("error", () => {
      // The close handler decides.
    });
    const onStatus = (headers: IncomingHttpHeaders) => {
      const status = headers["grpc-status"];
      if (status === undefined) return;
      const message = decodeStatusText(headers["grpc-message"] as string | undefined) || `gRPC status ${status}`;
      const code = Number(status);
      if (code === GrpcStatus.UNAUTHENTICATED || code === GrpcStatus.PERMISSION_DENIED) this.#finish({ kind: "rejected", message });
      else if (code === GrpcStatus.UNAVAILABLE && /shutting down/.test(message)) this.#finish({ kind: "server-draining", message });
      else this.#finish({ kind: "lost", message });
    };
    control.on("response", (headers) => {
      const httpStatus = headers[":status"];
      if (httpStatus !== 200) {
        this.#finish({ kind: "lost", message: `server answered HTTP ${httpStatus} on the agent endpoint; is WARREN_SERVER the agent address?` });
        return;
      }
      onStatus(headers);
    });
    control.on("trailers", onStatus);
    control.on("close", () => {
      clearTimeout(welcomeTimer);
      this.#finish({ kind: "lost", message: "control stream closed" });
    });
    const decoder = new GrpcFrameDecoder(MAX_CONTROL_MESSAGE_BYTES);
    control.on("data", (chunk: Buffer) => {
      let messages: Buffer[];
      try {
        messages = decoder.push(chunk);
        for (const payload of messages) this.#onControlMessage(session, decodeGrpcMessage(ControlResponseSchema, payload));
      } catch (err) {
        this.#finish({ kind: "lost", message: `bad control message from server: ${(err as Error).message}` });
      }
    });
    void this.send(
      create(ControlRequestSchema, {
        msg: {
          case: "hello",
          value: {
            version: VERSION,
            instanceId: this.#options.instanceId,
            minIdle: this.#options.pool.minIdle,
            maxStreams: this.#options.pool.maxStreams,
          },
        },
      }),
    );
  }

  #onControlMessage(session: ClientHttp2Session, message: ControlResponse): void {
    const { log } = this.#options;
    switch (message.msg.case) {
      case "welcome": {
        if (this.#welcome) return;
        const welcome = message.msg.value;
        this.#welcome = welcome;
        if (welcome.serverVersion !== VERSION) {
          log.warn({ serverVersion: welcome.serverVersion, agentVersion: VERSION }, "server version differs from the agent's");
        }
        const pool = new TunnelPool({
          session,
          headers: this.#headers(),
          settings: { ...this.#options.pool, maxStreams: Math.min(this.#options.pool.maxStreams, welcome.maxStreams || Infinity) },
          allowedPorts: this.#allowedPorts = new AllowedPorts(welcome.allowedPorts),
          dialTimeoutMs: this.#options.dialTimeoutMs,
          log,
        });
        this.#pool = pool;
        pool.fill();
        this.#options.onReady?.(welcome);
        return;
      }
      case "openStreams":
        this.#pool?.openMore(message.msg.value.count);
        return;
      case "disconnect": {
        const { reason, message: text } = message.msg.value;
        if (reason === DisconnectReason.REVOKED) this.#finish({ kind: "rejected", message: text });
        else if (reason === DisconnectReason.SERVER_DRAINING) this.#handOff(text);
        else this.#finish({ kind: "lost", message: text || "server closed the connection" });
        return;
      }
      case "allowedPorts": {
        const removed = this.#allowedPorts?.replace(message.msg.value.ports) ?? [];
        log.info({ event: "ports", ports: message.msg.value.ports, closed: removed }, `allowed ports now: ${message.msg.value.ports.join(", ") || "none"}`);
        return;
      }
      case "desiredState":
        this.#options.onDesiredState?.(message.msg.value.state);
        return;
      default:
        // A newer server's message: ignore it.
        return;
    }
  }
}

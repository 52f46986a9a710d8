import tls from "node:tls";
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { ControlRequestSchema, ControlResponseSchema, DisconnectReason, type ControlRequest, type ControlResponse, type Welcome, type WorkspaceDesiredState } from "../shared/gen/warren/v1/agent_pb.js";
import { GrpcFrameDecoder } from "../shared/grpc-frame-decoder.js";
import { decodeGrpcMessage, encodeGrpcMessage } from "../shared/grpc-message.js";
import { decodeGrpcStatusMessage as decodeStatusText, GrpcStatus } from "../shared/grpc-status.js";
import type { Logger } from "../shared/logger.js";
import { AlwaysReadingSocket, noDelayConnector, overSocket } from "../shared/http2-sockets.js";
import { openTunnel, proxyFor } from "../shared/proxy.js";
import type { Duplex } from "node:stream";
import { TUNNEL_WINDOWS } from "../shared/tunnel-windows.js";
import { VERSION } from "../shared/version.js";
import { DEFAULT_LIVENESS, type LivenessSettings } from "../shared/liveness.js";
import { TunnelPool, type PoolSettings } from "./tunnel-pool.js";
import { AllowedPorts } from "./allowed-ports.js";
import { AGENT_CONTROL_PATH } from "../shared/dial-protocol.js";

const WELCOME_TIMEOUT_MS = 15_000;
const MAX_CONTROL_MESSAGE_BYTES = 4 * 1024 * 1024;

function ignorePingAnswer(): void {}

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
  /** How often to ping the server and how long it may stay silent (default: DEFAULT_LIVENESS). */
  readonly liveness?: LivenessSettings;
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
  /** The peer sent its HTTP/2 SETTINGS: whatever goes wrong next, it is not the wrong kind of server. */
  #peerSpokeHttp2 = false;
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
    const session = this.#session;
    // A session the server closed (GOAWAY) is left to node to tear down: resetting its tunnel
    // streams one by one after the server dropped a stalled agent made node 20 spin forever
    // in SubmitRstStream.
    this.#pool?.close({ resetStreams: !session?.closed });
    if (session && !session.destroyed) {
      session.close();
      setTimeout(() => destroyQuietly(session, this.#options.log), 1000).unref();
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
    const { server, ca } = this.#options;
    let proxy: URL | undefined;
    try {
      proxy = proxyFor(server);
    } catch (err) {
      this.#finish({ kind: "lost", message: (err as Error).message });
      return;
    }
    if (!proxy) {
      this.#connectVia(noDelayConnector(server, { ca }));
      return;
    }
    // Through HTTPS_PROXY/HTTP_PROXY: the CONNECT tunnel first, so a refusal is reported as the proxy's own answer.
    const port = Number(server.port || (server.protocol === "https:" ? 443 : 80));
    openTunnel(proxy, server.hostname.replace(/^\[|\]$/g, ""), port).then(
      (socket) => {
        if (this.#end) socket.destroy();
        else this.#connectVia(overSocket(server, () => socket, { ca }));
      },
      (err: Error) => this.#finish({ kind: "lost", message: err.message }),
    );
  }

  /**
   * Makes the connection, then the HTTP/2 session on it once it is up (TLS: verified): node
   * wraps the stream-like socket handed to it at once, so a failure to connect is reported here.
   */
  #connectVia(createConnection: () => Duplex): void {
    let socket: Duplex;
    try {
      socket = createConnection();
    } catch (err) {
      this.#finish({ kind: "lost", message: (err as Error).message });
      return;
    }
    const state = socket as Duplex & { connecting?: boolean; secureConnecting?: boolean };
    if (!state.connecting && !state.secureConnecting) {
      this.#startSession(socket);
      return;
    }
    const event = socket instanceof tls.TLSSocket ? "secureConnect" : "connect";
    const onError = (err: NodeJS.ErrnoException) => {
      socket.off(event, onReady);
      socket.destroy();
      this.#finish({ kind: "lost", message: this.#connectFailure(err) });
    };
    const onReady = () => {
      socket.off("error", onError);
      if (this.#end) socket.destroy();
      else this.#startSession(socket);
    };
    socket.once("error", onError);
    socket.once(event, onReady);
  }

  #connectFailure(err: NodeJS.ErrnoException): string {
    return err.code === "ECONNREFUSED" ? `connection refused by ${this.#options.server.host}` : err.message;
  }

  #startSession(socket: Duplex): void {
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
        // Reads on while a write is blocked: bulk both ways cannot deadlock the connection.
        createConnection: () => new AlwaysReadingSocket(socket),
      });
    } catch (err) {
      this.#finish({ kind: "lost", message: (err as Error).message });
      return;
    }
    this.#session = session;
    session.once("remoteSettings", () => {
      this.#peerSpokeHttp2 = true;
    });
    session.on("error", (err: NodeJS.ErrnoException) => this.#finish({ kind: "lost", message: this.#connectFailure(err) }));
    session.on("close", () => this.#finish({ kind: "lost", message: "connection closed" }));
    session.on("goaway", (code) => {
      log.debug({ code }, "server sent GOAWAY");
      // No new streams on this connection: connect again now; its streams in flight finish
      // here. On the next turn of the loop, so that a Disconnect that came in the same read
      // (revoked: exit) decides first; before the welcome, the refusal's status does.
      setImmediate(() => {
        if (this.#welcome) this.#handOff(`server closed the connection (GOAWAY, code ${code})`);
      });
    });
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

  /**
   * Pings the server every interval; a connection on which nothing at all arrived for interval
   * + timeout is gone (a stalled server, a network cut without FIN, a socket closed under a
   * session node still holds open): the session ends as lost and the runner connects again.
   * Any byte received counts, so an answer queued behind a large transfer is not silence.
   */
  #startPing(session: ClientHttp2Session): void {
    const { intervalMs, timeoutMs } = this.#options.liveness ?? DEFAULT_LIVENESS;
    const tickMs = Math.max(25, Math.min(intervalMs, timeoutMs) / 4);
    let bytesSeen = session.socket?.bytesRead ?? 0;
    let lastHeard = Date.now();
    let lastPing = 0;
    let lastTick = Date.now();
    const timer = setInterval(() => {
      // Destroyed, but node emits 'close' on a later turn of the loop: ping() would throw (and
      // take the agent down) when this timer fires in between, as it does for a handed-off
      // session destroyed from a timer.
      if (session.destroyed) {
        clearInterval(timer);
        return;
      }
      const now = Date.now();
      // The agent's own event loop stalled (CPU starved): it read nothing meanwhile, so the
      // silence is its own. Forgive it.
      if (now - lastTick > tickMs * 2) lastHeard = now;
      lastTick = now;
      const bytes = session.socket?.bytesRead ?? 0;
      if (bytes !== bytesSeen) {
        bytesSeen = bytes;
        lastHeard = now;
      }
      const silentMs = now - lastHeard;
      if (silentMs >= intervalMs + timeoutMs) {
        clearInterval(timer);
        this.#options.log.warn({ server: this.#options.server.origin, silentMs }, "server stopped answering pings; connecting again");
        this.#finish({ kind: "lost", message: `server stopped answering pings (nothing received for ${silentMs} ms)` });
        destroyQuietly(session, this.#options.log);
        return;
      }
      if (now - lastPing >= intervalMs) {
        lastPing = now;
        try {
          // The answer is not awaited: the bytes it brings are what counts.
          session.ping(ignorePingAnswer);
        } catch {
          // Closing, or too many pings unanswered: silence decides.
        }
      }
    }, tickMs);
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
    const control = session.request({ ":method": "POST", ":path": AGENT_CONTROL_PATH, ...this.#headers() }, { endStream: false });
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
        this.#finish({ kind: "lost", message: `server answered HTTP ${httpStatus} on the agent endpoint; is WARREN_SERVER the Warren server's public URL (or its agent listener)?` });
        return;
      }
      onStatus(headers);
    });
    control.on("trailers", onStatus);
    control.on("close", () => {
      clearTimeout(welcomeTimer);
      // Closed before the peer said a word of HTTP/2: an HTTP/1 server (not Warren, or an old Warren's HTTP port).
      const message = this.#peerSpokeHttp2
        ? "control stream closed"
        : `${this.#options.server.origin} does not answer as a Warren server (no HTTP/2): is WARREN_SERVER the server's public URL (or its agent listener), not another server or port?`;
      this.#finish({ kind: "lost", message });
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

/**
 * Destroys a session that is being given up anyway. Node's JS stream socket (under
 * AlwaysReadingSocket) can throw an internal assertion when a session is destroyed during a
 * write; the connection is over either way, and an agent must not die of it (its workload
 * would go with it).
 */
function destroyQuietly(session: ClientHttp2Session, log: Logger): void {
  try {
    session.destroy();
  } catch (err) {
    log.debug({ err: (err as Error).message }, "error while destroying a finished session (ignored)");
  }
}

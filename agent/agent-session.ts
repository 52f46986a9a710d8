import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { ControlRequestSchema, ControlResponseSchema, DisconnectReason, type ControlRequest, type ControlResponse, type Welcome, type WorkspaceDesiredState } from "../shared/gen/warren/v1/agent_pb.js";
import { systemClock, type Clock, type Timer } from "../shared/clock.js";
import { GrpcFrameDecoder } from "../shared/grpc-frame-decoder.js";
import { decodeGrpcMessage, encodeGrpcMessage } from "../shared/grpc-message.js";
import { decodeGrpcStatusMessage as decodeStatusText, GrpcStatus } from "../shared/grpc-status.js";
import type { Logger } from "../shared/logger.js";
import { TUNNEL_WINDOWS } from "../shared/tunnel-windows.js";
import { VERSION } from "../shared/version.js";
import { DEFAULT_LIVENESS, type LivenessSettings } from "../shared/liveness.js";
import { TunnelPool, type PoolSettings } from "./tunnel-pool.js";
import { AllowedPorts } from "./allowed-ports.js";
import { AGENT_CONTROL_PATH } from "../shared/dial-protocol.js";
import { connectToServer, describeConnectFailure, type ServerConnector } from "./server-connector.js";

/** How long the server has to welcome the agent once the control stream is open. */
export const WELCOME_TIMEOUT_MS = 15_000;
const MAX_CONTROL_MESSAGE_BYTES = 4 * 1024 * 1024;
/** A closed session's streams in flight get this long before the connection is destroyed. */
const CLOSE_GRACE_MS = 1000;

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

/** Where an agent session is in its life; only AgentSession.#transition changes it. */
export enum AgentSessionState {
  /** Made; run() not called yet. */
  New = "new",
  /** Reaching the server: TCP or TLS, through the proxy when one applies. */
  Connecting = "connecting",
  /** HTTP/2 started on the connection, and the control stream opened; the server has not sent its SETTINGS (it may not speak HTTP/2 at all). */
  Handshaking = "handshaking",
  /** The server speaks HTTP/2; the hello is sent, the welcome has not come. */
  AwaitingWelcome = "awaiting-welcome",
  /** Welcomed: the tunnel pool takes dials. */
  Ready = "ready",
  /**
   * The server asked the agent to move: run() has answered, and the session carries its
   * streams (and takes the dials the server still sends) until drain() or the server closes it.
   */
  HandedOff = "handed-off",
  /** drain(): no new dials; open connections finish, then the session closes. */
  Draining = "draining",
  /** Over, whatever the reason (run() answered how). Final. */
  Closed = "closed",
}

const TRANSITIONS: Readonly<Record<AgentSessionState, readonly AgentSessionState[]>> = {
  [AgentSessionState.New]: [AgentSessionState.Connecting, AgentSessionState.Closed],
  [AgentSessionState.Connecting]: [AgentSessionState.Handshaking, AgentSessionState.Closed],
  [AgentSessionState.Handshaking]: [AgentSessionState.AwaitingWelcome, AgentSessionState.Closed],
  [AgentSessionState.AwaitingWelcome]: [AgentSessionState.Ready, AgentSessionState.HandedOff, AgentSessionState.Draining, AgentSessionState.Closed],
  [AgentSessionState.Ready]: [AgentSessionState.HandedOff, AgentSessionState.Draining, AgentSessionState.Closed],
  [AgentSessionState.HandedOff]: [AgentSessionState.Draining, AgentSessionState.Closed],
  [AgentSessionState.Draining]: [AgentSessionState.Closed],
  [AgentSessionState.Closed]: [],
};

/** Whether an agent session may go from one state to another. */
export function mayTransition(from: AgentSessionState, to: AgentSessionState): boolean {
  return TRANSITIONS[from].includes(to);
}

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
  /** Time for the welcome timeout, the pings' silence, drain and close; the system clock by default. */
  readonly clock?: Clock;
  /** Reaches the server and makes the HTTP/2 session (connectToServer by default; specs pass a fake). */
  readonly connect?: ServerConnector;
}

/**
 * One connection of the agent to one server: an HTTP/2 session with its control stream and
 * its pool of tunnel streams. run() resolves with how it ended, or with server-draining as
 * soon as the server asks the agent to move (see handedOff); it never rejects.
 */
export class AgentSession {
  readonly #options: AgentSessionOptions;
  readonly #clock: Clock;
  #state = AgentSessionState.New;
  #session: ClientHttp2Session | undefined;
  #control: ClientHttp2Stream | undefined;
  #pool: TunnelPool | undefined;
  /** What run() answered (undefined until it has): how the session ended, or server-draining on a hand-off. */
  #answer: SessionEnd | undefined;
  #resolveRun: ((end: SessionEnd) => void) | undefined;
  #welcome: Welcome | undefined;
  #allowedPorts: AllowedPorts | undefined;
  #resolveClosed!: () => void;
  readonly #closed = new Promise<void>((resolve) => (this.#resolveClosed = resolve));

  constructor(options: AgentSessionOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
  }

  get state(): AgentSessionState {
    return this.#state;
  }

  /**
   * Whether the server asked this agent to move while the session stays open: run() has
   * resolved, and the session carries its streams in flight (and takes the dials the server
   * still sends) until drain() or until the server closes it. Also true of a session that was
   * already draining (the agent is stopping) when the server asked.
   */
  get handedOff(): boolean {
    return this.#answer !== undefined && this.#state !== AgentSessionState.Closed;
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
      if (!this.#transition(AgentSessionState.Connecting, `connecting to ${this.#options.server.origin}`)) {
        // Run twice, or closed before it ran: nothing more to do.
        resolve(this.#answer ?? { kind: "closed" });
        return;
      }
      this.#resolveRun = resolve;
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
   * connections finish for up to `timeoutMs`, then close. Called again while draining, it
   * closes within its own `timeoutMs`.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (this.#transition(AgentSessionState.Draining, `draining: open connections get up to ${timeoutMs} ms`)) {
      void this.send(create(ControlRequestSchema, { msg: { case: "draining", value: {} } }));
      this.#pool?.drain();
    }
    const pool = this.#pool;
    if (pool && this.#state === AgentSessionState.Draining) {
      let timer: Timer | undefined;
      await Promise.race([pool.whenIdle(), new Promise<void>((resolve) => (timer = this.#clock.setTimeout(resolve, timeoutMs)))]);
      this.#clock.clearTimer(timer);
    }
    this.close();
  }

  close(): void {
    this.#finish({ kind: "closed" });
  }

  /**
   * The one place the state changes. Refuses (false) a change the table does not allow,
   * staying put: callers use that as their "already done" guard. Logs every change at debug.
   */
  #transition(to: AgentSessionState, why: string): boolean {
    const from = this.#state;
    if (!mayTransition(from, to)) return false;
    this.#state = to;
    this.#options.log.debug({ server: this.#options.server.origin, from, to, why }, "agent session state");
    return true;
  }

  /** Answers run() once; a later answer (the end of a handed-off session) is not heard. */
  #answerRun(end: SessionEnd): void {
    if (this.#answer) return;
    this.#answer = end;
    this.#resolveRun?.(end);
  }

  #finish(end: SessionEnd): void {
    if (!this.#transition(AgentSessionState.Closed, end.kind === "closed" ? "closed by the agent" : `${end.kind}: ${end.message}`)) return;
    const session = this.#session;
    // A session the server closed (GOAWAY) is left to node to tear down: resetting its tunnel
    // streams one by one after the server dropped a stalled agent made node 20 spin forever
    // in SubmitRstStream.
    this.#pool?.close({ resetStreams: !session?.closed });
    if (session && !session.destroyed) {
      session.close();
      this.#clock.setTimeout(() => destroyQuietly(session, this.#options.log), CLOSE_GRACE_MS).unref();
    }
    this.#answerRun(end);
    this.#resolveClosed();
  }

  /** The server asked us to move: run() answers now, the connection stays for its streams. */
  #handOff(message: string): void {
    if (this.#answer) return;
    // An agent that is stopping stays draining; its run() still hears that the server asked.
    if (this.#state !== AgentSessionState.Draining && !this.#transition(AgentSessionState.HandedOff, message)) return;
    this.#options.log.info(
      { server: this.#options.server.origin, busyStreams: this.busyCount, reason: message },
      "the server asked this agent to move: connecting again, while this connection finishes its open streams",
    );
    this.#answerRun({ kind: "server-draining", message });
  }

  #connect(): void {
    const connect = this.#options.connect ?? connectToServer;
    connect(this.#options.server, this.#options.ca, {
      wanted: () => this.#state === AgentSessionState.Connecting,
      connected: (session) => this.#startSession(session),
      failed: (message) => this.#finish({ kind: "lost", message }),
    });
  }

  #startSession(session: ClientHttp2Session): void {
    const { server, log } = this.#options;
    if (!this.#transition(AgentSessionState.Handshaking, "connected; starting HTTP/2")) {
      destroyQuietly(session, log);
      return;
    }
    this.#session = session;
    session.once("remoteSettings", () => this.#transition(AgentSessionState.AwaitingWelcome, "the server speaks HTTP/2"));
    session.on("error", (err: NodeJS.ErrnoException) => this.#finish({ kind: "lost", message: describeConnectFailure(server, err) }));
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
      // Ping liveness starts with the welcome: until then the welcome timeout bounds the
      // handshake, so a server busy admitting thousands of agents after a restart is not
      // mistaken for a dead one (each agent dropping it after 4 s would feed the storm).
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
    const clock = this.#clock;
    const { intervalMs, timeoutMs } = this.#options.liveness ?? DEFAULT_LIVENESS;
    const tickMs = Math.max(25, Math.min(intervalMs, timeoutMs) / 4);
    let bytesSeen = session.socket?.bytesRead ?? 0;
    let lastHeard = clock.now();
    let lastPing = 0;
    let lastTick = clock.now();
    const timer = clock.setInterval(() => {
      // Destroyed, but node emits 'close' on a later turn of the loop: ping() would throw (and
      // take the agent down) when this timer fires in between, as it does for a handed-off
      // session destroyed from a timer.
      if (session.destroyed) {
        clock.clearTimer(timer);
        return;
      }
      const now = clock.now();
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
        clock.clearTimer(timer);
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
    session.once("close", () => clock.clearTimer(timer));
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
    const welcomeTimer = this.#clock.setTimeout(() => {
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
      this.#clock.clearTimer(welcomeTimer);
      // Closed before the peer said a word of HTTP/2: an HTTP/1 server (not Warren, or an old Warren's HTTP port).
      const message =
        this.#state !== AgentSessionState.Handshaking
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
        // Once, and only to a session waiting for it (not one handed off or draining meanwhile).
        if (!this.#transition(AgentSessionState.Ready, "welcomed")) return;
        const welcome = message.msg.value;
        this.#welcome = welcome;
        this.#startPing(session);
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
          clock: this.#clock,
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

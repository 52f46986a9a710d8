import { randomBytes } from "node:crypto";
import http2, {
  type Http2SecureServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type SecureServerOptions,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { ControlRequestSchema, ControlResponseSchema, DisconnectReason, type ControlRequest, type AgentHello } from "../../shared/gen/warren/v1/agent_pb.js";
import { GrpcFrameDecoder } from "../../shared/grpc-frame-decoder.js";
import { decodeGrpcMessage } from "../../shared/grpc-message.js";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { HostPort } from "../../shared/settings.js";
import { VERSION } from "../../shared/version.js";
import { bearerToken, constantTimeEquals } from "../domain/tokens.js";
import type { AuthenticatedAgent, Authenticator } from "../auth/authenticator.js";
import type { CredentialLeases } from "../auth/credential-leases.js";
import { dialablePorts, workspaceIdOf, type WorkspaceRecord } from "../domain/records.js";
import { AgentConnection } from "./agent-connection.js";
import { respondOk, respondWithError } from "./grpc-responses.js";
import type { AgentRegistrar } from "./tunnel-registry.js";
import { createGrpcServer } from "../net/grpc-server.js";
import { TUNNEL_WINDOWS } from "../../shared/tunnel-windows.js";
import { listenOn } from "../net/listen.js";
import { AGENT_CONTROL_PATH, AGENT_SERVICE_PREFIX, AGENT_TUNNEL_PATH } from "../../shared/dial-protocol.js";
import { DEFAULT_LIVENESS, type LivenessSettings } from "../../shared/liveness.js";

/** Paths of the agent service: on the public listener, streams to these with a gRPC content type are the agents'. */
/** A session must open its control stream and say hello within this time. */
const HELLO_TIMEOUT_MS = 10_000;
/** What a refused hello is told: the same words as a refused token, nothing about which part failed. */
const INVALID_AGENT_TOKEN = "agent token is invalid, expired or revoked";
/** Control messages an agent may send while its hello is being checked; more is hostile. */
const MAX_MESSAGES_BEFORE_WELCOME = 16;
/**
 * A token that expires with its workspace's time to live leaves the agent to the termination
 * (which lets it stop its workload, then revokes it); its lease ends this long after, in case
 * the termination could not run.
 */
const TTL_TERMINATION_MARGIN_MS = 15_000;
/** A revoked agent's streams in flight get this long before its session is destroyed. */
const REVOKED_GRACE_MS = 500;
/** Control messages are small; anything bigger is hostile. */
const MAX_CONTROL_MESSAGE_BYTES = 64 * 1024;
/**
 * Sessions are checked in this many groups, one group per tick, so that a tick never walks
 * 5,000 sessions at once (pinging 5,000 agents in one go once held the event loop for about
 * 200 ms, a pause every request then waited out). A silent session is seen at the latest one
 * round of ticks (a quarter of the shorter of interval and timeout) late.
 */
const PING_GROUPS = 4;
/**
 * Accept queue of the agent listener. After a restart every agent reconnects within a second or
 * two; with node's default (511) the kernel dropped the surplus handshakes and those agents
 * waited out TCP's SYN retransmits (1, 3, 7, 15 s). The kernel caps it at net.core.somaxconn.
 */
const LISTEN_BACKLOG = 65_535;

/** Whether an HTTP/2 request is an agent's (gRPC to the agent service). */
export function isAgentRequest(headers: IncomingHttpHeaders): boolean {
  const path = headers[":path"];
  return typeof path === "string" && path.startsWith(AGENT_SERVICE_PREFIX) && (headers["content-type"] ?? "").startsWith("application/grpc");
}

/**
 * HTTP/2 settings of every listener that takes agents: large receive windows (the speed of a
 * download from the workspace) and a stream limit above the agent's own.
 */
export function agentHttp2Settings(maxStreams: number): { settings: http2.Settings; maxSessionMemory: number; peerMaxConcurrentStreams: number } {
  return {
    settings: {
      initialWindowSize: TUNNEL_WINDOWS.streamWindowBytes,
      maxFrameSize: TUNNEL_WINDOWS.maxFrameBytes,
      // Our own per-connection limit answers with a clear status; this is the hard stop.
      maxConcurrentStreams: maxStreams + 8,
    },
    maxSessionMemory: TUNNEL_WINDOWS.maxSessionMemoryMb,
    peerMaxConcurrentStreams: 100,
  };
}

export interface AgentEndpointOptions {
  /** The separate agent listener; absent: agents come only through the public listener (acceptStream). */
  readonly listen: HostPort | undefined;
  readonly tls?: SecureServerOptions;
  readonly authenticator: Authenticator;
  readonly registry: AgentRegistrar;
  /**
   * Every welcomed connection holds a lease on its agent token and workspace incarnation
   * there: it closes when either is revoked, at the token's expiry, and when a re-validation
   * finds either gone.
   */
  readonly leases: CredentialLeases;
  readonly serverId: string;
  readonly maxStreams: number;
  readonly maxMessageBytes: number;
  /** Silence after which an agent is pinged, and after which (plus the timeout) it is dropped. */
  readonly liveness?: LivenessSettings;
  readonly urlsOf: (workspace: WorkspaceRecord) => string[];
  /** The workspace's variables for its agent's Welcome (plaintext: never log them). */
  readonly variablesOf?: (workspace: WorkspaceRecord) => ReadonlyArray<{ name: string; value: string; file: boolean }>;
  readonly log: Logger;
  /** Observes every registered connection (control module, presence, metrics), with the workspace record it authenticated with. */
  readonly onConnection?: (connection: AgentConnection, hello: AgentHello, workspace: WorkspaceRecord) => void;
  /** Agent -> server control messages after hello (workload reports). */
  readonly onControlMessage?: (connection: AgentConnection, message: ControlRequest) => void;
}

interface SessionState {
  connection?: AgentConnection | undefined;
  /** Which tick of the round checks this session. */
  readonly pingGroup: number;
  /** Bytes the session had received at the last check, and when that count last moved. */
  bytesSeen: number;
  lastHeard: number;
  /** A ping of ours is out since the session went silent. */
  pingOutstanding: boolean;
  controlPending: boolean;
  authorization?: string;
  helloTimer?: NodeJS.Timeout | undefined;
}

// Shared listeners (`this` is the emitter): one function for every session and stream, rather
// than a closure each; a server holds thousands of agents, each with a few idle streams.
function ignoreError(): void {
  // Resets are normal (agent retiring a stream, disconnects); owners log what matters.
}

/** The answer itself is not needed: the bytes it brings are what #checkGroup counts. */
function ignorePingAnswer(): void {}

function destroySession(this: ServerHttp2Session): void {
  this.destroy();
}

/** Raises the connection-level receive window at once; the SETTINGS frame raised the streams'. */
function raiseSessionWindow(this: ServerHttp2Session): void {
  try {
    this.setLocalWindowSize(TUNNEL_WINDOWS.sessionWindowBytes);
  } catch {
    // Session already gone.
  }
}

/**
 * The agent listener: gRPC over HTTP/2 (h2c, or TLS when configured) on node:http2 directly,
 * so that the server's receive windows can be raised. That window decides the speed of the
 * common direction, a download from the workspace (agent -> server).
 */
export class AgentEndpoint {
  readonly #options: AgentEndpointOptions;
  readonly #server: Http2Server | Http2SecureServer | undefined;
  readonly #sessions = new Map<ServerHttp2Session, SessionState>();
  /** The same sessions split by ping group: each liveness tick walks its own group only. */
  readonly #groups: Array<Map<ServerHttp2Session, SessionState>> = Array.from({ length: PING_GROUPS }, () => new Map());
  #draining = false;
  #pingTimer: NodeJS.Timeout | undefined;
  #pingTick = 0;
  #sessionsSeen = 0;
  readonly #onSessionClose: (this: ServerHttp2Session) => void;

  constructor(options: AgentEndpointOptions) {
    this.#options = options;
    const sessions = this.#sessions;
    const groups = this.#groups;
    this.#onSessionClose = function (this: ServerHttp2Session) {
      const state = sessions.get(this);
      if (state) {
        clearTimeout(state.helloTimer);
        groups[state.pingGroup]!.delete(this);
      }
      sessions.delete(this);
    };
    if (!options.listen) return;
    this.#server = createGrpcServer({
      tls: options.tls,
      ...agentHttp2Settings(options.maxStreams),
      onSession: (session) => this.#onSession(session),
      onStream: (stream, headers) => this.#onStream(stream, headers),
      onSessionError: (err) => options.log.debug({ err: err.message }, "agent session error"),
    });
  }

  /**
   * An agent's stream that came to the public listener (see isAgentRequest): its session is
   * an agent session from now on, checked for liveness and hello like those of the agent listener.
   */
  acceptStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const session = stream.session as ServerHttp2Session | undefined;
    if (!session || session.destroyed) return;
    if (!this.#sessions.has(session)) {
      this.#onSession(session);
      // Its SETTINGS came long ago, with the first request.
      raiseSessionWindow.call(session);
    }
    this.#onStream(stream, headers);
  }

  /** Starts the liveness checks and the agent listener, when there is one (its address; else undefined). */
  async listen(): Promise<AddressInfo | undefined> {
    const address = this.#server && this.#options.listen ? await listenOn(this.#server, this.#options.listen, LISTEN_BACKLOG) : undefined;
    const { intervalMs, timeoutMs } = this.#liveness;
    const tickMs = Math.max(25, Math.min(intervalMs, timeoutMs) / 4 / PING_GROUPS);
    let lastTick = Date.now();
    this.#pingTimer = setInterval(() => {
      const now = Date.now();
      // This server's own event loop stalled (CPU starved, a long GC): it read nothing
      // meanwhile, so the silence is its own, not the agents'. Forgive it.
      if (now - lastTick > tickMs * PING_GROUPS * 2) for (const state of this.#sessions.values()) state.lastHeard = now;
      lastTick = now;
      this.#checkGroup(this.#pingTick++ % PING_GROUPS);
    }, tickMs);
    this.#pingTimer.unref();
    return address;
  }

  get #liveness(): LivenessSettings {
    return this.#options.liveness ?? DEFAULT_LIVENESS;
  }

  /** Swaps the TLS certificate for new connections. */
  setSecureContext(options: SecureServerOptions): void {
    if (this.#server && "setSecureContext" in this.#server) this.#server.setSecureContext(options);
  }

  /** Stops accepting new agent connections; existing ones stay. */
  stopAccepting(): void {
    this.#draining = true;
    this.#server?.close();
  }

  /** Destroys every session at once. */
  destroyAll(): void {
    clearInterval(this.#pingTimer);
    for (const session of this.#sessions.keys()) session.destroy();
  }

  /**
   * Finds agents that went silent: stalled (SIGSTOP, a frozen VM) or lost to a network cut (no
   * FIN ever arrives). Any byte received is a sign of life; agents ping every interval, so the
   * server pings only a session silent for longer than that (an older agent pings less often),
   * and drops one silent for interval + timeout: its dials fail over at once (503) rather than
   * waiting out the dial and upstream timeouts.
   */
  #checkGroup(group: number): void {
    const { intervalMs, timeoutMs } = this.#liveness;
    const now = Date.now();
    for (const [session, state] of this.#groups[group]!) {
      if (!state.connection || session.destroyed) continue;
      const bytes = session.socket?.bytesRead ?? 0;
      if (bytes !== state.bytesSeen) {
        state.bytesSeen = bytes;
        state.lastHeard = now;
        state.pingOutstanding = false;
        continue;
      }
      const silentMs = now - state.lastHeard;
      if (silentMs >= intervalMs + timeoutMs) {
        state.connection.drop(`agent stopped answering pings (silent for ${silentMs} ms)`);
        continue;
      }
      if (silentMs >= intervalMs && !state.pingOutstanding) {
        state.pingOutstanding = true;
        try {
          session.ping(ignorePingAnswer);
        } catch {
          // Session closing.
        }
      }
    }
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  #onSession(session: ServerHttp2Session): void {
    const state: SessionState = {
      controlPending: false,
      pingOutstanding: false,
      bytesSeen: 0,
      lastHeard: Date.now(),
      pingGroup: this.#sessionsSeen++ % PING_GROUPS,
    };
    this.#sessions.set(session, state);
    this.#groups[state.pingGroup]!.set(session, state);
    session.on("error", destroySession);
    session.on("close", this.#onSessionClose);
    session.once("remoteSettings", raiseSessionWindow);
    state.helloTimer = setTimeout(() => {
      if (!state.connection) {
        this.#options.log.debug("agent session sent no hello in time; closing");
        session.destroy();
      }
    }, HELLO_TIMEOUT_MS);
    state.helloTimer.unref();
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on("error", ignoreError);
    const state = this.#sessions.get(stream.session as ServerHttp2Session);
    if (!state) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const path = headers[":path"];
    const contentType = headers["content-type"] ?? "";
    if (headers[":method"] !== "POST" || !contentType.startsWith("application/grpc")) {
      stream.respond({ ":status": 415, "content-type": "text/plain" }, { endStream: false });
      stream.end("the agent endpoint speaks gRPC only\n");
      return;
    }
    if (path === AGENT_TUNNEL_PATH) this.#onTunnel(stream, headers, state);
    else if (path === AGENT_CONTROL_PATH) void this.#onControl(stream, headers, state);
    else respondWithError(stream, new WarrenError(ErrorCode.Unimplemented, `unknown method ${path}`));
  }

  #onTunnel(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, state: SessionState): void {
    const connection = state.connection;
    if (!connection || !state.authorization) {
      respondWithError(stream, new WarrenError(ErrorCode.FailedPrecondition, "open the control stream and wait for welcome before tunnel streams"));
      return;
    }
    const authorization = headers.authorization ?? "";
    if (!constantTimeEquals(authorization, state.authorization)) {
      respondWithError(stream, new WarrenError(ErrorCode.Unauthenticated, "tunnel stream token differs from the control stream's"));
      return;
    }
    if (!connection.usable) {
      respondWithError(stream, new WarrenError(ErrorCode.Unavailable, "agent connection is closing"));
      return;
    }
    if (!connection.admitStream(stream)) {
      respondWithError(stream, new WarrenError(ErrorCode.ResourceExhausted, `too many tunnel streams on one connection (limit ${connection.maxStreams})`));
      return;
    }
    respondOk(stream);
    connection.park(stream);
  }

  async #onControl(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, state: SessionState): Promise<void> {
    const session = stream.session as ServerHttp2Session;
    const log = this.#options.log;
    if (state.connection || state.controlPending) {
      respondWithError(stream, new WarrenError(ErrorCode.FailedPrecondition, "one control stream per connection"));
      return;
    }
    if (this.#draining) {
      respondWithError(stream, new WarrenError(ErrorCode.Unavailable, "server is shutting down; connect to another server"));
      return;
    }
    state.controlPending = true;
    let agent: AuthenticatedAgent;
    try {
      agent = await this.#options.authenticator.authenticateAgent(bearerToken(headers.authorization));
    } catch (err) {
      const e = WarrenError.from(err);
      log.info({ err: e.message, remote: session.socket?.remoteAddress }, "agent refused");
      respondWithError(stream, e);
      session.close();
      return;
    }
    if (stream.destroyed) return;
    respondOk(stream);
    this.#readControl(stream, state, agent, headers.authorization ?? "");
  }

  /**
   * Reads the control stream for the life of the connection: hello first, then draining and
   * workload reports. Its closures outlive the handshake, so they hold neither the request
   * headers nor the workspace record (released once welcomed). Messages that arrive while the
   * hello is being checked wait for the welcome.
   */
  #readControl(stream: ServerHttp2Stream, state: SessionState, authenticated: AuthenticatedAgent, authorization: string): void {
    const session = stream.session as ServerHttp2Session;
    const log = this.#options.log;
    const workspace = authenticated.workspace.name;
    let agent: AuthenticatedAgent | undefined = authenticated;
    const decoder = new GrpcFrameDecoder(MAX_CONTROL_MESSAGE_BYTES);
    let connection: AgentConnection | undefined;
    /** Set while the hello is checked: messages that came meanwhile. */
    let waiting: ControlRequest[] | undefined;
    const violation = (err: unknown) => {
      const e = WarrenError.from(err, ErrorCode.InvalidArgument);
      log.warn({ workspace, err: e.message }, "agent protocol violation on control stream");
      if (connection) connection.protocolViolation(e);
      else session.destroy();
    };
    const handle = (message: ControlRequest) => {
      if (!connection) return;
      if (message.msg.case === "draining") connection.markDraining();
      else if (message.msg.case === "hello") violation(new WarrenError(ErrorCode.InvalidArgument, "hello sent twice"));
      else this.#options.onControlMessage?.(connection, message);
    };
    stream.on("data", (chunk: Buffer) => {
      let messages: Buffer[];
      try {
        messages = decoder.push(chunk);
      } catch (err) {
        violation(err);
        return;
      }
      for (const payload of messages) {
        let message: ControlRequest;
        try {
          message = decodeGrpcMessage(ControlRequestSchema, payload);
        } catch (err) {
          violation(err);
          return;
        }
        if (connection) {
          handle(message);
          continue;
        }
        if (waiting) {
          if (waiting.length >= MAX_MESSAGES_BEFORE_WELCOME) {
            violation(new WarrenError(ErrorCode.InvalidArgument, "too many control messages before welcome"));
            return;
          }
          waiting.push(message);
          continue;
        }
        if (message.msg.case !== "hello" || !agent) {
          violation(new WarrenError(ErrorCode.InvalidArgument, "the first control message must be hello"));
          return;
        }
        const hello = message.msg.value;
        const first = agent;
        agent = undefined;
        waiting = [];
        void this.#admit(stream, state, first, hello, authorization).then((admitted) => {
          connection = admitted;
          const queued = waiting ?? [];
          waiting = undefined;
          for (const m of queued) handle(m);
        });
      }
    });
  }

  /**
   * Checks the hello against the store again and welcomes the agent, or refuses it. The token
   * was checked when the control stream opened, but the agent chose when to say hello: the
   * token may have been rotated, the workspace deleted and its name taken by a new workspace
   * meanwhile. The lease is taken before the re-check, so a revocation that races with it is
   * either seen by the re-check (the store changed first) or closes the lease (announced after).
   * Resolves with the welcomed connection, or undefined when refused. Never rejects.
   */
  async #admit(
    stream: ServerHttp2Stream,
    state: SessionState,
    first: AuthenticatedAgent,
    hello: AgentHello,
    authorization: string,
  ): Promise<AgentConnection | undefined> {
    const { authenticator, leases } = this.#options;
    const name = first.workspace.name;
    const workspaceId = workspaceIdOf(first.workspace);
    const tokenId = first.tokenId;
    const maxStreams = Math.min(this.#options.maxStreams, hello.maxStreams || this.#options.maxStreams);
    const connection = new AgentConnection({
      id: randomBytes(6).toString("hex"),
      workspace: name,
      workspaceId,
      tokenId,
      session: stream.session as ServerHttp2Session,
      control: stream,
      agentVersion: hello.version,
      instanceId: hello.instanceId,
      maxStreams,
      log: this.#options.log,
    });
    const lease = leases.register(
      {
        tokenId,
        workspaceId,
        expiresAt:
          first.workspace.expiresAt !== undefined && first.tokenExpiresAt >= first.workspace.expiresAt
            ? first.tokenExpiresAt + TTL_TERMINATION_MARGIN_MS
            : first.tokenExpiresAt,
        stillValid: () => authenticator.agentStillValid(name, workspaceId, tokenId),
      },
      (reason) => connection.disconnect(DisconnectReason.REVOKED, reason, REVOKED_GRACE_MS),
    );
    connection.onClose(() => lease.release());
    let current: AuthenticatedAgent | undefined;
    try {
      current = await authenticator.authenticateAgent(bearerToken(authorization));
    } catch (err) {
      const e = WarrenError.from(err);
      if (e.code !== ErrorCode.Unauthenticated) {
        // The store could not be read: the agent retries; nothing is said about the token.
        this.#options.log.warn({ workspace: name, err: e.message }, "could not check an agent's hello; refusing it for now");
        connection.disconnect(DisconnectReason.UNSPECIFIED, e.message, REVOKED_GRACE_MS);
        return undefined;
      }
    }
    if (!current || current.tokenId !== tokenId || workspaceIdOf(current.workspace) !== workspaceId) {
      this.#options.log.info({ workspace: name, remote: connection.session.socket?.remoteAddress }, "agent refused at hello: its token was revoked meanwhile");
      connection.disconnect(DisconnectReason.REVOKED, INVALID_AGENT_TOKEN, REVOKED_GRACE_MS);
      return undefined;
    }
    // Revoked (or gone) while the re-check ran: the lease already closed it.
    if (connection.closed || stream.destroyed) return undefined;
    this.#welcome(connection, state, current.workspace, hello, authorization);
    return connection;
  }

  #variablesOf(workspace: WorkspaceRecord, connection: AgentConnection): Array<{ name: string; value: string; file: boolean }> {
    if (!this.#options.variablesOf) return [];
    try {
      return this.#options.variablesOf(workspace).map((v) => ({ name: v.name, value: v.value, file: v.file }));
    } catch (err) {
      // The agent still gets its tunnel; the workload starts without its variables.
      connection.log.error({ err: (err as Error).message }, "cannot decrypt the workspace's variables; the agent gets none");
      return [];
    }
  }

  #welcome(connection: AgentConnection, state: SessionState, workspace: WorkspaceRecord, hello: AgentHello, authorization: string): void {
    const id = connection.id;
    const log = this.#options.log;
    const maxStreams = connection.maxStreams;
    clearTimeout(state.helloTimer);
    state.helloTimer = undefined;
    state.connection = connection;
    state.controlPending = false;
    state.authorization = authorization;
    connection.send(
      create(ControlResponseSchema, {
        msg: {
          case: "welcome",
          value: {
            workspace: workspace.name,
            allowedPorts: dialablePorts(workspace),
            urls: this.#options.urlsOf(workspace),
            serverVersion: VERSION,
            serverId: this.#options.serverId,
            maxStreams,
            variables: this.#variablesOf(workspace, connection),
          },
        },
      }),
    );
    // The same lines as through connection.log, without making a child logger for every agent.
    const name = workspace.name;
    if (hello.version !== VERSION) {
      log.warn({ workspace: name, agentConnection: id, agentVersion: hello.version, serverVersion: VERSION }, "agent version differs from the server's");
    }
    log.info(
      { workspace: name, agentConnection: id, agentVersion: hello.version, instance: hello.instanceId, remote: connection.session.socket?.remoteAddress },
      "agent connected",
    );
    connection.onClose(() => log.info({ workspace: name, agentConnection: id }, "agent disconnected"));
    this.#options.registry.register(connection);
    this.#options.onConnection?.(connection, hello, workspace);
  }
}

import type { ServerHttp2Session, ServerHttp2Stream } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { systemClock, type Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import { ControlResponseSchema, DisconnectReason, type ControlResponse, type WorkspaceDesiredState } from "../../shared/gen/warren/v1/agent_pb.js";
import { encodeGrpcMessage } from "../../shared/grpc-message.js";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { endWithStatus } from "./grpc-responses.js";

export interface AgentConnectionOptions {
  readonly id: string;
  readonly workspace: string;
  /** The workspace incarnation it was welcomed into (see workspaceIdOf). */
  readonly workspaceId: string;
  readonly tokenId: string;
  readonly session: ServerHttp2Session;
  readonly control: ServerHttp2Stream;
  readonly agentVersion: string;
  readonly instanceId: string;
  /** Most tunnel streams this connection may hold (server limit, lowered by the agent's own). */
  readonly maxStreams: number;
  /** The endpoint's logger; the connection's own child logger is made from it when first needed. */
  readonly log: Logger;
  /** Time and the disconnect grace timer; the system clock by default. */
  readonly clock?: Clock;
}

/** Where an agent connection is in its life; only AgentConnection.#transition changes it. */
export enum AgentConnectionState {
  /** Takes new dials. */
  Open = "open",
  /** Takes new dials; the agent was asked to reconnect elsewhere and will say it is draining. */
  HandoffRequested = "handoff-requested",
  /** No new dials; streams in flight go on. */
  Draining = "draining",
  /** Gone or going: idle streams ended, the session closes. Final. */
  Closed = "closed",
}

const TRANSITIONS: Readonly<Record<AgentConnectionState, readonly AgentConnectionState[]>> = {
  [AgentConnectionState.Open]: [AgentConnectionState.HandoffRequested, AgentConnectionState.Draining, AgentConnectionState.Closed],
  [AgentConnectionState.HandoffRequested]: [AgentConnectionState.Draining, AgentConnectionState.Closed],
  [AgentConnectionState.Draining]: [AgentConnectionState.Closed],
  [AgentConnectionState.Closed]: [],
};

/** Whether an agent connection may go from one state to another. */
export function mayTransition(from: AgentConnectionState, to: AgentConnectionState): boolean {
  return TRANSITIONS[from].includes(to);
}

/**
 * The server's side of one agent connection: its HTTP/2 session, control stream and the
 * tunnel streams it parks. Owned by the TunnelRegistry, which hands idle streams to dials.
 */
export class AgentConnection {
  readonly id: string;
  readonly workspace: string;
  readonly workspaceId: string;
  readonly tokenId: string;
  readonly agentVersion: string;
  readonly instanceId: string;
  readonly maxStreams: number;
  readonly connectedAt: number;
  readonly #clock: Clock;
  readonly #parentLog: Logger;
  #log: Logger | undefined;
  readonly #session: ServerHttp2Session;
  readonly #control: ServerHttp2Stream;
  /** Idle streams, most recently parked last (LIFO: warm streams first, cold ones retire). */
  readonly #idle: ServerHttp2Stream[] = [];
  #streams = 0;
  #state = AgentConnectionState.Open;
  readonly #closeHandlers: Array<() => void> = [];
  readonly #drainHandlers: Array<() => void> = [];
  #onIdleStream: (() => void) | undefined;
  // Listeners shared by all streams of this connection (`this` is the stream): a server holds
  // thousands of idle streams, and closures per stream were a large part of what each cost.
  readonly #onStreamClose: () => void;
  readonly #onParkedData: () => void;
  readonly #onParkedEnd: (this: ServerHttp2Stream) => void;
  readonly #onParkedClose: (this: ServerHttp2Stream) => void;

  constructor(options: AgentConnectionOptions) {
    this.id = options.id;
    this.workspace = options.workspace;
    this.workspaceId = options.workspaceId;
    this.tokenId = options.tokenId;
    this.agentVersion = options.agentVersion;
    this.instanceId = options.instanceId;
    this.maxStreams = options.maxStreams;
    this.#clock = options.clock ?? systemClock;
    this.connectedAt = this.#clock.now();
    this.#parentLog = options.log;
    this.#session = options.session;
    this.#control = options.control;
    const connection = this;
    this.#onStreamClose = () => {
      this.#streams--;
    };
    this.#onParkedData = () => {
      this.protocolViolation(new WarrenError(ErrorCode.InvalidArgument, "agent sent data on a tunnel stream it was never asked to dial"));
    };
    // The agent retired the stream (idle too long): node reports its RST_STREAM as 'end'
    // first, so an end without data is a goodbye, not a violation.
    this.#onParkedEnd = function (this: ServerHttp2Stream) {
      connection.#unpark(this);
      endWithStatus(this, new WarrenError(ErrorCode.Unavailable, "tunnel stream retired by the agent"));
    };
    this.#onParkedClose = function (this: ServerHttp2Stream) {
      const i = connection.#idle.indexOf(this);
      if (i >= 0) connection.#idle.splice(i, 1);
    };
    this.#control.on("close", () => this.#markClosed("control stream closed"));
    this.#session.on("close", () => this.#markClosed("session closed"));
  }

  /** This connection's logger (workspace and connection id bound); made on first use, as most idle connections never log. */
  get log(): Logger {
    return (this.#log ??= this.#parentLog.child({ workspace: this.workspace, agentConnection: this.id }));
  }

  get state(): AgentConnectionState {
    return this.#state;
  }

  /** Whether the registry may hand this connection's streams to new dials. */
  get usable(): boolean {
    return this.#state === AgentConnectionState.Open || this.#state === AgentConnectionState.HandoffRequested;
  }

  get closed(): boolean {
    return this.#state === AgentConnectionState.Closed;
  }

  /**
   * The one place the state changes. Refuses (false) a change the table does not allow,
   * staying put: callers use that as their "already done" guard. Logs every change at debug.
   */
  #transition(to: AgentConnectionState, why: string): boolean {
    const from = this.#state;
    if (!mayTransition(from, to)) return false;
    this.#state = to;
    // Checked first: most connections never log, and their child logger is never made.
    if (this.#parentLog.isLevelEnabled("debug")) this.log.debug({ from, to, why }, "agent connection state");
    return true;
  }

  get idleCount(): number {
    return this.#idle.length;
  }

  get streamCount(): number {
    return this.#streams;
  }

  get session(): ServerHttp2Session {
    return this.#session;
  }

  /** Called by the registry when a stream becomes idle. */
  setIdleListener(listener: () => void): void {
    this.#onIdleStream = listener;
  }

  /** Runs when the connection stops taking new dials but may still carry open ones. */
  onDraining(handler: () => void): void {
    this.#drainHandlers.push(handler);
  }

  onClose(handler: () => void): void {
    if (this.closed) queueMicrotask(handler);
    else this.#closeHandlers.push(handler);
  }

  /** Whether another tunnel stream fits under the limit; counts it when it does. */
  admitStream(stream: ServerHttp2Stream): boolean {
    if (this.closed || this.#streams >= this.maxStreams) return false;
    this.#streams++;
    stream.on("close", this.#onStreamClose);
    return true;
  }

  /**
   * Parks an idle stream until a dial claims it. The agent must stay silent on an idle
   * stream: any byte from it is a protocol violation that drops the whole connection.
   */
  park(stream: ServerHttp2Stream): void {
    if (!this.usable) {
      endWithStatus(stream, new WarrenError(ErrorCode.Unavailable, "agent connection is draining"));
      return;
    }
    stream.on("data", this.#onParkedData);
    stream.on("end", this.#onParkedEnd);
    stream.on("close", this.#onParkedClose);
    this.#idle.push(stream);
    this.#onIdleStream?.();
  }

  /** Takes the most recently parked idle stream, or undefined. Never blocks. */
  takeIdle(): ServerHttp2Stream | undefined {
    while (this.usable) {
      const stream = this.#idle.pop();
      if (!stream) return undefined;
      this.#detach(stream);
      if (!stream.destroyed && !stream.closed) return stream;
    }
    return undefined;
  }

  #detach(stream: ServerHttp2Stream): void {
    stream.off("data", this.#onParkedData);
    stream.off("end", this.#onParkedEnd);
    stream.off("close", this.#onParkedClose);
  }

  /** Takes a parked stream out of the idle pool (it retired or closed). */
  #unpark(stream: ServerHttp2Stream): void {
    this.#detach(stream);
    const i = this.#idle.indexOf(stream);
    if (i >= 0) this.#idle.splice(i, 1);
  }

  /** Ends every idle stream with one status (one error for all: thousands may end at once). */
  #endIdle(message: string): void {
    if (this.#idle.length === 0) return;
    const error = new WarrenError(ErrorCode.Unavailable, message);
    for (const stream of this.#idle.splice(0)) {
      this.#detach(stream);
      endWithStatus(stream, error);
    }
  }

  /** Asks the agent for `count` more idle streams (a burst of waiting connections). */
  requestStreams(count: number): void {
    this.#send(create(ControlResponseSchema, { msg: { case: "openStreams", value: { count } } }));
  }

  sendDesiredState(state: WorkspaceDesiredState): void {
    this.#send(create(ControlResponseSchema, { msg: { case: "desiredState", value: { state } } }));
  }

  /** Sends a control message; false when the control stream is gone. */
  send(message: ControlResponse): boolean {
    return this.#send(message);
  }

  #send(message: ControlResponse): boolean {
    const control = this.#control;
    if (control.destroyed || control.closed || control.writableEnded) return false;
    control.write(encodeGrpcMessage(ControlResponseSchema, message));
    return true;
  }

  /** The agent is shutting down: no new dials; its idle streams are released. */
  markDraining(): void {
    if (!this.#transition(AgentConnectionState.Draining, "agent is draining")) return;
    this.log.info("agent is draining");
    this.#endIdle("agent is draining");
    for (const handler of this.#drainHandlers.splice(0)) handler();
  }

  /**
   * Asks the agent to connect again, to another server (this one is shutting down). The
   * connection keeps taking dials until the agent says it is draining, which it does once its
   * new connection is up; its streams in flight go on until they finish or disconnect() ends
   * them. Never blocks; false when the control stream is gone or it was asked before.
   */
  requestHandoff(message: string): boolean {
    // Debug (the transition's line): a shutting-down server asks every agent at once and logs that once, with the count.
    if (!this.#transition(AgentConnectionState.HandoffRequested, `asking the agent to reconnect to another server: ${message}`)) return false;
    return this.#send(create(ControlResponseSchema, { msg: { case: "disconnect", value: { reason: DisconnectReason.SERVER_DRAINING, message } } }));
  }

  /**
   * Tells the agent why it is being dropped, then closes the session: in-flight streams get
   * `graceMs` to finish before the session is destroyed.
   */
  disconnect(reason: DisconnectReason, message: string, graceMs = 1000): void {
    if (this.closed) return;
    // A server shutting down disconnects every agent at once and says so itself; thousands of
    // identical lines made its exit wait for the log pipe. "agent disconnected" still follows.
    const level = reason === DisconnectReason.SERVER_DRAINING ? "debug" : "info";
    if (this.#parentLog.isLevelEnabled(level)) this.log[level]({ reason: DisconnectReason[reason], message }, "disconnecting agent");
    this.#send(create(ControlResponseSchema, { msg: { case: "disconnect", value: { reason, message } } }));
    const code =
      reason === DisconnectReason.REVOKED
        ? ErrorCode.Unauthenticated
        : reason === DisconnectReason.PROTOCOL_ERROR
          ? ErrorCode.InvalidArgument
          : ErrorCode.Unavailable;
    endWithStatus(this.#control, new WarrenError(code, message));
    this.#markClosed(message);
    const session = this.#session;
    if (graceMs <= 0) {
      session.destroy();
      return;
    }
    session.close();
    this.#clock.setTimeout(() => {
      if (!session.destroyed) session.destroy();
    }, graceMs).unref();
  }

  /** Drops the connection without a word: the network lost it. */
  drop(why: string): void {
    if (this.closed) return;
    this.log.info({ why }, "dropping agent connection");
    this.#markClosed(why);
    this.#session.destroy();
  }

  /** Drops the whole connection at once: the agent broke the protocol. */
  protocolViolation(error: WarrenError): void {
    if (this.closed) return;
    this.log.warn({ err: error.message }, "agent protocol violation; dropping the connection");
    this.disconnect(DisconnectReason.PROTOCOL_ERROR, error.message, 0);
  }

  #markClosed(why: string): void {
    if (!this.#transition(AgentConnectionState.Closed, why)) return;
    // Idle streams end with a status rather than RST_STREAM: resetting hundreds of streams of
    // a session that is going away made node spin in submitRstStream (Node 20).
    this.#endIdle(`agent connection closed: ${why}`);
    // Streams in flight may finish; nothing new starts on this session.
    if (!this.#session.closed && !this.#session.destroyed) this.#session.close();
    for (const handler of this.#closeHandlers.splice(0)) handler();
  }
}

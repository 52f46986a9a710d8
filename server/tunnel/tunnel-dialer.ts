import { randomBytes } from "node:crypto";
import type { ServerHttp2Stream } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { DialStatus, TunnelRequestSchema, TunnelResponseSchema, type TunnelRequest } from "../../shared/gen/warren/v1/agent_pb.js";
import { runDialHandshake } from "../../shared/dial-handshake.js";
import { errorOfDialStatus } from "../../shared/dial-protocol.js";
import { encodeGrpcMessage } from "../../shared/grpc-message.js";
import { encodeTunnelData } from "../../shared/tunnel-codec.js";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import type { Logger } from "../../shared/logger.js";
import type { AcquiredStream, StreamFinder } from "./tunnel-registry.js";
import { endWithStatus } from "./grpc-responses.js";
import { PortDialGate } from "./port-dial-gate.js";
import type { WorkspaceRef } from "../domain/workspace-ref.js";

export interface DialOptions {
  readonly signal?: AbortSignal;
  /** Id for logs on both sides; generated when absent. */
  readonly connectionId?: string;
  /**
   * Bytes to send first (a request head). Sent together with the dial where the path allows,
   * which saves a round trip to the agent (it keeps them until its local connection is up);
   * either way the resolved socket has sent them. Lost with a failed dial.
   */
  readonly earlyData?: readonly Buffer[];
}

/** The one primitive everything is built on: a byte stream to a port inside a workspace. */
export interface Dialer {
  /**
   * Resolves with a connected byte stream to 127.0.0.1:port in the workspace incarnation named
   * (its agent only, never an agent of another workspace of the same name). Rejects with a
   * WarrenError: unavailable (not connected, no free stream), bad_gateway (nothing listens),
   * permission_denied (port not allowed by the agent), deadline_exceeded (connect timed out),
   * canceled (signal). The caller owns the socket and must destroy or end it.
   */
  dial(workspace: WorkspaceRef, port: number, options?: DialOptions): Promise<TunnelSocket>;
}

export interface TunnelDialerOptions {
  readonly finder: StreamFinder;
  /** How long to wait for an idle stream. */
  readonly streamWaitMs: number;
  /** How long the agent may take to connect to the port. */
  readonly dialTimeoutMs: number;
  readonly maxMessageBytes: number;
  readonly log: Logger;
  /**
   * Most dials in progress to one port of one workspace (waiting for a stream or for the
   * agent's answer); more wait for a slot. Unbounded when absent.
   */
  readonly maxDialsPerPort?: number;
  /** Observes each dial's outcome (metrics). */
  readonly onOutcome?: (outcome: DialOutcome) => void;
}

export type DialOutcome = "ok" | "refused" | "not_allowed" | "timeout" | "unavailable" | "error" | "canceled";

/** A stream that closed under us before answering: take another, invisibly to the caller. */
class StreamLost extends Error {}

/** Claims an idle stream of the local registry and runs the dial exchange on it. */
export class TunnelDialer implements Dialer {
  readonly #options: TunnelDialerOptions;
  readonly #gate: PortDialGate | undefined;

  constructor(options: TunnelDialerOptions) {
    this.#options = options;
    this.#gate = options.maxDialsPerPort ? new PortDialGate(options.maxDialsPerPort) : undefined;
  }

  async dial(workspace: WorkspaceRef, port: number, options: DialOptions = {}): Promise<TunnelSocket> {
    const deadline = Date.now() + this.#options.streamWaitMs;
    if (!this.#gate) return this.#dial(workspace, port, options, deadline);
    let release: () => void;
    try {
      release = await this.#gate.enter(workspace.id, port, this.#options.streamWaitMs, options.signal);
    } catch (err) {
      const e = WarrenError.from(err);
      this.#options.onOutcome?.(e.code === ErrorCode.Canceled ? "canceled" : "unavailable");
      throw e;
    }
    try {
      return await this.#dial(workspace, port, options, deadline);
    } finally {
      release();
    }
  }

  async #dial(workspace: WorkspaceRef, port: number, options: DialOptions, deadline: number): Promise<TunnelSocket> {
    const connectionId = options.connectionId ?? randomBytes(6).toString("hex");
    for (let attempt = 1; ; attempt++) {
      let acquired: AcquiredStream;
      try {
        acquired = await this.#options.finder.acquire(workspace, Math.max(0, deadline - Date.now()), options.signal);
      } catch (err) {
        const e = WarrenError.from(err);
        this.#options.onOutcome?.(e.code === ErrorCode.Canceled ? "canceled" : "unavailable");
        throw e;
      }
      try {
        const socket = await this.#claim(acquired, port, connectionId, options.signal, options.earlyData);
        this.#options.onOutcome?.("ok");
        return socket;
      } catch (err) {
        if (err instanceof StreamLost && attempt < 8) {
          acquired.connection.log.debug({ connectionId, attempt }, "tunnel stream closed while claimed; taking another");
          continue;
        }
        const e = err instanceof StreamLost ? new WarrenError(ErrorCode.Unavailable, `workspace "${workspace.name}" dropped every tunnel stream offered`) : WarrenError.from(err);
        this.#options.onOutcome?.(dialOutcomeOf(e));
        throw e;
      }
    }
  }

  #claim(acquired: AcquiredStream, port: number, connectionId: string, signal?: AbortSignal, earlyData?: readonly Buffer[]): Promise<TunnelSocket> {
    const { stream, connection } = acquired;
    return runDialHandshake({
      stream,
      inbound: TunnelRequestSchema,
      maxMessageBytes: this.#options.maxMessageBytes,
      finish: (s) => endWithStatus(s as ServerHttp2Stream),
      request: encodeGrpcMessage(TunnelResponseSchema, create(TunnelResponseSchema, { msg: { case: "dial", value: { port, connectionId } } })),
      answerOf: (message: TunnelRequest) => {
        if (message.msg.case !== "dialResult") return undefined;
        const { status, message: detail } = message.msg.value;
        if (status === DialStatus.OK) return { ok: true };
        // A draining agent answers no new dials: the stream is lost, take another.
        if (status === DialStatus.DRAINING) return { ok: false, error: new StreamLost() };
        return { ok: false, error: errorOfDialStatus(connection.workspace, port, status, detail) };
      },
      // A stream retired (or its agent gone) at the moment it was claimed: take another, unseen by the caller.
      closedEarly: () => new StreamLost(),
      timeoutMs: this.#options.dialTimeoutMs,
      timeoutError: () => new WarrenError(ErrorCode.DeadlineExceeded, `workspace "${connection.workspace}" did not connect to port ${port} within ${this.#options.dialTimeoutMs} ms`),
      signal,
      onSocket: (socket) =>
        // Protocol violations on a claimed stream drop the agent's whole connection.
        socket.on("error", (err) => {
          if (err instanceof WarrenError && (err.code === ErrorCode.InvalidArgument || err.code === ErrorCode.ResourceExhausted)) {
            connection.protocolViolation(err);
          }
        }),
      // Sent right behind the dial: a stream lost meanwhile is retried with them on the next one.
      afterRequest: (socket) => {
        for (const data of earlyData ?? []) {
          socket.bytesWritten += data.length;
          for (const part of encodeTunnelData(data)) stream.write(part);
        }
      },
    });
  }
}

/** The metrics outcome of a failed dial. */
export function dialOutcomeOf(err: WarrenError): Exclude<DialOutcome, "ok"> {
  switch (err.code) {
    case ErrorCode.BadGateway:
      return "refused";
    case ErrorCode.PermissionDenied:
      return "not_allowed";
    case ErrorCode.DeadlineExceeded:
      return "timeout";
    case ErrorCode.Unavailable:
      return "unavailable";
    case ErrorCode.Canceled:
      return "canceled";
    default:
      return "error";
  }
}

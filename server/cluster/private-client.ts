import http2, { type ClientHttp2Session, type ClientHttp2Stream, type Http2Session } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { DialRequestSchema, DialResponseSchema, ForwardDialStatus, type DialResponse } from "../../shared/gen/warren/v1/private_pb.js";
import { encodeGrpcMessage } from "../../shared/grpc-message.js";
import { decodeGrpcStatusMessage as decodeStatusText, GrpcStatus, errorFromGrpc } from "../../shared/grpc-status.js";
import type { Logger } from "../../shared/logger.js";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import { runDialHandshake } from "../../shared/dial-handshake.js";
import { noDelayConnector } from "../../shared/http2-sockets.js";
import { TUNNEL_WINDOWS } from "../../shared/tunnel-windows.js";
import type { DialOptions } from "../tunnel/tunnel-dialer.js";
import type { WorkspaceRef } from "../domain/workspace-ref.js";
import type { PresenceHolder } from "./presence.js";
import { errorOfForwardStatus, HolderUnreachable } from "./private-protocol.js";
import { PRIVATE_DIAL_PATH } from "../../shared/dial-protocol.js";

/** What the cluster dialer needs from the private API. */
export interface PeerDialer {
  /**
   * Asks `holder` to dial a port of a workspace whose agent it holds; resolves with the
   * connected byte stream, which the caller owns. Rejects with HolderUnreachable (no answer:
   * the dial never started there), HolderNotConnected (stale record), the holder's own error
   * (bad_gateway, permission_denied, deadline_exceeded, unavailable), deadline_exceeded when it
   * does not answer in time, or canceled when options.signal aborts.
   */
  dial(holder: PresenceHolder, workspace: WorkspaceRef, port: number, options: DialOptions & { connectionId: string }): Promise<TunnelSocket>;
}

export interface PrivateClientOptions {
  readonly clusterSecret: string;
  /**
   * Dial peers over TLS (WARREN_PRIVATE_TLS), verifying their certificate for `serverName`
   * (the root domain: peers are dialed by IP address) with `ca`, or the system CAs.
   */
  readonly tls?: { readonly serverName: string; readonly ca?: Buffer };
  readonly serverId: string;
  readonly log: Logger;
  /** A peer that does not accept the connection within this time is unreachable. */
  readonly connectTimeoutMs?: number;
  /** The longest a peer may take to answer a dial (its own stream wait plus dial timeout, and some). */
  readonly answerTimeoutMs: number;
  /**
   * A pooled session to a peer stops taking new streams (the peer is shutting down): sockets
   * kept alive on it should go (the HTTP agent's idle ones).
   */
  readonly onSessionClosing?: (session: Http2Session) => void;
}

const PING_INTERVAL_MS = 10_000;
const PING_TIMEOUT_MS = 5000;

/**
 * The calling side of the private API, with one pooled HTTP/2 session per peer server: every
 * forwarded connection to that peer is a stream on it, so a forward costs no TCP handshake.
 * Sessions use the tunnel's large receive windows, and are pinged so that a peer that vanished
 * without a FIN is noticed.
 */
export class PrivateClient implements PeerDialer {
  readonly #options: PrivateClientOptions;
  readonly #sessions = new Map<string, ClientHttp2Session>();
  readonly #owned = new WeakSet<Http2Session>();
  readonly #pinger: NodeJS.Timeout;
  #lastAuthLog = 0;

  constructor(options: PrivateClientOptions) {
    this.#options = options;
    this.#pinger = setInterval(() => this.#pingAll(), PING_INTERVAL_MS);
    this.#pinger.unref();
  }

  /** Whether the HTTP/2 session is one of ours (a forwarded socket may be kept alive on it). */
  owns(session: Http2Session): boolean {
    return this.#owned.has(session) && !session.closed && !session.destroyed;
  }

  close(): void {
    clearInterval(this.#pinger);
    for (const session of this.#sessions.values()) session.destroy();
    this.#sessions.clear();
  }

  dial(holder: PresenceHolder, workspace: WorkspaceRef, port: number, options: DialOptions & { connectionId: string }): Promise<TunnelSocket> {
    const peer = `server ${holder.serverId} (${holder.address})`;
    let stream: ClientHttp2Stream;
    try {
      stream = this.#session(holder.address).request(
        {
          ":method": "POST",
          ":path": PRIVATE_DIAL_PATH,
          "content-type": "application/grpc",
          te: "trailers",
          authorization: `Bearer ${this.#options.clusterSecret}`,
        },
        { endStream: false },
      );
    } catch (err) {
      return Promise.reject(new HolderUnreachable(`${peer} is unreachable: ${(err as Error).message}`, { cause: err }));
    }
    stream.on("error", () => {
      // Reported through the socket's close.
    });
    let failDial: ((err: Error) => void) | undefined;
    const dialed = runDialHandshake({
      stream,
      inbound: DialResponseSchema,
      maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
      finish: (s) => s.end(),
      request: encodeGrpcMessage(
        DialRequestSchema,
        create(DialRequestSchema, {
          msg: { case: "dial", value: { workspace: workspace.name, workspaceId: workspace.id, port, connectionId: options.connectionId, originServerId: this.#options.serverId } },
        }),
      ),
      answerOf: (message: DialResponse) => {
        if (message.msg.case !== "dialResult") return undefined;
        const result = message.msg.value;
        return result.status === ForwardDialStatus.OK ? { ok: true } : { ok: false, error: errorOfForwardStatus(result.status, result.message) };
      },
      closedEarly: (lastError) => {
        const why = lastError ? `: ${(lastError as NodeJS.ErrnoException).code ?? lastError.message}` : "";
        return new HolderUnreachable(`${peer} closed the forwarded dial before answering${why}`);
      },
      timeoutMs: this.#options.answerTimeoutMs,
      timeoutError: () => new WarrenError(ErrorCode.DeadlineExceeded, `${peer} did not answer a forwarded dial to workspace "${workspace.name}" within ${this.#options.answerTimeoutMs} ms`),
      signal: options.signal,
      onSocket: (_socket, fail) => (failDial = fail),
    });
    stream.once("response", (headers) => {
      const status = Number(headers["grpc-status"] ?? GrpcStatus.OK);
      if (status === GrpcStatus.OK) return;
      const message = decodeStatusText(headers["grpc-message"] as string | undefined);
      if (status === GrpcStatus.UNAUTHENTICATED) this.#logAuthFailure(peer);
      // Refused before the dial started: the next holder may do better.
      failDial?.(new HolderUnreachable(`${peer} refused the forwarded dial: ${errorFromGrpc(status, message).message}`));
    });
    return dialed;
  }

  #session(address: string): ClientHttp2Session {
    const existing = this.#sessions.get(address);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const tls = this.#options.tls;
    const session = http2.connect(`${tls ? "https" : "http"}://${address}`, {
      settings: { initialWindowSize: TUNNEL_WINDOWS.streamWindowBytes, maxFrameSize: TUNNEL_WINDOWS.maxFrameBytes, enablePush: false },
      maxSessionMemory: TUNNEL_WINDOWS.maxSessionMemoryMb,
      // Peers are dialed by IP address: with TLS their certificate is verified for the root domain.
      createConnection: noDelayConnector(new URL(`${tls ? "https" : "http"}://${address}`), tls ? { servername: tls.serverName, ...(tls.ca ? { ca: tls.ca } : {}) } : {}),
    });
    this.#owned.add(session);
    this.#sessions.set(address, session);
    const connectTimer = setTimeout(() => {
      if (session.connecting) session.destroy(new Error(`no connection within ${this.#options.connectTimeoutMs ?? 1000} ms`));
    }, this.#options.connectTimeoutMs ?? 1000);
    connectTimer.unref();
    session.once("connect", () => {
      clearTimeout(connectTimer);
      try {
        session.setLocalWindowSize(TUNNEL_WINDOWS.sessionWindowBytes);
      } catch {
        // Closed meanwhile.
      }
    });
    session.on("error", () => {
      // Streams report it; the session leaves the pool on close.
    });
    const drop = () => {
      clearTimeout(connectTimer);
      if (this.#sessions.get(address) === session) this.#sessions.delete(address);
    };
    session.once("close", drop);
    // A peer shutting down sends GOAWAY: new dials open a fresh session (and fail fast if it is gone).
    session.once("goaway", () => {
      drop();
      this.#options.onSessionClosing?.(session);
    });
    session.unref();
    return session;
  }

  #pingAll(): void {
    for (const session of this.#sessions.values()) {
      if (session.connecting || session.closed || session.destroyed) continue;
      const timer = setTimeout(() => session.destroy(), PING_TIMEOUT_MS);
      timer.unref();
      try {
        session.ping(() => clearTimeout(timer));
      } catch {
        clearTimeout(timer);
      }
    }
  }

  #logAuthFailure(peer: string): void {
    const now = Date.now();
    if (now - this.#lastAuthLog < 10_000) return;
    this.#lastAuthLog = now;
    this.#options.log.error({ peer }, "a peer refused this server's cluster secret: WARREN_CLUSTER_SECRET must be the same on every server");
  }
}

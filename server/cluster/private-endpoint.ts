import {
  type Http2SecureServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type SecureServerOptions,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { DialRequestSchema, DialResponseSchema, ForwardDialStatus, type DialRequest, type ForwardDial } from "../../shared/gen/warren/v1/private_pb.js";
import { encodeGrpcMessage } from "../../shared/grpc-message.js";
import type { Logger } from "../../shared/logger.js";
import type { HostPort } from "../../shared/settings.js";
import { TunnelSocket } from "../../shared/tunnel-socket.js";
import { createGrpcServer } from "../net/grpc-server.js";
import { TUNNEL_WINDOWS } from "../../shared/tunnel-windows.js";
import { bearerToken, constantTimeEquals } from "../domain/tokens.js";
import type { Dialer } from "../tunnel/tunnel-dialer.js";
import { endWithStatus, respondOk, respondWithError } from "../tunnel/grpc-responses.js";
import { forwardStatusOf, HolderNotConnected } from "./private-protocol.js";
import { PRIVATE_DIAL_PATH } from "../../shared/dial-protocol.js";
import { spliceTunnels } from "./splice.js";
import { listenOn } from "../net/listen.js";

/** A call must send its dial within this time. */
const DIAL_MESSAGE_TIMEOUT_MS = 10_000;
const REFUSAL_LOG_INTERVAL_MS = 10_000;

export type ForwardedDialOutcome = "ok" | "not_connected" | "refused" | "not_allowed" | "timeout" | "unavailable" | "error" | "canceled" | "unauthenticated";

export interface PrivateEndpointOptions {
  readonly listen: HostPort;
  /** Serve TLS with this certificate (WARREN_PRIVATE_TLS); h2c otherwise. */
  readonly tls?: SecureServerOptions;
  readonly clusterSecret: string;
  /** More secrets accepted from callers, while the cluster rotates to a new one. */
  readonly acceptedSecrets?: readonly string[];
  readonly serverId: string;
  /**
   * Dials this server's own agents only. Never the cluster dialer: that is what makes loops
   * impossible (a forwarded dial is never forwarded again).
   */
  readonly local: Dialer;
  /** This server's agents, by workspace id. */
  readonly agents: { isConnected(workspaceId: string): boolean };
  readonly log: Logger;
  readonly onOutcome?: (outcome: ForwardedDialOutcome) => void;
}

/**
 * The private listener: the other servers of the cluster ask this one to dial workspaces whose
 * agents it holds, and the bytes are spliced between their call and one of the agent's idle
 * streams. Raw node:http2 with the same large flow-control windows as the agent endpoint, so
 * a forwarded transfer is not throttled by the hop.
 */
export class PrivateEndpoint {
  readonly #options: PrivateEndpointOptions;
  readonly #server: Http2Server | Http2SecureServer;
  readonly #sessions = new Set<ServerHttp2Session>();
  #lastRefusalLog = 0;

  constructor(options: PrivateEndpointOptions) {
    this.#options = options;
    this.#server = createGrpcServer({
      tls: options.tls,
      settings: { initialWindowSize: TUNNEL_WINDOWS.streamWindowBytes, maxFrameSize: TUNNEL_WINDOWS.maxFrameBytes },
      maxSessionMemory: TUNNEL_WINDOWS.maxSessionMemoryMb,
      onSession: (session) => this.#onSession(session),
      onStream: (stream, headers) => this.#onStream(stream, headers),
    });
  }

  #onSession(session: ServerHttp2Session): void {
    this.#sessions.add(session);
    session.on("error", () => session.destroy());
    session.once("close", () => this.#sessions.delete(session));
    session.once("remoteSettings", () => {
      try {
        session.setLocalWindowSize(TUNNEL_WINDOWS.sessionWindowBytes);
      } catch {
        // Session already gone.
      }
    });
  }

  async listen(): Promise<AddressInfo> {
    return listenOn(this.#server, this.#options.listen);
  }

  /** Swaps the TLS certificate for new connections. */
  setSecureContext(options: SecureServerOptions): void {
    if ("setSecureContext" in this.#server) this.#server.setSecureContext(options);
  }

  /**
   * Stops taking calls: no new connections, and a GOAWAY on every open one, so that peers dial
   * elsewhere while the calls in flight go on. Never blocks.
   */
  stopAccepting(): void {
    this.#server.close();
    for (const session of this.#sessions) {
      if (!session.closed && !session.destroyed) session.close();
    }
  }

  /** Resolves once every peer connection has closed (their calls in flight have ended). Never rejects. */
  async whenIdle(): Promise<void> {
    // Sessions leave the set on "close" (a listener added before ours): wait for one, look again.
    while (this.#sessions.size > 0) {
      await new Promise<void>((resolve) => {
        for (const session of this.#sessions) session.once("close", () => resolve());
      });
    }
  }

  /** Stops listening and drops every call (their agents are going away too). */
  close(): void {
    this.#server.close();
    for (const session of this.#sessions) session.destroy();
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on("error", () => {
      // Resets are normal (the caller's client went away); the splice reports what matters.
    });
    const contentType = headers["content-type"] ?? "";
    if (headers[":method"] !== "POST" || !contentType.startsWith("application/grpc")) {
      stream.respond({ ":status": 415, "content-type": "text/plain" }, { endStream: false });
      stream.end("the private endpoint speaks gRPC only\n");
      return;
    }
    const secret = bearerToken(headers.authorization);
    if (!secret || !this.#secretAccepted(secret)) {
      this.#options.onOutcome?.("unauthenticated");
      this.#logRefusal(stream);
      respondWithError(stream, new WarrenError(ErrorCode.Unauthenticated, "wrong or missing cluster secret (WARREN_CLUSTER_SECRET)"));
      return;
    }
    if (headers[":path"] !== PRIVATE_DIAL_PATH) {
      respondWithError(stream, new WarrenError(ErrorCode.Unimplemented, `unknown method ${headers[":path"]}`));
      return;
    }
    respondOk(stream);
    const abort = new AbortController();
    let dialing = false;
    const socket: TunnelSocket = new TunnelSocket({
      stream,
      inbound: DialRequestSchema,
      maxMessageBytes: TUNNEL_WINDOWS.maxMessageBytes,
      handshake: true,
      finish: (s) => endWithStatus(s as ServerHttp2Stream),
      onControlMessage: (message: DialRequest) => {
        if (message.msg.case !== "dial" || dialing) {
          throw new WarrenError(ErrorCode.InvalidArgument, `unexpected ${message.msg.case ?? "empty"} message on a private dial`);
        }
        dialing = true;
        clearTimeout(timer);
        void this.#dial(stream, socket, message.msg.value, abort.signal);
      },
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      abort.abort();
    });
    const timer = setTimeout(() => socket.destroy(), DIAL_MESSAGE_TIMEOUT_MS);
    timer.unref();
  }

  async #dial(stream: ServerHttp2Stream, socket: TunnelSocket, dial: ForwardDial, signal: AbortSignal): Promise<void> {
    const { port, connectionId } = dial;
    const workspace = dial.workspace;
    const ref = { name: dial.workspace, id: dial.workspaceId };
    const { serverId, agents, log } = this.#options;
    const answer = (error: WarrenError) => {
      const status = forwardStatusOf(error);
      this.#options.onOutcome?.(outcomeOf(status));
      if (stream.destroyed || stream.closed) return;
      stream.write(encodeGrpcMessage(DialResponseSchema, create(DialResponseSchema, { msg: { case: "dialResult", value: { status, message: error.message } } })));
      endWithStatus(stream);
    };
    if (dial.originServerId === serverId) {
      answer(new WarrenError(ErrorCode.Internal, `two servers of the cluster share the id "${serverId}": give each its own WARREN_SERVER_ID`));
      return;
    }
    if (ref.id === "") {
      // A server that names the workspace without its incarnation could reach an agent of an
      // earlier workspace of that name: every server of a cluster must run this version.
      answer(new WarrenError(ErrorCode.InvalidArgument, `server ${dial.originServerId} forwarded a dial to workspace "${workspace}" without its id; upgrade every server of the cluster to the same version`));
      return;
    }
    if (!agents.isConnected(ref.id)) {
      answer(new HolderNotConnected(`workspace "${workspace}" is not connected to server ${serverId}`));
      return;
    }
    let upstream: TunnelSocket;
    try {
      upstream = await this.#options.local.dial(ref, port, { connectionId, signal });
    } catch (err) {
      let e = WarrenError.from(err);
      if (e.code === ErrorCode.Canceled) {
        this.#options.onOutcome?.("canceled");
        socket.destroy();
        return;
      }
      if (e.code === ErrorCode.Unavailable && !agents.isConnected(ref.id)) {
        e = new HolderNotConnected(`workspace "${workspace}" is not connected to server ${serverId}`);
      }
      answer(e);
      return;
    }
    if (socket.destroyed) {
      upstream.destroy();
      this.#options.onOutcome?.("canceled");
      return;
    }
    this.#options.onOutcome?.("ok");
    stream.write(encodeGrpcMessage(DialResponseSchema, create(DialResponseSchema, { msg: { case: "dialResult", value: { status: ForwardDialStatus.OK, message: "" } } })));
    socket.completeHandshake();
    log.debug({ workspace, port, connectionId, origin: dial.originServerId }, "forwarded dial connected");
    spliceTunnels(socket, upstream);
  }

  /** Constant time, and every accepted secret compared, so timing tells nothing of which matched. */
  #secretAccepted(secret: string): boolean {
    let ok = constantTimeEquals(secret, this.#options.clusterSecret);
    for (const other of this.#options.acceptedSecrets ?? []) ok = constantTimeEquals(secret, other) || ok;
    return ok;
  }

  #logRefusal(stream: ServerHttp2Stream): void {
    const now = Date.now();
    if (now - this.#lastRefusalLog < REFUSAL_LOG_INTERVAL_MS) return;
    this.#lastRefusalLog = now;
    this.#options.log.warn({ remote: stream.session?.socket?.remoteAddress }, "refused a private call with a wrong cluster secret");
  }
}

function outcomeOf(status: ForwardDialStatus): ForwardedDialOutcome {
  switch (status) {
    case ForwardDialStatus.NOT_CONNECTED:
      return "not_connected";
    case ForwardDialStatus.UNAVAILABLE:
      return "unavailable";
    case ForwardDialStatus.REFUSED:
      return "refused";
    case ForwardDialStatus.PORT_NOT_ALLOWED:
      return "not_allowed";
    case ForwardDialStatus.TIMEOUT:
      return "timeout";
    case ForwardDialStatus.OK:
      return "ok";
    default:
      return "error";
  }
}

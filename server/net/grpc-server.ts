import http2, { type Http2SecureServer, type Http2Server, type IncomingHttpHeaders, type SecureServerOptions, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import { acceptWithNoDelay } from "../../shared/http2-sockets.js";

export interface GrpcServerOptions {
  /** TLS when present (ALPN h2 only); plain HTTP/2 with prior knowledge otherwise. */
  readonly tls?: SecureServerOptions | undefined;
  readonly settings: http2.Settings;
  /** Megabytes of buffered data a session may hold (node's maxSessionMemory). */
  readonly maxSessionMemory: number;
  readonly peerMaxConcurrentStreams?: number;
  readonly onSession: (session: ServerHttp2Session) => void;
  readonly onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;
  /** A session that failed at the HTTP/2 level (it is destroyed after this). */
  readonly onSessionError?: (err: Error) => void;
}

/**
 * The HTTP/2 listener of a gRPC service Warren speaks by hand (the agent endpoint, the private
 * API between servers): TLS or prior-knowledge h2c, no HTTP/1.1, Nagle off on every
 * connection, and a peer that does not speak HTTP/2 (bad preface, broken frames) dropped.
 */
export function createGrpcServer(options: GrpcServerOptions): Http2Server | Http2SecureServer {
  const common = {
    settings: options.settings,
    maxSessionMemory: options.maxSessionMemory,
    ...(options.peerMaxConcurrentStreams !== undefined ? { peerMaxConcurrentStreams: options.peerMaxConcurrentStreams } : {}),
  };
  const server = options.tls ? http2.createSecureServer({ ...options.tls, ...common, allowHTTP1: false }) : http2.createServer(common);
  acceptWithNoDelay(server);
  server.on("session", options.onSession);
  server.on("stream", options.onStream);
  server.on("sessionError", (err: Error, session: ServerHttp2Session) => {
    options.onSessionError?.(err);
    session.destroy();
  });
  server.on("unknownProtocol", (socket) => socket.destroy());
  return server;
}

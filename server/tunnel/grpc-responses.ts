import type { ServerHttp2Stream } from "node:http2";
import { WarrenError } from "../../shared/errors.js";
import { encodeGrpcStatusMessage as encodeStatusMessage, GrpcStatus, grpcStatusOf } from "../../shared/grpc-status.js";

/**
 * Helpers for gRPC responses on a raw node:http2 server stream. The server sends its
 * trailers only when the stream ends, so every response is opened with waitForTrailers.
 */

/** Answers a call that failed before it started: a trailers-only response. */
export function respondWithError(stream: ServerHttp2Stream, error: WarrenError): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    endWithStatus(stream, error);
    return;
  }
  stream.respond(
    {
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-status": String(grpcStatusOf(error.code)),
      "grpc-message": encodeStatusMessage(error.message),
    },
    { endStream: true },
  );
}

/** Opens the response; whatever status endWithStatus() sets later goes out as trailers. */
export function respondOk(stream: ServerHttp2Stream): void {
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  // 'wantTrailers' comes once per stream; one shared listener rather than a closure per stream.
  stream.on("wantTrailers", sendStatusTrailers);
}

function sendStatusTrailers(this: ServerHttp2Stream): void {
  const status = (this as StatusCarrier).warrenStatus;
  const trailers: Record<string, string> = { "grpc-status": String(status ? grpcStatusOf(status.code) : GrpcStatus.OK) };
  if (status) trailers["grpc-message"] = encodeStatusMessage(status.message);
  try {
    this.sendTrailers(trailers);
  } catch {
    // The stream was reset meanwhile; nothing to send.
  }
}

type StatusCarrier = ServerHttp2Stream & { warrenStatus?: WarrenError };

/** Ends an opened response with the given error's status, or OK. */
export function endWithStatus(stream: ServerHttp2Stream, error?: WarrenError): void {
  if (stream.destroyed || stream.closed || stream.writableEnded) return;
  if (error) (stream as StatusCarrier).warrenStatus = error;
  stream.end();
}

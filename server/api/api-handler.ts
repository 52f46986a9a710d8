import type { IncomingMessage, ServerResponse } from "node:http";
import { Code, ConnectError, createConnectRouter, type ConnectRouter } from "@connectrpc/connect";
import type { Compression, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Logger } from "../../shared/logger.js";
import { warrenErrors } from "./connect-errors.js";

/** Largest API request body; anything bigger is refused before it is parsed. */
export const API_MAX_REQUEST_BYTES = 1024 * 1024;

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The control API on the root domain: Connect protocol (JSON or binary), gRPC-Web and gRPC.
 * connectNodeAdapter's loop, with one change: a body over the limit is malformed input
 * (`invalid_argument`, naming the body), whether announced by Content-Length or found while
 * reading a chunked one; Connect alone would answer `resource_exhausted`.
 */
export function createApiHandler(options: { routes: (router: ConnectRouter) => void; fallback: NodeHandler; log?: Logger }): NodeHandler {
  const router = createConnectRouter({
    interceptors: [warrenErrors],
    readMaxBytes: API_MAX_REQUEST_BYTES,
    jsonOptions: { ignoreUnknownFields: false },
    acceptCompression: [compressionGzip, compressionBrotli].map(limitedToInvalidArgument),
  });
  options.routes(router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));
  return (req, res) => {
    const handler = handlers.get((req.url ?? "").split("?", 2)[0] ?? "");
    if (!handler) {
      options.fallback(req, res);
      return;
    }
    // Announced too big: refused before a byte of it is read. gRPC clients keep Connect's own
    // answer, since their errors travel in trailers.
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > API_MAX_REQUEST_BYTES && !(req.headers["content-type"] ?? "").startsWith("application/grpc")) {
      const body = JSON.stringify({ code: "invalid_argument", message: overLimit(`${declared} bytes`) });
      res.writeHead(400, { "content-type": "application/json", "content-length": Buffer.byteLength(body), connection: "close" });
      res.end(body);
      return;
    }
    const uReq = universalRequestFromNodeRequest(req, res, undefined, undefined);
    // The rest of an oversized body is never read: the connection closes after the answer.
    handler(withBodyLimit(uReq, API_MAX_REQUEST_BYTES, () => res.setHeader("connection", "close")))
      .then((uRes) => universalResponseToNodeResponse(uRes, res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        options.log?.warn({ err: (reason as Error).message, method: handler.method.name }, "API handler failed");
      });
  };
}

/**
 * A compression whose output over the limit (a compression bomb) is malformed input, like any
 * body over the limit, rather than Connect's resource_exhausted (429, "come back later").
 */
function limitedToInvalidArgument(compression: Compression): Compression {
  return {
    name: compression.name,
    compress: (bytes) => compression.compress(bytes),
    decompress: async (bytes, readMaxBytes) => {
      try {
        return await compression.decompress(bytes, readMaxBytes);
      } catch (err) {
        if (ConnectError.from(err).code !== Code.ResourceExhausted) throw err;
        throw new ConnectError(overLimit(`more than ${readMaxBytes} bytes once decompressed`), Code.InvalidArgument);
      }
    },
  };
}

function overLimit(size: string): string {
  return `request body: ${size} is over the API's limit of ${API_MAX_REQUEST_BYTES} bytes`;
}

/** The request, its body stopped with invalid_argument as soon as it passes `limit` bytes. */
function withBodyLimit(uReq: UniversalServerRequest, limit: number, onOverLimit: () => void): UniversalServerRequest {
  const body = uReq.body;
  if (typeof body !== "object" || body === null || !(Symbol.asyncIterator in body)) return uReq;
  const source = body as AsyncIterable<Uint8Array>;
  async function* limited(): AsyncIterable<Uint8Array> {
    let seen = 0;
    for await (const chunk of source) {
      seen += chunk.byteLength;
      if (seen > limit) {
        onOverLimit();
        throw new ConnectError(overLimit(`more than ${limit} bytes`), Code.InvalidArgument);
      }
      yield chunk;
    }
  }
  return { ...uReq, body: limited() };
}

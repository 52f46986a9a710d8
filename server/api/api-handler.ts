import type { IncomingMessage, ServerResponse } from "node:http";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { warrenErrors } from "./connect-errors.js";

/** Largest API request body; anything bigger is refused before it is parsed. */
export const API_MAX_REQUEST_BYTES = 1024 * 1024;

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The control API on the root domain: Connect protocol (JSON or binary), gRPC-Web and gRPC. */
export function createApiHandler(options: { routes: (router: ConnectRouter) => void; fallback: NodeHandler }): NodeHandler {
  const connect = connectNodeAdapter({
    routes: options.routes,
    fallback: (req, res) => options.fallback(req as IncomingMessage, res as ServerResponse),
    interceptors: [warrenErrors],
    readMaxBytes: API_MAX_REQUEST_BYTES,
    jsonOptions: { ignoreUnknownFields: false },
  });
  return (req, res) => {
    // A body announced too big is malformed input, refused before a byte of it is read.
    // (Connect itself would answer resource_exhausted, and only after reading up to the limit;
    // gRPC clients keep that, since their errors travel in trailers.)
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > API_MAX_REQUEST_BYTES && !(req.headers["content-type"] ?? "").startsWith("application/grpc")) {
      const body = JSON.stringify({
        code: "invalid_argument",
        message: `request body: ${declared} bytes is over the API's limit of ${API_MAX_REQUEST_BYTES} bytes`,
      });
      res.writeHead(400, { "content-type": "application/json", "content-length": Buffer.byteLength(body), connection: "close" });
      res.end(body);
      return;
    }
    connect(req, res);
  };
}

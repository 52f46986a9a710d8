import type { IncomingMessage, ServerResponse } from "node:http";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { warrenErrors } from "./connect-errors.js";

/** Largest API request body; anything bigger is refused before it is parsed. */
export const API_MAX_REQUEST_BYTES = 1024 * 1024;

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The control API on the root domain: Connect protocol (JSON or binary), gRPC-Web and gRPC. */
export function createApiHandler(options: { routes: (router: ConnectRouter) => void; fallback: NodeHandler }): NodeHandler {
  return connectNodeAdapter({
    routes: options.routes,
    fallback: (req, res) => options.fallback(req as IncomingMessage, res as ServerResponse),
    interceptors: [warrenErrors],
    readMaxBytes: API_MAX_REQUEST_BYTES,
    jsonOptions: { ignoreUnknownFields: false },
  });
}

import type { IncomingMessage, ServerResponse } from "node:http";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { VERSION } from "../../shared/version.js";
import { sendError } from "../web/error-response.js";

export interface RootRoute {
  /** Handles the request and returns true, or returns false to pass it on. */
  (req: IncomingMessage, res: ServerResponse, path: string): boolean;
}

/**
 * The bare root domain: the routes given (downloads, login...), then the control API, whose
 * fallback answers health and 404.
 */
export function rootHandler(options: {
  routes: readonly RootRoute[];
  api: (req: IncomingMessage, res: ServerResponse) => void;
}): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    for (const route of options.routes) if (route(req, res, path)) return;
    options.api(req, res);
  };
}

/** What the root domain answers for paths that are not API methods. */
export function rootFallback(req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? "/").split("?")[0];
  if (req.method === "GET" && (path === "/healthz" || path === "/")) {
    const body = path === "/" ? `Warren ${VERSION}: reverse tunnels to workspaces. API: POST /warren.v1.WorkspaceService/<Method>\n` : "ok\n";
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
    res.end(body);
    return;
  }
  sendError(res, new WarrenError(ErrorCode.NotFound, `no such path on the root domain: ${req.method} ${path}`));
}

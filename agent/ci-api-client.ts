import http from "node:http";
import https from "node:https";
import { isIP, type Socket } from "node:net";
import tls from "node:tls";
import { describeProxy, openTunnel, proxyFor } from "../shared/proxy.js";

/** A refusal or failure of a control API call, with the server's own one-line message. */
export class CiApiError extends Error {
  override readonly name = "CiApiError";
  constructor(
    message: string,
    /** The Connect code ("unauthenticated", ...), or "unavailable" when the server was not reached. */
    readonly code: string,
  ) {
    super(message);
  }
}

const TIMEOUT_MS = 30_000;

/**
 * Calls `POST /warren.v1.<Service>/<Method>` on the server's root domain with a JSON body,
 * as `warren-agent ci` does before it has an agent token (and to end its workspace). Honours
 * HTTPS_PROXY/NO_PROXY and WARREN_CA_FILE. `*.localhost` is dialled on 127.0.0.1 (browsers
 * and curl resolve it there; not every resolver does).
 */
export async function callControlApi<T>(server: URL, method: string, body: unknown, bearer: string, ca?: Buffer): Promise<T> {
  const payload = Buffer.from(JSON.stringify(body));
  const secure = server.protocol === "https:";
  const hostname = server.hostname.replace(/^\[|\]$/g, "");
  const port = Number(server.port || (secure ? 443 : 80));
  const dialHost = hostname === "localhost" || hostname.endsWith(".localhost") ? "127.0.0.1" : hostname;
  let socket: Socket | undefined;
  const proxy = proxyFor(server);
  if (proxy) {
    try {
      socket = await openTunnel(proxy, dialHost, port);
    } catch (err) {
      throw new CiApiError(`${(err as Error).message} (proxy ${describeProxy(proxy)})`, "unavailable");
    }
  }
  const options: https.RequestOptions = {
    host: dialHost,
    port,
    method: "POST",
    path: `/warren.v1.${method}`,
    headers: {
      host: server.host,
      "content-type": "application/json",
      "content-length": payload.length,
      authorization: `Bearer ${bearer}`,
    },
    timeout: TIMEOUT_MS,
    ...(secure ? { servername: isIP(hostname) ? undefined : hostname, ...(ca ? { ca } : {}) } : {}),
    ...(socket ? { createConnection: () => (secure ? tls.connect({ socket, servername: hostname, ...(ca ? { ca } : {}) }) : socket) } : {}),
  };
  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = (secure ? https : http).request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000}s`)));
    req.on("error", (err: NodeJS.ErrnoException) => reject(new CiApiError(`cannot reach ${server.origin}: ${err.code ?? err.message}`, "unavailable")));
    req.end(payload);
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text || "{}");
  } catch {
    throw new CiApiError(`${server.origin} answered HTTP ${status} with something other than the Warren API (is WARREN_SERVER the server's URL?)`, "unknown");
  }
  if (status !== 200) {
    const e = parsed as { code?: string; message?: string };
    if (typeof e.message !== "string") {
      throw new CiApiError(`${server.origin} answered HTTP ${status} (is WARREN_SERVER the server's URL?)`, "unknown");
    }
    throw new CiApiError(e.message, e.code ?? "unknown");
  }
  return parsed as T;
}

import http from "node:http";
import https from "node:https";
import net, { type LookupFunction } from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { openTunnel, proxyFor } from "../shared/proxy.js";
import { lookup as dnsLookup, type LookupAddress } from "node:dns";

/** An error the server answered (its message), or a transport failure. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** `localhost` and `*.localhost` are loopback (RFC 6761), whatever the system resolver says. */
export const lookup: LookupFunction = (hostname, options, callback) => {
  if (hostname === "localhost" || hostname.endsWith(".localhost")) {
    if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address: "127.0.0.1", family: 4 }]);
    else callback(null, "127.0.0.1", 4);
    return;
  }
  dnsLookup(hostname, options, callback as unknown as (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void);
};

/** Calls Connect methods with JSON, like curl: `POST {server}/warren.v1.{Service}/{Method}`. */
export class ApiClient {
  readonly #server: URL;
  readonly #token: string;

  constructor(options: { server: string; token?: string }) {
    this.#server = new URL(options.server);
    this.#token = options.token ?? "";
  }

  async call<T>(method: string, body: unknown): Promise<T> {
    return this.post<T>(`/warren.v1.${method}`, body);
  }

  /** POSTs JSON to a path of the server (with the token, when there is one); the JSON answer. */
  async post<T>(path: string, body: unknown): Promise<T> {
    const url = new URL(path, this.#server);
    const connection = await this.#proxiedConnection(url);
    return this.#request<T>(url, body, connection);
  }

  /** Through HTTPS_PROXY/HTTP_PROXY (unless NO_PROXY names the server): a CONNECT tunnel, TLS inside for https. */
  async #proxiedConnection(url: URL): Promise<Duplex | undefined> {
    let proxy: URL | undefined;
    try {
      proxy = proxyFor(url);
    } catch (err) {
      throw new ApiError("invalid_argument", (err as Error).message);
    }
    if (!proxy) return undefined;
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    let socket: net.Socket;
    try {
      socket = await openTunnel(proxy, host, port);
    } catch (err) {
      throw new ApiError("unavailable", (err as Error).message);
    }
    if (url.protocol !== "https:") return socket;
    return tls.connect({ socket, servername: net.isIP(host) ? undefined : host, ALPNProtocols: ["http/1.1"] });
  }

  #request<T>(url: URL, body: unknown, connection: Duplex | undefined): Promise<T> {
    const payload = Buffer.from(JSON.stringify(body));
    const request = url.protocol === "https:" ? https.request : http.request;
    return new Promise<T>((resolve, reject) => {
      const req = request(
        url,
        {
          method: "POST",
          lookup,
          // One call per run: no kept-alive socket holds the process open. Through a proxy,
          // the request runs on the tunnel (no agent at all).
          ...(connection ? { createConnection: () => connection } : { agent: false }),
          headers: {
            "content-type": "application/json",
            "content-length": payload.length,
            ...(this.#token ? { authorization: `Bearer ${this.#token}` } : {}),
            "user-agent": "warren-cli",
          },
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE_BYTES) req.destroy(new ApiError("internal", "response too large"));
            else chunks.push(c);
          });
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : {};
            } catch {
              reject(new ApiError("unknown", `${url.origin} answered HTTP ${res.statusCode} with something that is not JSON; is it a Warren server?`));
              return;
            }
            if (res.statusCode === 200) {
              resolve(json as T);
              return;
            }
            const e = json as { code?: string; message?: string };
            reject(new ApiError(e.code ?? "unknown", e.message ?? `HTTP ${res.statusCode}`));
          });
        },
      );
      req.on("timeout", () => req.destroy(new ApiError("deadline_exceeded", `no answer from ${url.origin} within 30 s`)));
      req.on("error", (err: NodeJS.ErrnoException) => {
        reject(err instanceof ApiError ? err : new ApiError("unavailable", `cannot reach ${url.origin}: ${err.code ?? err.message}`));
      });
      req.end(payload);
    });
  }
}

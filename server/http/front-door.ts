import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type { SecureContextOptions } from "node:tls";
import { ErrorCode, isWarrenError, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { HostPort } from "../../shared/settings.js";
import { sendError, sendUpgradeError } from "./error-response.js";
import { clientIpOf, type ForwardedInfo } from "./headers.js";
import type { BrowserLogin } from "./browser-login.js";
import type { ReverseProxy } from "./reverse-proxy.js";
import type { WebSocketProxy } from "./websocket-proxy.js";
import type { WorkspaceAccess } from "./workspace-access.js";
import { parseHost } from "./workspace-host.js";

export interface FrontDoorOptions {
  readonly listen: HostPort;
  readonly tls?: SecureContextOptions;
  readonly rootDomain: string;
  /** Serves the root domain: control API, health, downloads. */
  readonly rootHandler: (req: IncomingMessage, res: ServerResponse) => void;
  readonly access: WorkspaceAccess;
  readonly proxy: ReverseProxy;
  readonly webSockets: WebSocketProxy;
  /** Browser login: its paths on workspace hosts, and the redirect to the login page. */
  readonly login?: BrowserLogin;
  readonly log: Logger;
  /** Observes each answered request (metrics): 499 when the client left before the answer. */
  readonly onResponse?: (target: "workspace" | "root", status: number, startedAt: bigint) => void;
  /** Observes each upgrade refused before it reached the WebSocket proxy (metrics). */
  readonly onUpgradeDenied?: () => void;
}

/** The public HTTP listener: the Host header picks the root domain or a workspace port. */
export class FrontDoor {
  readonly #options: FrontDoorOptions;
  readonly #server: http.Server;
  readonly #proto: "http" | "https";
  #inFlight = 0;

  constructor(options: FrontDoorOptions) {
    this.#options = options;
    this.#proto = options.tls ? "https" : "http";
    const serverOptions: http.ServerOptions = {
      // Bodies may stream for as long as they flow; slow or stuck headers are cut off.
      requestTimeout: 0,
      headersTimeout: 30_000,
      keepAliveTimeout: 65_000,
      maxHeaderSize: 32 * 1024,
    };
    this.#server = options.tls ? https.createServer({ ...serverOptions, ...options.tls }) : http.createServer(serverOptions);
    this.#server.on("request", (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    this.#server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.#server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (socket.writable && err.code !== "ECONNRESET") {
        socket.end("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nmalformed HTTP request\n");
      } else {
        socket.destroy();
      }
    });
  }

  get server(): http.Server {
    return this.#server;
  }

  /** Requests being answered now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  async listen(): Promise<AddressInfo> {
    const { host, port } = this.#options.listen;
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, host, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    return this.#server.address() as AddressInfo;
  }

  /** Swaps the TLS certificate for new connections. */
  setSecureContext(options: SecureContextOptions): void {
    if (this.#server instanceof https.Server) this.#server.setSecureContext(options);
  }

  /** Stops accepting connections and closes idle keep-alive ones; requests in flight go on. */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
    });
  }

  closeAllConnections(): void {
    this.#server.closeAllConnections();
  }

  #forwarded(req: IncomingMessage): ForwardedInfo {
    return { clientIp: clientIpOf(req), proto: this.#proto, host: req.headers.host ?? "" };
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const target = parseHost(req.headers.host, this.#options.rootDomain);
    this.#observe(res, target.kind === "root" ? "root" : "workspace");
    if (target.kind === "root") {
      this.#options.rootHandler(req, res);
      return;
    }
    if (target.kind === "invalid") {
      sendError(res, new WarrenError(ErrorCode.NotFound, target.reason));
      return;
    }
    const login = this.#options.login;
    if (login?.handleWorkspace(req, res, `${target.port}-${target.workspace}.${this.#options.rootDomain}`)) return;
    this.#options.access.authorize(req, target.workspace, target.port).then(
      () => this.#options.proxy.handle(req, res, { workspace: target.workspace, port: target.port }, this.#forwarded(req)),
      (err) => {
        // Drain an unread body so the connection can be kept alive.
        req.resume();
        if (login && isWarrenError(err, ErrorCode.Unauthenticated) && login.wantsLogin(req)) {
          login.redirectToLogin(req, res);
          return;
        }
        sendError(res, err);
      },
    );
  }

  /** Counts the request as in flight until its response ends or its client leaves. */
  #observe(res: ServerResponse, target: "workspace" | "root"): void {
    const startedAt = process.hrtime.bigint();
    this.#inFlight++;
    res.once("close", () => {
      this.#inFlight--;
      this.#options.onResponse?.(target, res.writableFinished ? res.statusCode : 499, startedAt);
    });
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const target = parseHost(req.headers.host, this.#options.rootDomain);
    if (target.kind !== "workspace") {
      this.#options.onUpgradeDenied?.();
      sendUpgradeError(socket, new WarrenError(ErrorCode.NotFound, target.kind === "invalid" ? target.reason : "no upgrades on the root domain"));
      return;
    }
    this.#options.access.authorize(req, target.workspace, target.port).then(
      () => this.#options.webSockets.handle(req, socket, head, { workspace: target.workspace, port: target.port }, this.#forwarded(req)),
      (err) => {
        this.#options.onUpgradeDenied?.();
        sendUpgradeError(socket, err);
      },
    );
  }
}

import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { SecureContextOptions } from "node:tls";
import { ErrorCode, isWarrenError, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { HostPort } from "../../shared/settings.js";
import { sendError, sendUpgradeError } from "../web/error-response.js";
import { clientIpOf, type ForwardedInfo } from "../proxy/wire.js";
import type { BrowserLogin } from "./browser-login.js";
import type { WebSocketProxy } from "./websocket-proxy.js";
import type { WorkspaceAccess } from "./workspace-access.js";
import { HeadTooLargeError, MAX_HEAD_BYTES, parseError, requestHeadBytes } from "../proxy/http-message-parser.js";
import type { SpliceDecision, SplicedRequest } from "../proxy/spliced-connection.js";
import type { WorkspaceProxy } from "../proxy/workspace-proxy.js";
import { parseHost, type HostTarget } from "./workspace-host.js";
import { listenOn } from "../net/listen.js";
import type { Http2Session, IncomingHttpHeaders, ServerHttp2Stream, Settings } from "node:http2";
import { Http2Front } from "./front-door-h2.js";
import { readFirstBytes } from "./h2c-preface.js";
import { workspaceIdOf } from "../domain/records.js";

const TWO_HOSTS = new WarrenError(ErrorCode.InvalidArgument, "more than one Host header");

function hostHeaderCount(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.length === 4 && rawHeaders[i]!.toLowerCase() === "host") n++;
  return n;
}

/** Paths on workspace hosts that Warren answers itself (login callback, logout). */
const WARREN_PATH_PREFIX = "/.warren/";

/**
 * Whether a request target may go to the app as it is on the fast path: an origin-form path
 * that is none of Warren's own, read as node's HTTP path reads it (dot segments resolved,
 * `/./.warren/logout` is Warren's logout). Anything else takes node's path, which handles
 * every form of target the same way.
 */
function plainAppPath(url: string): boolean {
  if (!url.startsWith("/")) return false;
  if (!url.includes(".warren")) return true;
  return !new URL(url, "http://x").pathname.startsWith(WARREN_PATH_PREFIX);
}

/**
 * The origin-form of a request target on a workspace host: an absolute-form target
 * (`GET http://host/path`) must name the Host it came with, and goes on as its path, so that
 * Warren and the app read one request the same way.
 */
function originFormOf(url: string, host: string | undefined): string | WarrenError {
  if (url.startsWith("/") || url === "*") return url;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return new WarrenError(ErrorCode.InvalidArgument, "malformed request target");
  }
  if (!/^https?:$/.test(parsed.protocol) || parsed.host !== new URL(`http://${host ?? ""}`).host) {
    return new WarrenError(ErrorCode.InvalidArgument, "the request target names another host than the Host header");
  }
  return `${parsed.pathname}${parsed.search}`;
}

/** A head over the limit on the wire, which llhttp's own count lets through (see requestHeadBytes). */
function headTooLarge(req: IncomingMessage): boolean {
  return requestHeadBytes(req.method ?? "", req.url ?? "", req.rawHeaders) > MAX_HEAD_BYTES;
}

export interface FrontDoorOptions {
  readonly listen: HostPort;
  readonly tls?: SecureContextOptions;
  readonly rootDomain: string;
  /** Serves the root domain: control API, health, downloads. */
  readonly rootHandler: (req: IncomingMessage, res: ServerResponse) => void;
  readonly access: WorkspaceAccess;
  /** The workspace proxy: every authorized request to a workspace goes there. */
  readonly proxy: WorkspaceProxy;
  readonly webSockets: WebSocketProxy;
  /** Browser login: its paths on workspace hosts, and the redirect to the login page. */
  readonly login?: BrowserLogin;
  /** HTTP/1.1 connections to workspaces take the spliced fast path (else node's HTTP server parses every request). */
  readonly fastPath: boolean;
  readonly log: Logger;
  /** Observes each answered request (metrics): 499 when the client left before the answer. */
  readonly onResponse?: (target: "workspace" | "root", status: number, startedAt: bigint) => void;
  /** Upgrades on the root domain (port-forward, `warren ssh --stdio`): true when taken. */
  readonly rootUpgrades?: (req: IncomingMessage, socket: Duplex, head: Buffer, path: string) => boolean;
  /** Observes each upgrade refused before it reached the WebSocket proxy (metrics). */
  readonly onUpgradeDenied?: () => void;
  /**
   * HTTP/2 on this listener (ALPN h2 with TLS, prior knowledge without): its settings, and who
   * takes the streams that are not browsers' (agents). Absent: HTTP/1.1 only.
   */
  readonly http2?: {
    readonly settings: Settings;
    readonly maxSessionMemory: number;
    readonly takeStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean;
  };
}

/** How long a new plain connection may take to send its first bytes. */
const FIRST_BYTES_TIMEOUT_MS = 30_000;

/** The public HTTP listener: the Host header picks the root domain or a workspace port. */
export class FrontDoor {
  readonly #options: FrontDoorOptions;
  readonly #server: http.Server;
  readonly #proto: "http" | "https";
  readonly #h2: Http2Front | undefined;
  #inFlight = 0;

  constructor(options: FrontDoorOptions) {
    this.#options = options;
    this.#proto = options.tls ? "https" : "http";
    const serverOptions: http.ServerOptions = {
      // Bodies may stream for as long as they flow; slow or stuck headers are cut off.
      requestTimeout: 0,
      headersTimeout: 30_000,
      keepAliveTimeout: 65_000,
      maxHeaderSize: MAX_HEAD_BYTES,
    };
    this.#server = options.tls
      ? https.createServer({ ...serverOptions, ...options.tls, ALPNProtocols: options.http2 ? ["h2", "http/1.1"] : ["http/1.1"] })
      : http.createServer(serverOptions);
    // Every header is kept, so that a head's size is counted whole (see headTooLarge).
    this.#server.maxHeadersCount = 0;
    this.#server.on("request", (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    this.#server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    if (options.http2) {
      this.#h2 = new Http2Front({
        settings: options.http2.settings,
        maxSessionMemory: options.http2.maxSessionMemory,
        takeStream: (stream, headers) => this.#takeStream(stream, headers),
        onRequest: (req, res) => this.#onRequest(req, res),
        log: options.log,
      });
    }
    this.#interceptConnections(options.fastPath);
    this.#server.on("clientError", (err: NodeJS.ErrnoException & { reason?: string }, socket: Duplex) => {
      if (!socket.writable || err.code === "ECONNRESET") {
        socket.destroy();
        return;
      }
      // The same answers as the spliced path gives for what the parser refused, after the
      // answer to a request parsed before it (pipelined in the same write) has gone out.
      const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
      if (inFlight && !inFlight.writableFinished) {
        let answered = false;
        const answer = () => {
          if (answered) return;
          answered = true;
          sendUpgradeError(socket, parseError(err));
        };
        inFlight.once("finish", answer);
        inFlight.once("close", answer);
      } else sendUpgradeError(socket, parseError(err));
    });
  }

  get server(): http.Server {
    return this.#server;
  }

  /** Requests being answered now, on spliced connections too. */
  get inFlight(): number {
    return this.#inFlight + this.#options.proxy.splicedInFlight;
  }

  async listen(): Promise<AddressInfo> {
    return listenOn(this.#server, this.#options.listen);
  }

  /** Swaps the TLS certificate for new connections. */
  setSecureContext(options: SecureContextOptions): void {
    if (this.#server instanceof https.Server) this.#server.setSecureContext(options);
  }

  /**
   * Stops accepting connections and closes idle keep-alive ones; requests in flight go on.
   * Resolves when every connection is gone, spliced ones included.
   */
  async stopAccepting(): Promise<void> {
    // No new client will come to use a kept-alive app connection.
    this.#options.proxy.stopAccepting();
    this.#h2?.closeBrowserSessions();
    this.#server.close();
    this.#server.closeIdleConnections();
    // Agents' HTTP/2 connections stay: the agent drain moves them (see WarrenServer.shutdown).
    while (this.#options.proxy.splicedConnections > 0 || (await this.#connectionCount()) > (this.#h2?.agentSessions ?? 0)) await new Promise((r) => setTimeout(r, 50));
  }

  #connectionCount(): Promise<number> {
    return new Promise((resolve) => this.#server.getConnections((err, count) => resolve(err ? 0 : count)));
  }

  /** Closes keep-alive connections that have become idle (during a drain). */
  closeIdleConnections(): void {
    this.#server.closeIdleConnections();
    this.#options.proxy.closeIdle();
    this.#h2?.closeBrowserSessions();
  }

  /**
   * An agent or peer server session stops taking new work: client connections kept alive on it
   * finish their request in flight there and send the next one to the agent's new connection.
   */
  moveOffSession(session: Http2Session): void {
    this.#options.proxy.moveOffSession(session);
  }

  closeAllConnections(): void {
    this.#server.closeAllConnections();
    this.#options.proxy.destroyAll();
    this.#h2?.destroyAll();
  }

  /** An HTTP/2 stream for the agent endpoint: gRPC to the agent service, on any host but a workspace's. */
  #takeStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean {
    const http2 = this.#options.http2;
    if (!http2) return false;
    const authority = headers[":authority"] ?? headers.host;
    if (parseHost(authority, this.#options.rootDomain).kind === "workspace") return false;
    return http2.takeStream(stream, headers);
  }

  /**
   * Every new connection meets the protocol choice first (HTTP/2 by ALPN with TLS, by its
   * preface without), then the fast path: node's own connection listener (the first one the
   * server registered) runs only for HTTP/1 connections handed off to it.
   */
  #interceptConnections(fastPath: boolean): void {
    const event = this.#options.tls ? "secureConnection" : "connection";
    const nodeListener = this.#server.listeners(event)[0] as ((socket: Socket) => void) | undefined;
    if (!nodeListener) throw new Error(`node's HTTP server has no ${event} listener to intercept`);
    this.#server.removeListener(event, nodeListener);
    const server = this.#server;
    const http1 = (socket: Socket) => {
      if (!fastPath) {
        nodeListener.call(server, socket);
        return;
      }
      this.#options.proxy.splice(socket, {
        proto: this.#proto,
        decide: (req, first) => this.#decide(req, first),
        handOff: (s, consumed) => {
          if (consumed.length > 0) s.unshift(consumed);
          nodeListener.call(server, s);
          s.resume();
        },
      });
    };
    const h2 = this.#h2;
    this.#server.prependListener(event, (socket: Socket) => {
      if (!h2) {
        http1(socket);
        return;
      }
      if (this.#options.tls) {
        if ((socket as Socket & { alpnProtocol?: string | false }).alpnProtocol === "h2") h2.accept(socket);
        else http1(socket);
        return;
      }
      void readFirstBytes(socket, FIRST_BYTES_TIMEOUT_MS).then((first) => {
        if (first === "gone") socket.destroy();
        else if (first === "h2c") h2.accept(socket);
        else {
          http1(socket);
          socket.resume();
        }
      });
    });
  }

  /**
   * A connection whose upgrade the app declined goes on as HTTP: it enters the front door
   * again as a new connection would, with what the client sent after the upgrade request.
   */
  #resumeHttp(socket: Duplex, unread: Buffer): void {
    if (socket.destroyed) return;
    if (unread.length > 0) socket.unshift(unread);
    this.#server.emit(this.#options.tls ? "secureConnection" : "connection", socket);
    socket.resume();
  }

  /** Whether a request can take the fast path, and where to. Never rejects. */
  async #decide(req: SplicedRequest, first: boolean): Promise<SpliceDecision> {
    if (hostHeaderCount(req.rawHeaders) > 1) return { kind: "error", error: TWO_HOSTS };
    const target: HostTarget = parseHost(req.headers.host, this.#options.rootDomain);
    if (
      target.kind !== "workspace" ||
      req.headers.upgrade !== undefined ||
      req.headers.expect !== undefined ||
      req.method === "CONNECT" ||
      !plainAppPath(req.url) ||
      // Forwarded as HTTP/1.1, an HTTP/1.0 client could get a chunked answer it cannot read.
      req.httpVersion !== "1.1"
    ) {
      return { kind: "slow" };
    }
    try {
      const workspace = await this.#options.access.authorize(req as unknown as IncomingMessage, target.workspace, target.port);
      return { kind: "forward", target: { workspace: target.workspace, workspaceId: workspaceIdOf(workspace), port: target.port } };
    } catch (err) {
      // Node's HTTP server gives the first request the full answer (login redirect included);
      // later, a browser that must log in is sent there by a retry on a new connection.
      const login = this.#options.login;
      if (first || (login && isWarrenError(err, ErrorCode.Unauthenticated) && login.wantsLogin(req as unknown as IncomingMessage))) {
        return { kind: "slow" };
      }
      return { kind: "error", error: WarrenError.from(err) };
    }
  }

  #forwarded(req: IncomingMessage): ForwardedInfo {
    return { clientIp: clientIpOf(req), proto: this.#proto, host: req.headers.host ?? "" };
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const refused = hostHeaderCount(req.rawHeaders) > 1 ? TWO_HOSTS : headTooLarge(req) ? new HeadTooLargeError() : undefined;
    if (refused) {
      // Node keeps the first Host; a proxy in front might have used another (RFC 9112: 400).
      this.#observe(res, "root");
      res.shouldKeepAlive = false;
      sendError(res, refused);
      return;
    }
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
    const url = originFormOf(req.url ?? "/", req.headers.host);
    if (url instanceof WarrenError) {
      res.shouldKeepAlive = false;
      sendError(res, url);
      return;
    }
    req.url = url;
    const login = this.#options.login;
    if (login?.handleWorkspace(req, res, `${target.port}-${target.workspace}.${this.#options.rootDomain}`, target.workspace)) return;
    this.#options.access.authorize(req, target.workspace, target.port).then(
      (workspace) => this.#options.proxy.handle(req, res, { workspace: target.workspace, workspaceId: workspaceIdOf(workspace), port: target.port }, this.#forwarded(req)),
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
    const refused = hostHeaderCount(req.rawHeaders) > 1 ? TWO_HOSTS : headTooLarge(req) ? new HeadTooLargeError() : undefined;
    if (refused) {
      this.#options.onUpgradeDenied?.();
      sendUpgradeError(socket, refused);
      return;
    }
    const target = parseHost(req.headers.host, this.#options.rootDomain);
    if (target.kind === "root" && this.#options.rootUpgrades?.(req, socket, head, (req.url ?? "/").split("?")[0] ?? "/")) return;
    if (target.kind !== "workspace") {
      this.#options.onUpgradeDenied?.();
      sendUpgradeError(socket, new WarrenError(ErrorCode.NotFound, target.kind === "invalid" ? target.reason : "no upgrades on the root domain"));
      return;
    }
    const url = originFormOf(req.url ?? "/", req.headers.host);
    if (url instanceof WarrenError) {
      this.#options.onUpgradeDenied?.();
      sendUpgradeError(socket, url);
      return;
    }
    req.url = url;
    this.#options.access.authorize(req, target.workspace, target.port).then(
      (workspace) =>
        this.#options.webSockets.handle(req, socket, head, { workspace: target.workspace, workspaceId: workspaceIdOf(workspace), port: target.port }, this.#forwarded(req), (s, unread) =>
          this.#resumeHttp(s, unread),
        ),
      (err) => {
        this.#options.onUpgradeDenied?.();
        sendUpgradeError(socket, err);
      },
    );
  }
}

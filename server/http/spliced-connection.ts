import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import type { Http2Session } from "node:http2";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import { httpStatusOf } from "../../shared/http-status.js";
import { endAndDrain, sendUpgradeError, type ErrorRequest } from "./error-response.js";
import { requestHeadersForUpstream, responseHeadForClient, responseHeadNeedsRewrite, type ForwardedInfo } from "./headers.js";
import { HeadTooLargeError, HttpMessageParser, MAX_HEAD_BYTES, RequestTimeoutError, requestHeadBytes, type MessageHead } from "./http-message-parser.js";
import type { ProxyTarget } from "./reverse-proxy.js";
import type { UpstreamPool } from "./upstream-pool.js";

/** A request head as the spliced front door sees it: enough of an IncomingMessage for access checks and header rewriting. */
export interface SplicedRequest {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly rawHeaders: string[];
  readonly headers: IncomingHttpHeaders;
  readonly socket: Socket;
  /** The client will send more requests on this connection (HTTP/1.1 without Connection: close). */
  readonly keepAlive: boolean;
}

/** What the front door decides for a request on a spliced connection. */
export type SpliceDecision =
  /** Forward it over the connection's tunnel (the first request: dial to this target). */
  | { readonly kind: "forward"; readonly target: ProxyTarget }
  /** Answer with this error (401, 403, 404, 503...). */
  | { readonly kind: "error"; readonly error: WarrenError }
  /** Not for the fast path (login pages, upgrades...): node's HTTP server takes it. */
  | { readonly kind: "slow" };

export interface SplicedConnectionOptions {
  readonly socket: Socket;
  readonly proto: "http" | "https";
  /** Decides a request; may look things up (never rejects: errors come back as decisions). */
  readonly decide: (req: SplicedRequest, first: boolean) => Promise<SpliceDecision>;
  /**
   * Opens the tunnel to the target for the first forwarded request, sending `earlyData` (its
   * head) as part of the dial; rejects with a WarrenError.
   */
  readonly dial: (target: ProxyTarget, earlyData: readonly Buffer[]) => Promise<Duplex>;
  /**
   * Kept-alive app connections: the first request takes one when there is one, and the
   * connection's upstream goes back there when the client leaves at a response boundary.
   */
  readonly upstreams?: UpstreamPool;
  /** Gives the connection, with every byte read so far, to node's HTTP server. */
  readonly handOff: (socket: Socket, consumed: Buffer) => void;
  readonly filterCookie?: (cookie: string) => string | undefined;
  readonly upstreamTimeoutMs: number;
  /**
   * How long a client may take to send a request head: the first from when it connects,
   * every later one from its first byte.
   */
  readonly headTimeoutMs: number;
  /** An idle connection (no request in flight) is closed after this long. */
  readonly idleTimeoutMs: number;
  /** Observes each finished response (metrics). */
  readonly onResponse?: (status: number, startedAt: bigint) => void;
  readonly onClose?: () => void;
  readonly log: Logger;
}

type ParsedEvent =
  | { readonly kind: "head"; readonly head: MessageHead }
  | { readonly kind: "body"; readonly chunk: Buffer }
  | { readonly kind: "complete" }
  /** What followed could not be parsed: answered after the responses before it. */
  | { readonly kind: "error"; readonly error: WarrenError };

interface PendingResponse {
  readonly method: string;
  readonly startedAt: bigint;
  /** The client asked to close after this response. */
  readonly close: boolean;
  /** Bytes of this response already passed to the client. */
  started: boolean;
}

/** Where the bytes coming from the app are, in the response to the request in flight. */
enum ResponseStage {
  /** The next byte starts a response head (a 1xx or the final one): held back until whole. */
  Head,
  /** In the final response's body: bytes pass through as they are. */
  Body,
}

/** What the response parser saw in one chunk from the app, acted on once the chunk is passed on. */
type ResponseEvent =
  | { readonly kind: "head"; readonly head: MessageHead }
  /** The end of a message: of an informational answer (the request goes on) or of the final one. */
  | { readonly kind: "complete"; readonly interim: boolean };

/**
 * One client connection to a workspace host, spliced onto one tunnel stream: requests are
 * parsed (node's llhttp), checked one by one and forwarded with their heads rewritten
 * (Warren's credentials out, X-Forwarded-* in, hop-by-hop headers dropped); response bodies
 * pass back byte for byte while a second parser follows their framing. No HTTP client, no
 * ServerResponse per request: this is the fast path of the front door.
 *
 * One request at a time is with the app: the next is forwarded once the final answer to the
 * last has ended, so every byte from the app belongs to the request in flight, a response
 * head always starts where the last response ended, and heads are rewritten whole (cookies
 * kept to the workspace host) however the app's bytes are cut. Informational answers (1xx)
 * pass through and the request goes on; the app connection goes back to the pool only at a
 * message boundary with nothing owed either way.
 *
 * Whatever it does not handle (upgrades, login pages, another host) goes to node's HTTP
 * server when it is the connection's first request; later, the connection is closed after
 * the responses in flight, and the client retries on a new one.
 */
export class SplicedConnection {
  readonly #options: SplicedConnectionOptions;
  readonly #socket: Socket;
  readonly #requests: HttpMessageParser;
  #responses: HttpMessageParser | undefined;
  /** Raw bytes read before the first decision, for a hand-off to node's HTTP server. */
  #consumed: Buffer[] = [];
  readonly #events: ParsedEvent[] = [];
  readonly #pending: PendingResponse[] = [];
  /** The latest request's Accept, Host and method: an error answer is a page for browsers. */
  #errorRequest: ErrorRequest | undefined;
  /** Events of the response parser for the chunk being passed on. */
  readonly #responseEvents: ResponseEvent[] = [];
  #responseStage = ResponseStage.Head;
  /** The response message being parsed is an informational (1xx) one. */
  #interim = false;
  /** Bytes of a response head not yet whole, held back from the client. */
  #heldHead: Buffer[] = [];
  /** Resolves when the app has answered every forwarded request (or the connection ends). */
  #whenAnswered: (() => void) | undefined;
  #upstream: Duplex | undefined;
  #target: ProxyTarget | undefined;
  /** The head of a bodiless first request sent on a pooled upstream: sent again on a fresh dial if that one turns out closed. */
  #retryHead: Buffer | undefined;
  /** Every response so far left the app connection open (keep-alive): it may serve another client. */
  #reusable = true;
  #first = true;
  #processing = false;
  #chunkedBody = false;
  #forwardingBody = false;
  /** The request parser refused what the client sent: nothing more is read. */
  #unreadable = false;
  /** Set when no further request may be forwarded: close once the pending responses are done. */
  #closing: WarrenError | "close" | undefined;
  #upgraded = false;
  #done = false;
  /** Final status of the response being passed on (for metrics). */
  #lastStatusCode = 0;
  #responseTimer: NodeJS.Timeout | undefined;
  /** Runs while a request head is being received (the first from the connection's start). */
  #headTimer: NodeJS.Timeout | undefined;

  constructor(options: SplicedConnectionOptions) {
    this.#options = options;
    const socket = options.socket;
    this.#socket = socket;
    this.#requests = new HttpMessageParser("request", {
      onMessageBegin: () => {
        if (!this.#headTimer && !this.#unreadable) this.#armHeadTimer();
      },
      onHead: (head) => {
        clearTimeout(this.#headTimer);
        this.#headTimer = undefined;
        if (this.#unreadable) return true;
        if (requestHeadBytes(head.method, head.url, head.rawHeaders) > MAX_HEAD_BYTES) {
          this.#refuseRest(new HeadTooLargeError());
          return true;
        }
        this.#events.push({ kind: "head", head });
        return false;
      },
      // Node hands each body piece over as a fresh copy already (Buffer::Copy): no second one.
      onBody: (chunk) => {
        if (!this.#unreadable) this.#events.push({ kind: "body", chunk });
      },
      onComplete: () => {
        if (!this.#unreadable) this.#events.push({ kind: "complete" });
      },
    });
    this.#armHeadTimer();
    socket.setTimeout(options.idleTimeoutMs, () => {
      if (this.#pending.length === 0 && !this.#upgraded) this.#finish();
    });
    socket.on("data", this.#onClientData);
    socket.on("end", this.#onClientEnd);
    socket.on("error", () => this.#destroy());
    socket.on("close", () => this.#destroy());
  }

  /** Requests forwarded whose responses have not ended yet. */
  get inFlight(): number {
    return this.#pending.length;
  }

  /** Stops taking requests: closes now when idle, else after the responses in flight. Never blocks. */
  closeWhenIdle(): void {
    if (this.#done) return;
    this.#closing ??= "close";
    if (this.#pending.length === 0 && !this.#processing && !this.#upgraded) this.#finish();
  }

  /**
   * The agent or peer server session under this connection's app connection takes no new work
   * (its server drains, the agent moves): the request in flight finishes there, and the next
   * one is dialed afresh, to the agent's new connection. The client connection stays open.
   */
  moveOffSession(session: Http2Session): void {
    if (this.#done || this.#upgraded) return;
    if ((this.#upstream as TunnelSocket | undefined)?.http2Stream?.session !== session) return;
    this.#moveIfIdle();
  }

  /** Closes at once. */
  destroy(): void {
    this.#destroy();
  }

  /** A head that takes longer than the deadline closes the connection (slowloris). */
  #armHeadTimer(): void {
    clearTimeout(this.#headTimer);
    this.#headTimer = setTimeout(() => {
      this.#headTimer = undefined;
      if (this.#pending.length > 0 || this.#processing) this.#destroy();
      else this.#fail(new RequestTimeoutError(this.#options.headTimeoutMs), "request head timeout");
    }, this.#options.headTimeoutMs);
    this.#headTimer.unref();
  }

  /** No more requests are read: the ones parsed before are answered, then this error. */
  #refuseRest(error: WarrenError): void {
    this.#unreadable = true;
    this.#events.push({ kind: "error", error });
  }

  readonly #onClientData = (chunk: Buffer): void => {
    if (this.#done || this.#unreadable) return;
    if (this.#upgraded) {
      if (this.#upstream && !this.#upstream.write(chunk)) this.#socket.pause();
      return;
    }
    if (this.#first) this.#consumed.push(chunk);
    try {
      this.#requests.execute(chunk);
    } catch (err) {
      clearTimeout(this.#headTimer);
      this.#refuseRest(WarrenError.from(err, ErrorCode.InvalidArgument));
    }
    if (this.#events.length > 0) {
      // One chunk's requests at a time: the socket waits while they are checked and forwarded.
      this.#socket.pause();
      void this.#process();
    }
  };

  readonly #onClientEnd = (): void => {
    if (this.#done) return;
    // The client finished sending: end the upstream too once what it sent has gone out.
    this.#closing ??= "close";
    if (this.#pending.length === 0 && this.#events.length === 0 && !this.#processing) this.#finish();
  };

  /** Handles parsed events in order; only one run at a time. */
  async #process(): Promise<void> {
    if (this.#processing) return;
    this.#processing = true;
    try {
      while (this.#events.length > 0 && !this.#done) {
        const event = this.#events[0]!;
        if ((event.kind === "head" || event.kind === "error") && this.#pending.length > 0) {
          // The app answers one request at a time: the next waits for the last's final answer.
          await new Promise<void>((resolve) => (this.#whenAnswered = resolve));
          continue;
        }
        this.#events.shift();
        if (event.kind === "head") {
          if (!(await this.#onHead(event.head))) return;
        } else if (event.kind === "error") {
          if (this.#first) this.#first = false;
          this.#refuse(event.error);
          return;
        } else if (event.kind === "body") {
          if (this.#forwardingBody) await this.#write(this.#chunkedBody ? chunked(event.chunk) : [event.chunk]);
        } else if (this.#forwardingBody) {
          if (this.#chunkedBody) await this.#write([Buffer.from("0\r\n\r\n")]);
          this.#forwardingBody = false;
        }
      }
    } finally {
      this.#processing = false;
    }
    // A closing connection takes no new request, but the body of the last one still comes in.
    if (!this.#done && !this.#unreadable && (this.#closing === undefined || this.#forwardingBody)) this.#socket.resume();
    else if (this.#closing !== undefined && this.#pending.length === 0) this.#finish();
  }

  /**
   * Takes no more requests: answers `error` (or just closes) after the responses in flight;
   * nothing is answered after a response that closes the connection.
   */
  #refuse(error: WarrenError | "close"): void {
    this.#closing ??= error;
    this.#forwardingBody = false;
    this.#events.length = 0;
    if (this.#pending.length === 0) this.#finish();
  }

  /** Returns false when the connection left the fast path (handed off or closing). */
  async #onHead(head: MessageHead): Promise<boolean> {
    const first = this.#first;
    const req = requestOf(head, this.#socket);
    this.#errorRequest = { accept: req.headers.accept, host: req.headers.host, method: req.method };
    const decision = this.#closing === undefined ? await this.#options.decide(req, first) : ({ kind: "slow" } as const);
    if (this.#done) return false;
    if (first) {
      this.#first = false;
      if (decision.kind === "slow") {
        this.#handOff();
        return false;
      }
    }
    if (decision.kind === "forward" && (!this.#target || sameTarget(this.#target, decision.target))) {
      // An app connection whose session stopped taking work carries no new request.
      if (this.#upstream && this.#pending.length === 0) this.#moveIfIdle();
      const requestHead = this.#begin(req, head);
      const pooled = this.#upstream ? undefined : this.#options.upstreams?.take(decision.target);
      if (pooled) {
        this.#attach(decision.target, pooled);
        this.#retryHead = hasBody(req) ? undefined : requestHead;
        await this.#write([requestHead]);
      } else if (!this.#upstream) {
        try {
          // The first head travels with the dial: no round trip to the agent in between.
          await this.#connect(decision.target, requestHead);
        } catch (err) {
          this.#fail(WarrenError.from(err), "dial failed");
          return false;
        }
      } else {
        // Only the first request on a pooled connection may go again: not this one.
        this.#retryHead = undefined;
        await this.#write([requestHead]);
      }
      this.#consumed = [];
      if (this.#pending.length === 1) this.#armResponseTimer();
      return true;
    }
    // Not forwardable here: answer an error after the responses in flight, or close and let
    // the client retry on a new connection (which node's HTTP server will take).
    this.#refuse(decision.kind === "error" ? decision.error : "close");
    return false;
  }

  async #connect(target: ProxyTarget, requestHead: Buffer): Promise<void> {
    const upstream = await this.#options.dial(target, [requestHead]);
    if (this.#done) {
      upstream.destroy();
      return;
    }
    this.#attach(target, upstream);
  }

  #attach(target: ProxyTarget, upstream: Duplex): void {
    this.#target = target;
    this.#upstream = upstream;
    this.#responses?.close();
    this.#responseStage = ResponseStage.Head;
    this.#heldHead = [];
    this.#interim = false;
    this.#responses = new HttpMessageParser("response", {
      onHead: (response) => this.#onResponseHead(response),
      onComplete: () => {
        this.#responseEvents.push({ kind: "complete", interim: this.#interim });
        this.#interim = false;
      },
    });
    upstream.on("data", this.#onUpstreamData);
    upstream.on("end", this.#onUpstreamEnd);
    upstream.on("error", this.#onUpstreamError);
    upstream.on("close", this.#onUpstreamClose);
    upstream.on("drain", this.#onUpstreamDrain);
    this.#socket.on("drain", this.#onClientDrain);
  }

  /** Takes this connection's listeners off its upstream (before it goes back to the pool). */
  #detachUpstream(upstream: Duplex): void {
    upstream.off("data", this.#onUpstreamData);
    upstream.off("end", this.#onUpstreamEnd);
    upstream.off("error", this.#onUpstreamError);
    upstream.off("close", this.#onUpstreamClose);
    upstream.off("drain", this.#onUpstreamDrain);
    this.#socket.off("drain", this.#onClientDrain);
  }

  readonly #onUpstreamError = (err: Error): void => this.#onUpstreamGone(err);
  readonly #onUpstreamClose = (): void => this.#onUpstreamGone();
  readonly #onUpstreamDrain = (): void => {
    if (this.#upgraded) this.#socket.resume();
  };
  readonly #onClientDrain = (): void => {
    this.#upstream?.resume();
  };

  /** The rewritten head of a request about to be forwarded; its response is now awaited. */
  #begin(req: SplicedRequest, head: MessageHead): Buffer {
    const forwarded: ForwardedInfo = { clientIp: clientIp(this.#socket), proto: this.#options.proto, host: req.headers.host ?? "" };
    const headers = requestHeadersForUpstream(req as unknown as IncomingMessage, forwarded, { filterCookie: this.#options.filterCookie });
    this.#chunkedBody = /\bchunked\b/i.test(String(req.headers["transfer-encoding"] ?? ""));
    if (this.#chunkedBody) headers.push("Transfer-Encoding", "chunked");
    // Without a pool the client connection and the tunnel are one: a client that closes after
    // this request closes the app's connection too, and the app's answer then says so. With
    // one, the app connection stays open for the next client.
    if (!head.shouldKeepAlive && !this.#options.upstreams) headers.push("Connection", "close");
    let text = `${req.method} ${req.url} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    text += "\r\n";
    this.#forwardingBody = true;
    const close = !head.shouldKeepAlive;
    this.#pending.push({ method: req.method, startedAt: process.hrtime.bigint(), close, started: false });
    this.#responseStage = ResponseStage.Head;
    if (close) this.#closing = "close";
    return Buffer.from(text, "latin1");
  }

  /** Writes to the upstream, waiting for it to drain when it asks to. */
  #write(parts: Buffer[]): Promise<void> {
    const upstream = this.#upstream;
    if (!upstream || upstream.destroyed) return Promise.resolve();
    let ok = true;
    for (const part of parts) ok = upstream.write(part);
    if (ok) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        upstream.off("drain", done);
        upstream.off("close", done);
        resolve();
      };
      upstream.on("drain", done);
      upstream.on("close", done);
    });
  }

  readonly #onUpstreamData = (chunk: Buffer): void => {
    // The app answered on this connection: it was alive, nothing to send again.
    this.#retryHead = undefined;
    if (this.#upgraded) {
      if (!this.#socket.write(chunk)) this.#upstream?.pause();
      return;
    }
    const current = this.#pending[0];
    if (!current) {
      // Bytes nobody asked for: the app broke HTTP. Nothing sane can follow.
      this.#brokenResponse("unsolicited bytes from the workspace");
      return;
    }
    // Parsed first (the parser says where heads are and what they mean), then passed on, then
    // acted on: the end of a response may close the client connection.
    try {
      this.#responses!.execute(chunk);
    } catch (err) {
      this.#responseEvents.length = 0;
      this.#brokenResponse(`malformed response from the workspace: ${(err as Error).message}`);
      return;
    }
    const out = this.#passOn(chunk, current);
    if (!out) return;
    if (out.length > 0) {
      current.started = true;
      let ok = true;
      for (const part of out) ok = this.#socket.write(part);
      if (!ok) this.#upstream?.pause();
    }
    this.#afterResponseEvents();
  };

  /**
   * What of a chunk from the app goes to the client: heads once whole, rewritten; body bytes
   * as they are. Undefined when the chunk does not frame as the parser read it (closed).
   */
  #passOn(chunk: Buffer, current: PendingResponse): Buffer[] | undefined {
    const heads = this.#responseEvents.filter((e): e is Extract<ResponseEvent, { kind: "head" }> => e.kind === "head");
    const out: Buffer[] = [];
    let rest = chunk;
    let seen = 0;
    while (rest.length > 0) {
      if (this.#responseStage === ResponseStage.Body || this.#upgraded) {
        out.push(rest);
        break;
      }
      // A head: whole only at its empty line, which may come chunks later.
      let end: number;
      if (this.#heldHead.length === 0) {
        end = rest.indexOf("\r\n\r\n");
      } else {
        const prior = this.#heldHead.reduce((n, b) => n + b.length, 0);
        rest = Buffer.concat([...this.#heldHead, rest]);
        this.#heldHead = [];
        end = rest.indexOf("\r\n\r\n", Math.max(0, prior - 3));
      }
      if (end < 0) {
        this.#heldHead.push(rest);
        break;
      }
      const head = heads[seen++];
      if (!head) break;
      const headBytes = rest.subarray(0, end + 4);
      rest = rest.subarray(end + 4);
      const status = head.head.statusCode;
      const final = status >= 200 || status === 101;
      const close = final && current.close && this.#options.upstreams !== undefined;
      out.push(responseHeadNeedsRewrite(head.head.rawHeaders, close) ? responseHeadForClient(headBytes, close) : headBytes);
      if (final) this.#responseStage = ResponseStage.Body;
    }
    if (seen !== heads.length || (this.#heldHead.length > 0) !== this.#responses!.inHead) {
      this.#responseEvents.length = 0;
      this.#brokenResponse("a response from the workspace frames differently than its parser read it");
      return undefined;
    }
    return out;
  }

  #onResponseHead(response: MessageHead): boolean {
    const current = this.#pending[0];
    clearTimeout(this.#responseTimer);
    this.#responseEvents.push({ kind: "head", head: response });
    if (response.statusCode === 101 || (response.upgrade && response.statusCode < 200)) {
      // The rest of the connection belongs to the upgraded protocol, both ways.
      this.#upgraded = true;
      return false;
    }
    if (response.statusCode >= 100 && response.statusCode < 200) {
      this.#interim = true;
      return false;
    }
    this.#lastStatusCode = response.statusCode;
    const skipBody = current?.method === "HEAD";
    // llhttp decides keep-alive before it learns the body is skipped: an answer to HEAD
    // without a length would read as "until the connection closes". It is not.
    const keepAlive = response.shouldKeepAlive || (skipBody && keepsAliveWithoutBody(response));
    if (!keepAlive) this.#reusable = false;
    if (current && (!keepAlive || current.close)) this.#closing ??= "close";
    return skipBody;
  }

  /** Acts on the ends of responses the parser saw, once their bytes are out. */
  #afterResponseEvents(): void {
    const events = this.#responseEvents.splice(0);
    for (const event of events) {
      if (event.kind !== "complete" || this.#done || this.#upgraded) continue;
      const current = this.#pending[0];
      if (!current) continue;
      // An informational answer is a message of its own: only a final status ends the request.
      if (event.interim) continue;
      this.#pending.shift();
      this.#responseStage = ResponseStage.Head;
      this.#options.onResponse?.(this.#lastStatusCode, current.startedAt);
      if (this.#closing === undefined) this.#moveIfIdle();
      this.#answered();
      if (this.#closing !== undefined && this.#events.length === 0 && !this.#processing) this.#finish();
    }
  }

  /**
   * At a response boundary, lets go of an app connection whose agent or peer session takes no
   * new work: a clean end (the app sees a FIN), and the next request dials anew.
   */
  #moveIfIdle(): void {
    const upstream = this.#upstream;
    if (!upstream || !this.#upstreamReusable() || this.#closing !== undefined) return;
    if (this.#options.upstreams?.usable(upstream) ?? true) return;
    this.#detachUpstream(upstream);
    this.#responses?.close();
    this.#responses = undefined;
    this.#upstream = undefined;
    this.#retryHead = undefined;
    upstream.on("error", () => {});
    upstream.end();
    // The app normally closes its side at once; a stream left half-open would hold the drain.
    setTimeout(() => {
      if (!upstream.destroyed) upstream.destroy();
    }, 5000).unref();
    this.#options.log.debug({ workspace: this.#target?.workspace, port: this.#target?.port }, "app connection's session is draining: the next request dials anew");
  }

  /** Lets the next request go to the app. */
  #answered(): void {
    const resolve = this.#whenAnswered;
    this.#whenAnswered = undefined;
    resolve?.();
  }

  #brokenResponse(why: string): void {
    this.#options.log.warn(`${why}; closing the connection`);
    this.#destroy();
  }

  readonly #onUpstreamEnd = (): void => {
    try {
      this.#responses?.finish();
    } catch {
      // Cut short: handled below as a lost upstream.
    }
    this.#afterResponseEvents();
    this.#onUpstreamGone();
  };

  /** The tunnel closed or failed: answer what can still be answered, then close. */
  #onUpstreamGone(err?: Error): void {
    if (this.#done) return;
    if (this.#upgraded) {
      this.#socket.end();
      return;
    }
    const current = this.#pending[0];
    if (current && !current.started && this.#retryHead && this.#pending.length === 1 && this.#events.length === 0 && !this.#processing) {
      // A pooled app connection that the app closed as we sent the request: nothing of it was
      // processed, so it goes again, once, on a fresh one.
      void this.#retryOnFreshUpstream(this.#retryHead);
      return;
    }
    if (current && !current.started) {
      const target = this.#target!;
      this.#fail(
        new WarrenError(ErrorCode.BadGateway, `connection to port ${target.port} of workspace "${target.workspace}" failed${err ? `: ${err.message}` : ""}`),
        "upstream gone",
      );
      return;
    }
    if (current) {
      this.#destroy();
      return;
    }
    // Idle keep-alive connection closed by the app: close ours too; the client reconnects.
    this.#finish();
  }

  async #retryOnFreshUpstream(requestHead: Buffer): Promise<void> {
    const target = this.#target!;
    const stale = this.#upstream!;
    this.#detachUpstream(stale);
    stale.destroy();
    this.#upstream = undefined;
    this.#retryHead = undefined;
    this.#socket.pause();
    try {
      await this.#connect(target, requestHead);
    } catch (err) {
      this.#fail(WarrenError.from(err), "dial failed");
      return;
    }
    if (!this.#done && this.#closing === undefined) this.#socket.resume();
  }

  #armResponseTimer(): void {
    clearTimeout(this.#responseTimer);
    const target = this.#target;
    this.#responseTimer = setTimeout(() => {
      const current = this.#pending[0];
      if (!current || current.started || !target) return;
      this.#fail(
        new WarrenError(ErrorCode.DeadlineExceeded, `port ${target.port} of workspace "${target.workspace}" did not respond within ${this.#options.upstreamTimeoutMs} ms`),
        "upstream timeout",
      );
    }, this.#options.upstreamTimeoutMs);
    this.#responseTimer.unref();
  }

  #handOff(): void {
    const socket = this.#socket;
    this.#detach();
    this.#done = true;
    this.#requests.close();
    const consumed = Buffer.concat(this.#consumed);
    this.#consumed = [];
    this.#options.handOff(socket, consumed);
  }

  /**
   * Answers the error (when nothing of a response is out yet), then closes; what the client
   * still sends is read and dropped until it leaves (see sendUpgradeError), so that a client
   * stopped mid-upload is never left paused with its socket open.
   */
  #fail(error: WarrenError, why: string): void {
    if (this.#done) return;
    this.#options.log.debug({ err: error.message, why }, "spliced connection failed");
    const canAnswer = !this.#pending.some((p) => p.started) && !this.#upgraded;
    if (canAnswer && this.#pending.length > 0) this.#options.onResponse?.(httpStatusOf(error.code), this.#pending[0]!.startedAt);
    if (canAnswer) {
      this.#done = true;
      this.#cleanUp();
      this.#pending.length = 0;
      sendUpgradeError(this.#socket, error, this.#errorRequest);
      return;
    }
    this.#destroy();
  }

  /** Ends the connection politely: an error answer if one is due, else a plain close. */
  #finish(): void {
    if (this.#done) return;
    const closing = this.#closing;
    if (closing instanceof WarrenError) {
      this.#fail(closing, "refused");
      return;
    }
    this.#done = true;
    this.#cleanUp();
    endAndDrain(this.#socket);
  }

  #destroy(): void {
    if (this.#done && this.#socket.destroyed) return;
    this.#done = true;
    this.#cleanUp();
    this.#socket.destroy();
  }

  #detach(): void {
    const socket = this.#socket;
    socket.off("data", this.#onClientData);
    socket.off("end", this.#onClientEnd);
    socket.removeAllListeners("error");
    socket.removeAllListeners("close");
    clearTimeout(this.#headTimer);
  }

  /** Whether the app connection sits at a message boundary with nothing owed either way. */
  #upstreamReusable(): boolean {
    return (
      this.#pending.length === 0 &&
      this.#reusable &&
      !this.#upgraded &&
      !this.#forwardingBody &&
      this.#responseStage === ResponseStage.Head &&
      this.#heldHead.length === 0 &&
      !this.#responses?.inMessage
    );
  }

  #cleanUp(): void {
    clearTimeout(this.#responseTimer);
    clearTimeout(this.#headTimer);
    this.#answered();
    this.#requests.close();
    const reusable = this.#upstreamReusable();
    this.#responses?.close();
    const upstream = this.#upstream;
    if (upstream && !upstream.destroyed) {
      const pool = this.#options.upstreams;
      if (pool && reusable) {
        // At a response boundary with the app connection open: the next client may use it.
        this.#detachUpstream(upstream);
        pool.give(this.#target!, upstream);
      } else if (this.#pending.length === 0 && !this.#forwardingBody) {
        // A clean end when no response is due, so the app sees a FIN rather than a reset.
        upstream.end();
      } else upstream.destroy();
    }
    this.#options.onClose?.();
  }
}

function requestOf(head: MessageHead, socket: Socket): SplicedRequest {
  return {
    method: head.method,
    url: head.url,
    httpVersion: `${head.versionMajor}.${head.versionMinor}`,
    rawHeaders: head.rawHeaders,
    headers: headersOf(head.rawHeaders),
    socket,
    keepAlive: head.shouldKeepAlive,
  };
}

/** Lower-cased headers, repeated ones joined as node:http joins them. */
export function headersOf(raw: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const prior = out[name];
    if (prior === undefined) out[name] = name === "set-cookie" ? [value] : value;
    else if (Array.isArray(prior)) prior.push(value);
    else out[name] = `${prior}${name === "cookie" ? "; " : ", "}${value}`;
  }
  return out as IncomingHttpHeaders;
}

/** Keep-alive as an answer with no body at all says it (its Connection header and version). */
function keepsAliveWithoutBody(response: MessageHead): boolean {
  let close = response.versionMajor === 1 && response.versionMinor === 0;
  for (let i = 0; i < response.rawHeaders.length; i += 2) {
    if (response.rawHeaders[i]!.toLowerCase() !== "connection") continue;
    const tokens = response.rawHeaders[i + 1]!.toLowerCase().split(",").map((t) => t.trim());
    if (tokens.includes("close")) return false;
    if (tokens.includes("keep-alive")) close = false;
  }
  return !close;
}

/** Whether a request carries a body (framed by Content-Length or chunked). */
function hasBody(req: SplicedRequest): boolean {
  if (req.headers["transfer-encoding"] !== undefined) return true;
  const length = req.headers["content-length"];
  return length !== undefined && length !== "0";
}

function chunked(chunk: Buffer): Buffer[] {
  if (chunk.length === 0) return [];
  return [Buffer.from(`${chunk.length.toString(16)}\r\n`, "latin1"), chunk, Buffer.from("\r\n")];
}

function sameTarget(a: ProxyTarget, b: ProxyTarget): boolean {
  return a.workspaceId === b.workspaceId && a.port === b.port;
}

function clientIp(socket: Socket): string {
  const ip = socket.remoteAddress ?? "";
  return ip.startsWith("::ffff:") ? ip.slice(7) : ip;
}

import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import type { Http2Session } from "node:http2";
import type { Socket } from "node:net";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { systemClock, type Clock, type Timer } from "../../shared/clock.js";
import { httpStatusOf } from "../../shared/http-status.js";
import { endAndDrain, sendUpgradeError, type ErrorRequest } from "../web/error-response.js";
import { AppConnection, BodyMode, type AppConnectionDeps, type Exchange, type ResponseSink } from "./app-connection.js";
import { HeadTooLargeError, HttpMessageParser, MAX_HEAD_BYTES, RequestTimeoutError, requestHeadBytes, type MessageHead } from "./http-message-parser.js";
import { sameTarget, type ProxyTarget } from "./proxy-target.js";
import { chunkFrame, hasRequestBody, headersOf, isChunked, LAST_CHUNK, mayRetry, responseHeadForClient, responseHeadNeedsRewrite, upstreamRequestHead, type ForwardedInfo } from "./wire.js";

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
  /** Forward it over the connection's app connection (the first request: open one to this target). */
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
  /** Dial, pool and upstream timeout of the workspace proxy (mode is raw here). */
  readonly upstreams: Omit<AppConnectionDeps, "mode">;
  /** Gives the connection, with every byte read so far, to node's HTTP server. */
  readonly handOff: (socket: Socket, consumed: Buffer) => void;
  readonly filterCookie?: ((cookie: string) => string | undefined) | undefined;
  /**
   * How long a client may take to send a request head: the first from when it connects,
   * every later one from its first byte.
   */
  readonly headTimeoutMs: number;
  /** An idle connection (no request in flight) is closed after this long. */
  readonly idleTimeoutMs: number;
  /** Observes each finished response (metrics). */
  readonly onResponse?: ((status: number, startedAt: bigint) => void) | undefined;
  readonly onClose?: () => void;
  readonly log: Logger;
}

type ParsedEvent =
  | { readonly kind: "head"; readonly head: MessageHead }
  | { readonly kind: "body"; readonly chunk: Buffer }
  | { readonly kind: "complete" }
  /** What followed could not be parsed: answered after the responses before it. */
  | { readonly kind: "error"; readonly error: WarrenError };

/** The request whose answer is awaited (one at a time is with the app). */
interface InFlight {
  readonly startedAt: bigint;
  /** The client asked to close after this answer. */
  readonly close: boolean;
}

/** Where a spliced connection stands. */
export enum SplicedState {
  /** Reading requests and forwarding them. */
  Open = "open",
  /** Takes no new request: closes once the answer in flight is out (then with `#closing`'s error, if any). */
  Closing = "closing",
  /** Given to node's HTTP server with what was read. */
  HandedOff = "handed-off",
  /** Closed (ended, answered an error, or cut). */
  Closed = "closed",
}

const TRANSITIONS: Record<SplicedState, readonly SplicedState[]> = {
  [SplicedState.Open]: [SplicedState.Closing, SplicedState.HandedOff, SplicedState.Closed],
  [SplicedState.Closing]: [SplicedState.Closed],
  [SplicedState.HandedOff]: [],
  [SplicedState.Closed]: [],
};

export function mayTransition(from: SplicedState, to: SplicedState): boolean {
  return TRANSITIONS[from].includes(to);
}

/**
 * One client connection to a workspace host, spliced onto one app connection: the client
 * side of the workspace proxy for HTTP/1.1 connections. Requests are parsed (node's llhttp),
 * checked one by one and forwarded with their heads rewritten (Warren's credentials out,
 * X-Forwarded-* in, hop-by-hop headers dropped); the answers pass back byte for byte through
 * AppConnection, which follows their framing. No HTTP client, no ServerResponse per request.
 *
 * One request at a time is with the app: the next is forwarded once the final answer to the
 * last has ended, so every byte from the app belongs to the request in flight. When the app
 * closes its kept connection between requests, the client's stays open and the next request
 * opens another.
 *
 * Whatever it does not handle (upgrades, login pages, another host) goes to node's HTTP
 * server when it is the connection's first request; later, the connection is closed after
 * the answer in flight, and the client retries on a new one.
 */
export class SplicedConnection {
  readonly #options: SplicedConnectionOptions;
  readonly #socket: Socket;
  readonly #requests: HttpMessageParser;
  readonly #upstreams: AppConnectionDeps;
  #state = SplicedState.Open;
  /** Raw bytes read before the first decision, for a hand-off to node's HTTP server. */
  #consumed: Buffer[] = [];
  readonly #events: ParsedEvent[] = [];
  #inFlight: InFlight | undefined;
  /** The latest request's Accept, Host and method: an error answer is a page for browsers. */
  #errorRequest: ErrorRequest | undefined;
  /** Resolves when the app has answered the request in flight (or the connection ends). */
  #whenAnswered: (() => void) | undefined;
  #app: AppConnection | undefined;
  #target: ProxyTarget | undefined;
  #first = true;
  #processing = false;
  #chunkedBody = false;
  #forwardingBody = false;
  /** The request parser refused what the client sent: nothing more is read. */
  #unreadable = false;
  /** Set when no further request may be forwarded: close once the answer in flight is done. */
  #closing: WarrenError | "close" | undefined;
  #headTimer: Timer | undefined;
  readonly #clock: Clock;

  constructor(options: SplicedConnectionOptions) {
    this.#options = options;
    this.#upstreams = { ...options.upstreams, mode: BodyMode.Raw };
    this.#clock = options.upstreams.clock ?? systemClock;
    const socket = options.socket;
    this.#socket = socket;
    this.#requests = new HttpMessageParser("request", {
      onMessageBegin: () => {
        if (!this.#headTimer && !this.#unreadable) this.#armHeadTimer();
      },
      onHead: (head) => {
        this.#clock.clearTimer(this.#headTimer);
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
      if (!this.#inFlight) this.#finish();
    });
    socket.on("data", this.#onClientData);
    socket.on("end", this.#onClientEnd);
    socket.on("drain", this.#onClientDrain);
    socket.on("error", () => this.#destroy());
    socket.on("close", () => this.#destroy());
  }

  get state(): SplicedState {
    return this.#state;
  }

  /** Requests forwarded whose answers have not ended yet. */
  get inFlight(): number {
    return this.#inFlight ? 1 : 0;
  }

  /** Stops taking requests: closes now when idle, else after the answer in flight. Never blocks. */
  closeWhenIdle(): void {
    if (this.#done) return;
    this.#stopTaking("close");
    if (!this.#inFlight && !this.#processing) this.#finish();
  }

  /**
   * The agent or peer server session under this connection's app connection takes no new work
   * (its server drains, the agent moves): the request in flight finishes there, and the next
   * one is dialed afresh, to the agent's new connection. The client connection stays open.
   */
  moveOffSession(session: Http2Session): void {
    if (this.#done || this.#app?.session !== session) return;
    this.#moveIfIdle();
  }

  /** Closes at once. */
  destroy(): void {
    this.#destroy();
  }

  get #done(): boolean {
    return this.#state === SplicedState.Closed || this.#state === SplicedState.HandedOff;
  }

  #transition(to: SplicedState, why: string): void {
    const from = this.#state;
    if (from === to) return;
    if (!mayTransition(from, to)) throw new Error(`spliced connection: no transition from ${from} to ${to} (${why})`);
    this.#state = to;
    this.#options.log.debug({ from, to, why }, "spliced connection state");
  }

  /** No request after the one in flight: close after it (with this error answer, if one). */
  #stopTaking(why: WarrenError | "close"): void {
    this.#closing ??= why;
    if (this.#state === SplicedState.Open) this.#transition(SplicedState.Closing, why === "close" ? "close" : why.message);
  }

  /** A head that takes longer than the deadline closes the connection (slowloris). */
  #armHeadTimer(): void {
    this.#clock.clearTimer(this.#headTimer);
    this.#headTimer = this.#clock.setTimeout(() => {
      this.#headTimer = undefined;
      if (this.#inFlight || this.#processing) this.#destroy();
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
    if (this.#first) this.#consumed.push(chunk);
    try {
      this.#requests.execute(chunk);
    } catch (err) {
      this.#clock.clearTimer(this.#headTimer);
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
    // The client finished sending: end the app connection too once what it sent has gone out.
    this.#stopTaking("close");
    if (!this.#inFlight && this.#events.length === 0 && !this.#processing) this.#finish();
  };

  readonly #onClientDrain = (): void => {
    this.#app?.resume();
  };

  /** Handles parsed events in order; only one run at a time. */
  async #process(): Promise<void> {
    if (this.#processing) return;
    this.#processing = true;
    try {
      while (this.#events.length > 0 && !this.#done) {
        const event = this.#events[0]!;
        if ((event.kind === "head" || event.kind === "error") && this.#inFlight) {
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
          if (this.#forwardingBody) await this.#app?.write(this.#chunkedBody ? chunkFrame(event.chunk) : [event.chunk]);
        } else if (this.#forwardingBody) {
          if (this.#chunkedBody) await this.#app?.write([LAST_CHUNK]);
          this.#forwardingBody = false;
          this.#app?.endRequest();
        }
      }
    } finally {
      this.#processing = false;
    }
    // A closing connection takes no new request, but the body of the last one still comes in.
    if (!this.#done && !this.#unreadable && (this.#closing === undefined || this.#forwardingBody)) this.#socket.resume();
    else if (this.#closing !== undefined && !this.#inFlight) this.#finish();
  }

  /**
   * Takes no more requests: answers `error` (or just closes) after the answer in flight;
   * nothing is answered after an answer that closes the connection.
   */
  #refuse(error: WarrenError | "close"): void {
    this.#stopTaking(error);
    this.#forwardingBody = false;
    this.#events.length = 0;
    if (!this.#inFlight) this.#finish();
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
    if (decision.kind !== "forward" || (this.#target && !sameTarget(this.#target, decision.target))) {
      // Not forwardable here: answer an error after the answer in flight, or close and let
      // the client retry on a new connection (which node's HTTP server will take).
      this.#refuse(decision.kind === "error" ? decision.error : "close");
      return false;
    }
    const target = decision.target;
    this.#target = target;
    // An app connection whose session stopped taking work, or that the app closed, carries no new request.
    this.#moveIfIdle();
    if (this.#app && !this.#app.reusable) {
      this.#app.release();
      this.#app = undefined;
    }
    const hasBody = hasRequestBody(req.headers);
    this.#chunkedBody = isChunked(req.headers);
    const forwarded: ForwardedInfo = { clientIp: clientIp(this.#socket), proto: this.#options.proto, host: req.headers.host ?? "" };
    // Without a pool the client connection and the app's are one: a client that closes after
    // this request closes the app's connection too, and the app's answer then says so. With
    // one, the app connection stays open for the next client.
    const requestHead = upstreamRequestHead(req as unknown as IncomingMessage, forwarded, {
      filterCookie: this.#options.filterCookie,
      chunked: this.#chunkedBody,
      close: !head.shouldKeepAlive && !this.#upstreams.pool,
    });
    const close = !head.shouldKeepAlive;
    this.#forwardingBody = true;
    this.#inFlight = { startedAt: process.hrtime.bigint(), close };
    if (close) this.#stopTaking("close");
    const exchange: Exchange = { method: req.method, retryable: mayRetry(req.method, hasBody), sink: this.#sink };
    if (this.#app) {
      await this.#app.send(requestHead, exchange, hasBody);
    } else {
      try {
        this.#app = await AppConnection.open(this.#upstreams, target, requestHead, exchange, hasBody);
      } catch (err) {
        this.#fail(WarrenError.from(err), "dial failed");
        return false;
      }
      if (this.#done) {
        this.#app.destroy();
        return false;
      }
    }
    this.#consumed = [];
    return true;
  }

  /** Where the app's answers go: the client socket, byte for byte but for rewritten heads. */
  readonly #sink: ResponseSink = {
    interim: (_head, raw) => this.#socket.write(raw),
    head: (head, raw, appKeepsAlive) => {
      const current = this.#inFlight;
      if (current && (!appKeepsAlive || current.close)) this.#stopTaking("close");
      // With a pool the app connection outlives a client that asked to close: its answer says
      // keep-alive, and the client must read close.
      const close = (current?.close ?? false) && this.#upstreams.pool !== undefined;
      return this.#socket.write(responseHeadNeedsRewrite(head.rawHeaders, close) ? responseHeadForClient(raw, close) : raw);
    },
    body: (chunk) => this.#socket.write(chunk),
    end: (status) => this.#onAnswered(status),
    fail: (error, answerable) => {
      if (answerable) this.#fail(error, "app connection failed");
      else this.#destroy();
    },
  };

  #onAnswered(status: number): void {
    const current = this.#inFlight;
    this.#inFlight = undefined;
    if (current) this.#options.onResponse?.(status, current.startedAt);
    this.#moveIfIdle();
    this.#answered();
    if (this.#closing !== undefined && this.#events.length === 0 && !this.#processing) this.#finish();
  }

  /**
   * At an answer's end, lets go of an app connection whose agent or peer session takes no
   * new work: a clean end (the app sees a FIN), and the next request dials anew.
   */
  #moveIfIdle(): void {
    if (!this.#app || this.#closing !== undefined || this.#inFlight) return;
    if (!this.#app.moveOffIfDraining()) return;
    this.#app = undefined;
    this.#options.log.debug({ workspace: this.#target?.workspace, port: this.#target?.port }, "app connection's session is draining: the next request dials anew");
  }

  /** Lets the next request go to the app. */
  #answered(): void {
    const resolve = this.#whenAnswered;
    this.#whenAnswered = undefined;
    resolve?.();
  }

  #handOff(): void {
    const socket = this.#socket;
    this.#detach();
    this.#transition(SplicedState.HandedOff, "not for the fast path");
    this.#requests.close();
    const consumed = Buffer.concat(this.#consumed);
    this.#consumed = [];
    this.#options.handOff(socket, consumed);
  }

  /**
   * Answers the error (when nothing of an answer is out yet), then closes; what the client
   * still sends is read and dropped until it leaves (see sendUpgradeError), so that a client
   * stopped mid-upload is never left paused with its socket open.
   */
  #fail(error: WarrenError, why: string): void {
    if (this.#done) return;
    this.#options.log.debug({ err: error.message, why }, "spliced connection failed");
    const current = this.#inFlight;
    if (current) this.#options.onResponse?.(httpStatusOf(error.code), current.startedAt);
    this.#inFlight = undefined;
    this.#transition(SplicedState.Closed, why);
    this.#cleanUp();
    sendUpgradeError(this.#socket, error, this.#errorRequest);
  }

  /** Ends the connection politely: an error answer if one is due, else a plain close. */
  #finish(): void {
    if (this.#done) return;
    const closing = this.#closing;
    if (closing instanceof WarrenError) {
      this.#fail(closing, "refused");
      return;
    }
    this.#transition(SplicedState.Closed, "finished");
    this.#cleanUp();
    endAndDrain(this.#socket);
  }

  #destroy(): void {
    if (this.#state === SplicedState.HandedOff || (this.#done && this.#socket.destroyed)) return;
    if (!this.#done) {
      this.#transition(SplicedState.Closed, "destroyed");
      this.#cleanUp();
    }
    this.#socket.destroy();
  }

  #detach(): void {
    const socket = this.#socket;
    socket.off("data", this.#onClientData);
    socket.off("end", this.#onClientEnd);
    socket.off("drain", this.#onClientDrain);
    socket.removeAllListeners("error");
    socket.removeAllListeners("close");
    this.#clock.clearTimer(this.#headTimer);
  }

  #cleanUp(): void {
    this.#clock.clearTimer(this.#headTimer);
    this.#answered();
    this.#requests.close();
    const app = this.#app;
    this.#app = undefined;
    if (app) {
      // At an answer's end with nothing owed the app connection goes back to the pool for the next client.
      if (this.#forwardingBody && this.#inFlight) app.destroy();
      else app.release();
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

function clientIp(socket: Socket): string {
  const ip = socket.remoteAddress ?? "";
  return ip.startsWith("::ffff:") ? ip.slice(7) : ip;
}

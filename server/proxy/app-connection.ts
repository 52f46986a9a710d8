import type { Http2Session } from "node:http2";
import type { Duplex } from "node:stream";
import { WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { systemClock, type Clock, type Timer } from "../../shared/clock.js";
import type { TunnelSocket } from "../../shared/tunnel-socket.js";
import { HttpMessageParser, type MessageHead } from "./http-message-parser.js";
import { brokenResponse, upstreamFailed, upstreamTimedOut } from "./proxy-errors.js";
import type { ProxyTarget } from "./proxy-target.js";
import type { UpstreamPool } from "./upstream-pool.js";
import { keepsAliveWithoutBody } from "./wire.js";

/** How an answer's body reaches the sink. */
export enum BodyMode {
  /** Bytes as the app framed them (chunk sizes included): the spliced client side passes them on as they are. */
  Raw,
  /** Body bytes without framing: node's ServerResponse frames them again for its client. */
  Decoded,
}

/**
 * Where one request's answer goes. Each write returns false when its client asks to wait:
 * the app connection pauses until resume().
 */
export interface ResponseSink {
  /** An informational answer (1xx but 101): its parsed head and its bytes as the app sent them. */
  interim(head: MessageHead, raw: Buffer): boolean;
  /** The final answer's head; `appKeepsAlive` false: the app closes its connection after this answer. */
  head(head: MessageHead, raw: Buffer, appKeepsAlive: boolean): boolean;
  body(chunk: Buffer): boolean;
  /** The final answer ended: the app connection is at a message boundary again. */
  end(status: number): void;
  /**
   * The exchange failed: `answerable` when nothing of an answer went to the client, which may
   * then get this error; else the client connection must be cut.
   */
  fail(error: WarrenError, answerable: boolean): void;
}

/** One request as its app connection carries it. */
export interface Exchange {
  readonly method: string;
  /** It may go again on a fresh connection when a kept one closes under it (see wire.ts mayRetry). */
  readonly retryable: boolean;
  readonly sink: ResponseSink;
}

export interface AppConnectionDeps {
  /** Opens a fresh app connection, sending `earlyData` (the request's head) with the dial; rejects with a WarrenError. */
  readonly dial: (target: ProxyTarget, earlyData: readonly Buffer[]) => Promise<Duplex>;
  /** Kept-alive app connections shared by every client connection and request. */
  readonly pool?: UpstreamPool | undefined;
  /** How long the app may take to start its answer. */
  readonly timeoutMs: number;
  readonly mode: BodyMode;
  readonly log: Logger;
  readonly clock?: Clock;
}

/** Where an app connection stands. */
export enum AppConnectionState {
  /** At a message boundary: nothing owed either way; a request may be sent. */
  Idle = "idle",
  /** A request went out; no byte of its answer came back yet (the upstream timer runs). */
  Awaiting = "awaiting",
  /** Its answer is coming back. */
  Answering = "answering",
  /** Closed, given back to the pool, or failed: carries nothing more. */
  Closed = "closed",
}

const TRANSITIONS: Record<AppConnectionState, readonly AppConnectionState[]> = {
  [AppConnectionState.Idle]: [AppConnectionState.Awaiting, AppConnectionState.Closed],
  // Awaiting -> Awaiting: the request goes again on a fresh connection.
  [AppConnectionState.Awaiting]: [AppConnectionState.Awaiting, AppConnectionState.Answering, AppConnectionState.Closed],
  [AppConnectionState.Answering]: [AppConnectionState.Idle, AppConnectionState.Closed],
  [AppConnectionState.Closed]: [],
};

export function mayTransition(from: AppConnectionState, to: AppConnectionState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Where the next byte of an answer is, in raw mode. */
enum Stage {
  /** The start of a head (a 1xx or the final one): held back until whole. */
  Head,
  /** The final answer's body: passed on as it is. */
  Body,
}

type ParsedEvent =
  | { readonly kind: "head"; readonly head: MessageHead }
  | { readonly kind: "body"; readonly chunk: Buffer }
  /** The end of a message: of an informational answer (the request goes on) or of the final one. */
  | { readonly kind: "complete"; readonly interim: boolean };

/** How long an app connection ended with a FIN may stay half-open before it is cut. */
const END_GRACE_MS = 5000;

/**
 * One connection to an app in a workspace (a tunnel stream, or a peer server's forward of
 * one), carrying one request at a time: the one request pipeline of the workspace proxy.
 * It sends heads and bodies with backpressure, follows the answer's framing with node's own
 * parser, times out an app that does not start answering, sends an idempotent request again
 * once when a kept connection closes under it, maps every failure to the proxy's answers, and
 * goes back to the pool only at a message boundary with nothing owed either way.
 *
 * Its owner is a client side: a spliced connection (raw bytes) or one of node's requests
 * (decoded body), which gives it a ResponseSink per request.
 */
export class AppConnection {
  readonly #deps: AppConnectionDeps;
  readonly #clock: Clock;
  readonly target: ProxyTarget;
  #upstream: Duplex;
  #parser: HttpMessageParser;
  #state = AppConnectionState.Idle;
  /** Carried an answer before, or came from the pool: a request on it may find it closed. */
  #reused: boolean;
  #retried = false;
  #exchange: Exchange | undefined;
  /** The head of the request in flight, kept to send it again (retryable requests only). */
  #retryHead: Buffer | undefined;
  /** The request's body is still being sent. */
  #sendingBody = false;
  /** Every answer so far left the app connection open: it may carry another request. */
  #keepAlive = true;
  /** Status of the final answer being passed on. */
  #status = 0;
  /** Something of the answer to the request in flight reached the client: no error answer can follow. */
  #passedOn = false;
  #timer: Timer | undefined;
  // Raw mode: heads are held back until whole, then passed on (rewritten by the sink).
  #stage = Stage.Head;
  #heldHead: Buffer[] = [];
  #interim = false;
  readonly #events: ParsedEvent[] = [];

  private constructor(deps: AppConnectionDeps, target: ProxyTarget, upstream: Duplex, reused: boolean) {
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    this.target = target;
    this.#upstream = upstream;
    this.#reused = reused;
    this.#parser = this.#newParser();
    this.#attach(upstream);
  }

  /**
   * An app connection carrying the request whose head is `head`: a kept one from the pool when
   * there is one (the head is written on it), else a fresh dial with the head as its early
   * data (no round trip to the agent in between). Rejects with the dial's WarrenError.
   */
  static async open(deps: AppConnectionDeps, target: ProxyTarget, head: Buffer, exchange: Exchange, hasBody: boolean): Promise<AppConnection> {
    const pooled = deps.pool?.take(target);
    if (pooled) {
      const connection = new AppConnection(deps, target, pooled, true);
      connection.#begin(head, exchange, hasBody);
      connection.#upstream.write(head);
      return connection;
    }
    const upstream = await deps.dial(target, [head]);
    const connection = new AppConnection(deps, target, upstream, false);
    connection.#begin(head, exchange, hasBody);
    return connection;
  }

  get state(): AppConnectionState {
    return this.#state;
  }

  /** The agent or peer server session the connection rides on (a tunnel stream's). */
  get session(): Http2Session | undefined {
    return (this.#upstream as TunnelSocket).http2Stream?.session;
  }

  /** Whether another request may be sent on it now. */
  get reusable(): boolean {
    return (
      this.#state === AppConnectionState.Idle &&
      this.#keepAlive &&
      !this.#sendingBody &&
      this.#stage === Stage.Head &&
      this.#heldHead.length === 0 &&
      !this.#parser.inMessage &&
      !this.#upstream.destroyed &&
      (this.#deps.pool?.usable(this.#upstream) ?? (this.#upstream.writable && !this.#upstream.readableEnded))
    );
  }

  /** Sends the next request on this connection (it must be reusable). Resolves once the head is written (after a drain when asked). */
  send(head: Buffer, exchange: Exchange, hasBody: boolean): Promise<void> {
    this.#begin(head, exchange, hasBody);
    return this.write([head]);
  }

  /** Writes request body bytes, waiting for the app connection to drain when it asks to. */
  write(parts: readonly Buffer[]): Promise<void> {
    const upstream = this.#upstream;
    if (upstream.destroyed || this.#state === AppConnectionState.Closed) return Promise.resolve();
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

  /** The last write is waiting for the app connection to drain. */
  get needsDrain(): boolean {
    return this.#upstream.writableNeedDrain;
  }

  /** The request's body has been sent whole. */
  endRequest(): void {
    this.#sendingBody = false;
  }

  /** The client can take more: reads from the app again. */
  resume(): void {
    this.#upstream.resume();
  }

  /**
   * Done with it: back to the pool when it sits at a message boundary with nothing owed, else
   * a clean end when nothing is owed (the app sees a FIN, not a reset), else cut.
   */
  release(): void {
    if (this.#state === AppConnectionState.Closed) return;
    const upstream = this.#upstream;
    const pool = this.#deps.pool;
    if (pool && this.reusable) {
      this.#close("released to the pool", true);
      pool.give(this.target, upstream);
      return;
    }
    const owesNothing = this.#state === AppConnectionState.Idle && !this.#sendingBody;
    this.#close("released");
    if (owesNothing) endGently(upstream, this.#clock);
    else upstream.destroy();
  }

  /**
   * At a message boundary, lets go of a connection whose agent or peer session takes no new
   * work (it drains, the agent moves): true when it did; the owner's next request dials anew.
   */
  moveOffIfDraining(): boolean {
    if (this.#state !== AppConnectionState.Idle || !this.#keepAlive || this.#sendingBody) return false;
    if (this.#deps.pool?.usable(this.#upstream) ?? true) return false;
    this.#close("its session is draining: the next request dials anew");
    endGently(this.#upstream, this.#clock);
    return true;
  }

  /** Cuts it at once. */
  destroy(): void {
    if (this.#state === AppConnectionState.Closed) return;
    this.#close("destroyed");
    this.#upstream.destroy();
  }

  #transition(to: AppConnectionState, why: string): void {
    const from = this.#state;
    if (!mayTransition(from, to)) throw new Error(`app connection: no transition from ${from} to ${to} (${why})`);
    this.#state = to;
    if (from !== to) this.#deps.log.debug({ workspace: this.target.workspace, port: this.target.port, from, to, why }, "app connection state");
  }

  #begin(head: Buffer, exchange: Exchange, hasBody: boolean): void {
    this.#transition(AppConnectionState.Awaiting, `${exchange.method} sent`);
    this.#exchange = exchange;
    this.#retryHead = exchange.retryable ? head : undefined;
    this.#sendingBody = hasBody;
    this.#stage = Stage.Head;
    this.#heldHead = [];
    this.#interim = false;
    this.#passedOn = false;
    this.#armTimer();
  }

  #armTimer(): void {
    this.#clock.clearTimer(this.#timer);
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#passedOn || this.#exchange === undefined) return;
      this.#fail(upstreamTimedOut(this.target, this.#deps.timeoutMs), "upstream timeout");
    }, this.#deps.timeoutMs);
    this.#timer.unref();
  }

  #newParser(): HttpMessageParser {
    return new HttpMessageParser("response", {
      onHead: (head) => this.#onHead(head),
      ...(this.#deps.mode === BodyMode.Decoded ? { onBody: (chunk: Buffer) => void this.#events.push({ kind: "body", chunk }) } : {}),
      onComplete: () => {
        this.#events.push({ kind: "complete", interim: this.#interim });
        this.#interim = false;
      },
    });
  }

  #attach(upstream: Duplex): void {
    upstream.on("data", this.#onData);
    upstream.on("end", this.#onEnd);
    upstream.on("error", this.#onError);
    upstream.on("close", this.#onClose);
  }

  #detach(upstream: Duplex): void {
    upstream.off("data", this.#onData);
    upstream.off("end", this.#onEnd);
    upstream.off("error", this.#onError);
    upstream.off("close", this.#onClose);
  }

  #close(why: string, keepsUpstream = false): void {
    this.#transition(AppConnectionState.Closed, why);
    this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#exchange = undefined;
    this.#detach(this.#upstream);
    this.#parser.close();
    // A stray error after we let go must not crash the process (the pool listens on what it keeps).
    if (!keepsUpstream) this.#upstream.on("error", ignoreError);
  }

  /** Parses a response head: returns true when its answer has no body whatever it says (HEAD). */
  #onHead(head: MessageHead): boolean {
    this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
    if (this.#state === AppConnectionState.Awaiting) this.#transition(AppConnectionState.Answering, "answer started");
    this.#events.push({ kind: "head", head });
    if (head.statusCode === 101 || head.upgrade) return false;
    if (head.statusCode < 200) {
      this.#interim = true;
      return false;
    }
    return this.#exchange?.method === "HEAD";
  }

  readonly #onData = (chunk: Buffer): void => {
    const exchange = this.#exchange;
    if (!exchange || this.#state === AppConnectionState.Idle) {
      // Bytes nobody asked for: the app broke HTTP. Nothing sane can follow.
      this.#broken("bytes nobody asked for");
      return;
    }
    // The app answered on this connection: it was alive, nothing to send again.
    this.#retryHead = undefined;
    try {
      this.#parser.execute(chunk);
    } catch (err) {
      this.#events.length = 0;
      this.#broken(`malformed answer: ${(err as Error).message}`);
      return;
    }
    this.#dispatch(exchange, this.#deps.mode === BodyMode.Raw ? chunk : undefined);
  };

  /** Hands what the parser saw to the sink, in order; in raw mode, with the chunk's bytes. */
  #dispatch(exchange: Exchange, raw: Buffer | undefined): void {
    const events = this.#events.splice(0);
    const split = raw ? this.#split(raw, events) : undefined;
    if (raw && !split) return;
    let body = split?.body;
    let ok = true;
    let headAt = 0;
    const passBody = () => {
      if (!body) return;
      this.#passedOn = true;
      ok = exchange.sink.body(body) && ok;
      body = undefined;
    };
    for (const event of events) {
      if (this.#state === AppConnectionState.Closed) return;
      if (event.kind === "head") {
        const head = event.head;
        const bytes = split ? split.heads[headAt++]! : EMPTY;
        if (head.statusCode === 101 || head.upgrade) {
          this.#broken("an upgrade nobody asked for");
          return;
        }
        this.#passedOn = true;
        if (head.statusCode < 200) {
          ok = exchange.sink.interim(head, bytes) && ok;
          continue;
        }
        this.#status = head.statusCode;
        // llhttp decides keep-alive before it learns the body is skipped: an answer to HEAD
        // without a length would read as "until the connection closes". It is not.
        const keepAlive = head.shouldKeepAlive || (exchange.method === "HEAD" && keepsAliveWithoutBody(head));
        if (!keepAlive) this.#keepAlive = false;
        ok = exchange.sink.head(head, bytes, keepAlive) && ok;
      } else if (event.kind === "body") {
        this.#passedOn = true;
        ok = exchange.sink.body(event.chunk) && ok;
      } else if (!event.interim) {
        passBody();
        if (!ok) this.#upstream.pause();
        this.#complete(exchange);
        return;
      }
    }
    passBody();
    if (!ok) this.#upstream.pause();
  }

  /**
   * Raw mode: the bytes of each head the parser saw in this chunk (held back across chunks
   * until whole) and the final answer's body bytes after them. Undefined (and the connection
   * cut) when the chunk does not frame as the parser read it.
   */
  #split(chunk: Buffer, events: readonly ParsedEvent[]): { heads: Buffer[]; body: Buffer | undefined } | undefined {
    const parsedHeads = events.filter((e): e is Extract<ParsedEvent, { kind: "head" }> => e.kind === "head");
    const heads: Buffer[] = [];
    let rest = chunk;
    let body: Buffer | undefined;
    while (rest.length > 0) {
      if (this.#stage === Stage.Body) {
        body = rest;
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
      const parsed = parsedHeads[heads.length];
      if (!parsed) break;
      heads.push(rest.subarray(0, end + 4));
      rest = rest.subarray(end + 4);
      if (parsed.head.statusCode >= 200) this.#stage = Stage.Body;
    }
    if (heads.length !== parsedHeads.length || (this.#heldHead.length > 0) !== this.#parser.inHead) {
      this.#broken("it frames differently than its parser read it");
      return undefined;
    }
    return { heads, body };
  }

  /** The final answer ended: the connection is at a message boundary. */
  #complete(exchange: Exchange): void {
    this.#transition(AppConnectionState.Idle, "answer complete");
    this.#exchange = undefined;
    this.#retryHead = undefined;
    this.#reused = true;
    this.#stage = Stage.Head;
    exchange.sink.end(this.#status);
  }

  readonly #onEnd = (): void => {
    const exchange = this.#exchange;
    if (exchange) {
      try {
        // A body that ends with the connection is complete now.
        this.#parser.finish();
      } catch {
        // Cut short: a lost connection, below.
      }
      if (this.#events.length > 0) this.#dispatch(exchange, this.#deps.mode === BodyMode.Raw ? EMPTY : undefined);
    }
    this.#gone();
  };

  readonly #onError = (err: Error): void => this.#gone(err);
  readonly #onClose = (): void => this.#gone();

  /** The app connection closed or failed under us. */
  #gone(err?: Error): void {
    if (this.#state === AppConnectionState.Closed) return;
    if (this.#state === AppConnectionState.Idle) {
      // A kept connection the app closed between requests: the owner's next request dials anew.
      this.#keepAlive = false;
      this.#close("the app closed it between requests");
      this.#upstream.destroy();
      return;
    }
    const head = this.#retryHead;
    if (this.#state === AppConnectionState.Awaiting && head && this.#reused && !this.#retried) {
      // The app closed a kept connection as we sent the request: nothing of it was processed,
      // so it goes again, once, on a fresh connection.
      void this.#retry(head);
      return;
    }
    this.#fail(upstreamFailed(this.target, err), err ? `upstream error: ${err.message}` : "upstream closed");
  }

  async #retry(head: Buffer): Promise<void> {
    this.#retried = true;
    const stale = this.#upstream;
    this.#detach(stale);
    stale.on("error", ignoreError);
    stale.destroy();
    this.#parser.close();
    this.#parser = this.#newParser();
    this.#deps.log.debug({ workspace: this.target.workspace, port: this.target.port }, "kept app connection closed under a request: sending it again on a fresh one");
    let fresh: Duplex;
    try {
      fresh = await this.#deps.dial(this.target, [head]);
    } catch (err) {
      this.#fail(WarrenError.from(err), "dial failed");
      return;
    }
    if (this.#state === AppConnectionState.Closed) {
      fresh.destroy();
      return;
    }
    this.#upstream = fresh;
    this.#reused = false;
    this.#attach(fresh);
    this.#transition(AppConnectionState.Awaiting, "sent again");
    this.#armTimer();
  }

  #broken(why: string): void {
    this.#deps.log.warn({ workspace: this.target.workspace, port: this.target.port }, `broken answer from the workspace: ${why}; closing the connection`);
    this.#fail(brokenResponse(this.target, why), why);
  }

  #fail(error: WarrenError, why: string): void {
    if (this.#state === AppConnectionState.Closed) return;
    const exchange = this.#exchange;
    const answerable = !this.#passedOn;
    this.#deps.log.debug({ err: error.message, why }, "app connection failed");
    this.#close(why);
    this.#upstream.destroy();
    exchange?.sink.fail(error, answerable);
  }
}

const EMPTY = Buffer.alloc(0);

function ignoreError(): void {}

/** Ends a connection with a FIN; one left half-open would hold a drain, so it is cut after a grace. */
function endGently(upstream: Duplex, clock: Clock): void {
  upstream.end();
  clock.setTimeout(() => {
    if (!upstream.destroyed) upstream.destroy();
  }, END_GRACE_MS).unref();
}

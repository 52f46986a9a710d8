/**
 * For unit specs only: the few parts of a client HTTP/2 session and its streams that the
 * agent's session and tunnel pool use, without a socket. The spec plays the server: it answers
 * headers, sends messages and ends or resets streams. Events come on a later tick, as node's do.
 */
import { EventEmitter } from "node:events";
import { constants as h2constants, type ClientHttp2Session, type OutgoingHttpHeaders } from "node:http2";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { encodeGrpcMessage } from "../shared/grpc-message.js";

/** One stream the agent opened. */
export class FakeClientStream extends EventEmitter {
  readonly written: Buffer[] = [];
  destroyed = false;
  closed = false;
  writableEnded = false;
  rstCode: number | undefined;
  #paused = false;

  constructor(
    readonly session: FakeHttp2Session,
    readonly headers: OutgoingHttpHeaders,
  ) {
    super();
  }

  get path(): string {
    return String(this.headers[":path"]);
  }

  write(chunk: Buffer, callback?: (err?: Error | null) => void): boolean {
    if (this.closed) throw new Error("write after the stream closed");
    this.written.push(Buffer.from(chunk));
    if (callback) process.nextTick(callback);
    return true;
  }

  /** The agent's END_STREAM. */
  end(): void {
    this.writableEnded = true;
  }

  cork(): void {}
  uncork(): void {}
  pause(): this {
    this.#paused = true;
    return this;
  }
  resume(): this {
    this.#paused = false;
    return this;
  }
  isPaused(): boolean {
    return this.#paused;
  }

  /** The agent resets the stream (RST_STREAM); 'close' follows on a later tick. */
  close(code: number = h2constants.NGHTTP2_NO_ERROR): void {
    if (this.closed) return;
    this.#markClosed(code);
  }

  // --- the server's side ---

  /** The server's response headers (trailers-only when they carry grpc-status). */
  respond(headers: Record<string, string | number>): void {
    this.emit("response", headers);
  }

  /** The server sends one gRPC message. */
  receive<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): void {
    this.emit("data", encodeGrpcMessage(schema, message));
  }

  /** The server ends its side and the stream closes cleanly. */
  finish(): void {
    this.emit("end");
    this.#markClosed(h2constants.NGHTTP2_NO_ERROR);
  }

  #markClosed(code: number): void {
    this.closed = true;
    this.destroyed = true;
    this.rstCode = code;
    process.nextTick(() => this.emit("close"));
  }
}

/** The agent's HTTP/2 session to a server that the spec plays. */
export class FakeHttp2Session extends EventEmitter {
  readonly streams: FakeClientStream[] = [];
  closed = false;
  destroyed = false;
  pings = 0;
  /** Whether the server answers pings (a stalled server does not): each answer is bytes read. */
  answersPings = true;
  readonly #socket = { bytesRead: 0 };

  /** Like node's: a destroyed session has no socket, and reading it throws. */
  get socket(): { bytesRead: number } {
    if (this.destroyed) throw new Error("ERR_HTTP2_SOCKET_UNBOUND: the socket has been disconnected from the Http2Session");
    return this.#socket;
  }

  request(headers: OutgoingHttpHeaders): FakeClientStream {
    if (this.closed || this.destroyed) throw new Error("ERR_HTTP2_INVALID_SESSION: the session has been destroyed");
    const stream = new FakeClientStream(this, headers);
    this.streams.push(stream);
    return stream;
  }

  /** Streams opened on `path`, in order. */
  streamsOn(path: string): FakeClientStream[] {
    return this.streams.filter((s) => s.path === path);
  }

  ping(_callback: () => void): boolean {
    if (this.destroyed) throw new Error("ERR_HTTP2_INVALID_SESSION: the session has been destroyed");
    this.pings++;
    if (this.answersPings) this.#socket.bytesRead += 17;
    return true;
  }

  setLocalWindowSize(_size: number): void {}

  /** The agent's graceful close: no new streams; node closes the session once its streams end. */
  close(): void {
    this.closed = true;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.closed = true;
    this.destroyed = true;
    process.nextTick(() => this.emit("close"));
  }

  /** The server's bytes arrived (any frame counts for liveness). */
  heard(bytes = 9): void {
    this.#socket.bytesRead += bytes;
  }

  /** Handed to code that takes node's session type. */
  asSession(): ClientHttp2Session {
    return this as unknown as ClientHttp2Session;
  }
}

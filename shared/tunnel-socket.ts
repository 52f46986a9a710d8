import { Duplex } from "node:stream";
import type { Http2Stream } from "node:http2";
import { constants as h2constants } from "node:http2";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { GrpcFrameDecoder } from "./grpc-frame-decoder.js";
import { decodeTunnelMessage, encodeTunnelData } from "./tunnel-codec.js";
import { ErrorCode, WarrenError } from "./errors.js";
import { TUNNEL_WINDOWS } from "./tunnel-windows.js";

/** CloseWrite is field 3 of both TunnelRequest and TunnelResponse: the same bytes either way. */
const CLOSE_WRITE_FRAME = Buffer.from([0, 0, 0, 0, 2, (3 << 3) | 2, 0]);

export interface TunnelSocketOptions<In extends DescMessage> {
  /** The HTTP/2 stream of the claimed tunnel; it must not have data listeners yet. */
  readonly stream: Http2Stream;
  /** Schema of the messages the peer sends (TunnelRequest on the server, TunnelResponse on the agent). */
  readonly inbound: In;
  readonly maxMessageBytes: number;
  /**
   * Messages other than data and close_write. Returning normally accepts them; throwing a
   * WarrenError destroys the socket (a protocol violation).
   */
  readonly onControlMessage?: (message: MessageShape<In>) => void;
  /** Ends the HTTP/2 stream once both directions are closed (server: OK trailers; agent: END_STREAM). */
  readonly finish: (stream: Http2Stream) => void;
  /** Bytes already read from the stream that belong to this socket (after a handshake). */
  readonly decoder?: GrpcFrameDecoder;
  readonly highWaterMark?: number;
  /**
   * When true, data and close_write are protocol violations until completeHandshake() is
   * called (the dial exchange comes first).
   */
  readonly handshake?: boolean;
}

/**
 * A byte stream carried by one tunnel stream: each chunk written becomes a data message, each
 * data message received is pushed to the reader, and CloseWrite is TCP's half-close. It has the
 * socket methods that node's http.Agent and http client call, so it can stand in for a
 * net.Socket to the workspace.
 *
 * Backpressure both ways: writes wait for the HTTP/2 stream to drain (its flow-control window),
 * and when the reader stops reading the HTTP/2 stream is paused, so no WINDOW_UPDATE goes out
 * and the peer stops sending.
 */
export class TunnelSocket<In extends DescMessage = DescMessage> extends Duplex {
  readonly #stream: Http2Stream;
  readonly #inbound: In;
  readonly #decoder: GrpcFrameDecoder;
  readonly #onControlMessage: ((message: MessageShape<In>) => void) | undefined;
  readonly #finish: (stream: Http2Stream) => void;
  #awaitingHandshake: boolean;
  #readEnded = false;
  #writeEnded = false;
  #finished = false;
  #detached = false;
  /** What this socket listens to on the HTTP/2 stream, so that detach() can let go of it. */
  readonly #streamListeners: Array<[string, (...args: any[]) => void]> = [];
  #timeoutMs = 0;
  #timer: NodeJS.Timeout | undefined;
  #lastActivity = 0;
  bytesRead = 0;
  bytesWritten = 0;
  /** Same meaning as net.Socket#timeout, read by http.Agent. */
  timeout: number | undefined;
  readonly remoteAddress = "127.0.0.1";
  readonly remotePort = 0;
  readonly remoteFamily = "IPv4";
  readonly connecting = false;

  constructor(options: TunnelSocketOptions<In>) {
    super({
      allowHalfOpen: true,
      highWaterMark: options.highWaterMark ?? 256 * 1024,
      emitClose: true,
    });
    this.#stream = options.stream;
    this.#inbound = options.inbound;
    this.#decoder = options.decoder ?? new GrpcFrameDecoder(options.maxMessageBytes);
    this.#onControlMessage = options.onControlMessage;
    this.#finish = options.finish;
    this.#awaitingHandshake = options.handshake ?? false;
    const listen = (event: string, fn: (...args: any[]) => void) => {
      this.#streamListeners.push([event, fn]);
      this.#stream.on(event, fn);
    };
    listen("data", (chunk: Buffer) => this.#onData(chunk));
    listen("end", () => this.#onRemoteEnd());
    listen("close", () => this.#onStreamClose());
    listen("error", (err: Error) => this.destroy(err));
    listen("drain", () => this.emit("tunnel-drain"));
  }

  /**
   * Hands the HTTP/2 stream over as raw tunnel frames (a server that only relays them need not
   * decode and encode each one): stops listening to the stream and returns, as frames, what it
   * had received and nobody had read yet (data, then close_write if the peer had half-closed),
   * followed by any incomplete frame. The socket is destroyed; the stream is left as it is.
   */
  detach(): { stream: Http2Stream; pending: Buffer[] } {
    for (const [event, fn] of this.#streamListeners) this.#stream.off(event, fn);
    this.#detached = true;
    this.#clearTimer();
    const pending: Buffer[] = [];
    for (let chunk = this.read() as Buffer | null; chunk !== null; chunk = this.read() as Buffer | null) {
      pending.push(...encodeTunnelData(chunk));
    }
    if (this.#readEnded) pending.push(CLOSE_WRITE_FRAME);
    pending.push(...this.#decoder.takeRemainder());
    this.destroy();
    return { stream: this.#stream, pending };
  }

  /** The HTTP/2 stream that carries this socket. */
  get http2Stream(): Http2Stream {
    return this.#stream;
  }

  /** Whether the peer has closed its direction (close_write or END_STREAM). */
  get peerEnded(): boolean {
    return this.#readEnded;
  }

  /** Whether both directions closed cleanly. */
  get completed(): boolean {
    return this.#finished;
  }

  /** Ends the dial exchange: data may flow from now on. */
  completeHandshake(): void {
    this.#awaitingHandshake = false;
  }

  /** Feeds bytes read from the HTTP/2 stream before this socket took it over. */
  feed(chunks: Buffer[]): void {
    for (const chunk of chunks) this.#onData(chunk);
  }

  #onData(chunk: Buffer): void {
    if (this.destroyed) return;
    this.#touch();
    let messages: Buffer[];
    try {
      messages = this.#decoder.push(chunk);
    } catch (err) {
      this.destroy(WarrenError.from(err));
      return;
    }
    for (const payload of messages) {
      let decoded;
      try {
        decoded = decodeTunnelMessage(this.#inbound, payload);
      } catch (err) {
        this.destroy(WarrenError.from(err));
        return;
      }
      let data: Buffer | undefined;
      let closeWrite = false;
      if (decoded.kind === "data") {
        data = decoded.data;
      } else {
        const msg = (decoded.message as unknown as { msg: { case: string | undefined; value?: unknown } }).msg;
        if (msg.case === "data") data = Buffer.from(msg.value as Uint8Array);
        else if (msg.case === "closeWrite") closeWrite = true;
        else {
          try {
            if (!this.#onControlMessage) {
              throw new WarrenError(ErrorCode.InvalidArgument, `unexpected ${msg.case ?? "empty"} message on an open tunnel`);
            }
            this.#onControlMessage(decoded.message);
          } catch (err) {
            this.destroy(WarrenError.from(err, ErrorCode.InvalidArgument));
            return;
          }
          continue;
        }
      }
      if (this.#awaitingHandshake) {
        this.destroy(new WarrenError(ErrorCode.InvalidArgument, "data on a tunnel before the dial completed"));
        return;
      }
      if (data !== undefined) {
        if (this.#readEnded) {
          this.destroy(new WarrenError(ErrorCode.InvalidArgument, "data after close_write on a tunnel"));
          return;
        }
        this.bytesRead += data.length;
        if (data.length > 0 && !this.push(data)) this.#stream.pause();
      } else if (closeWrite) {
        this.#endRead();
      }
    }
  }

  override _read(): void {
    if (!this.#detached && this.#stream.isPaused()) this.#stream.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#writeFrames([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.#writeFrames(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  #writeFrames(chunks: Buffer[], callback: (err?: Error | null) => void): void {
    const stream = this.#stream;
    if (stream.destroyed || stream.closed) {
      callback(new WarrenError(ErrorCode.Unavailable, "tunnel stream closed"));
      return;
    }
    this.#touch();
    let ok = true;
    stream.cork();
    for (const chunk of chunks) {
      this.bytesWritten += chunk.length;
      // Large writes are split so that no message nears the peer's size limit.
      for (let offset = 0; offset < chunk.length; offset += TUNNEL_WINDOWS.maxChunkBytes) {
        const piece = offset === 0 && chunk.length <= TUNNEL_WINDOWS.maxChunkBytes ? chunk : chunk.subarray(offset, offset + TUNNEL_WINDOWS.maxChunkBytes);
        for (const part of encodeTunnelData(piece)) ok = stream.write(part);
      }
    }
    stream.uncork();
    if (ok) callback();
    else this.#afterDrain(callback);
  }

  #afterDrain(callback: (err?: Error | null) => void): void {
    const stream = this.#stream;
    const done = (err?: Error | null) => {
      stream.off("drain", onDrain);
      stream.off("close", onClose);
      callback(err);
    };
    const onDrain = () => done();
    const onClose = () => done(new WarrenError(ErrorCode.Unavailable, "tunnel stream closed"));
    stream.on("drain", onDrain);
    stream.on("close", onClose);
  }

  override _final(callback: (err?: Error | null) => void): void {
    const stream = this.#stream;
    if (stream.destroyed || stream.closed) {
      callback(new WarrenError(ErrorCode.Unavailable, "tunnel stream closed"));
      return;
    }
    stream.write(CLOSE_WRITE_FRAME);
    this.#writeEnded = true;
    callback();
    this.#maybeFinish();
  }

  #onRemoteEnd(): void {
    if (this.#readEnded) return;
    // Once data may flow, a peer always half-closes with close_write before it ends its HTTP/2
    // side. node also ends the readable side of a stream that was reset (RST_STREAM), before it
    // tells the reset: an end without close_write is that, and taking it for a half-close
    // would end a cut-off transfer as if it were complete.
    if (!this.#awaitingHandshake) {
      this.#reset("tunnel closed by the other side");
      return;
    }
    // Before the dial completed (a refusal, a trailers-only answer): the peer is done.
    this.#endRead();
  }

  #endRead(): void {
    if (this.#readEnded) return;
    this.#readEnded = true;
    // Told at once, even to a paused reader (an idle kept-alive HTTP connection is one).
    this.emit("tunnel-peer-end");
    this.push(null);
    this.#maybeFinish();
  }

  #maybeFinish(): void {
    if (this.#finished || !this.#readEnded || !this.#writeEnded) return;
    this.#finished = true;
    this.#clearTimer();
    // autoDestroy closes the duplex once the reader has consumed everything.
    this.#finish(this.#stream);
  }

  #onStreamClose(): void {
    if (this.#finished || this.destroyed) return;
    const code = this.#stream.rstCode;
    this.#reset(
      code === h2constants.NGHTTP2_CANCEL || code === h2constants.NGHTTP2_NO_ERROR
        ? "tunnel closed by the other side"
        : `tunnel stream reset (HTTP/2 error ${code})`,
    );
  }

  /** Destroys the socket as a reset connection (ECONNRESET, as net.Socket reports one). */
  #reset(reason: string): void {
    const err = new WarrenError(ErrorCode.Unavailable, reason);
    (err as NodeJS.ErrnoException & WarrenError).errno = undefined;
    Object.assign(err, { syscall: "read", errnoCode: "ECONNRESET" });
    this.destroy(err);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#clearTimer();
    const stream = this.#stream;
    const session = stream.session;
    if (!this.#detached && !this.#finished && !stream.destroyed && !stream.closed && session && !session.destroyed) {
      stream.close(h2constants.NGHTTP2_CANCEL);
    }
    callback(err);
  }

  // --- net.Socket compatibility for http.Agent / http client ---

  setTimeout(ms: number, callback?: () => void): this {
    this.timeout = ms;
    this.#timeoutMs = ms;
    if (callback) {
      if (ms === 0) this.off("timeout", callback);
      else this.once("timeout", callback);
    }
    this.#clearTimer();
    if (ms > 0) {
      this.#lastActivity = Date.now();
      this.#armTimer(ms);
    }
    return this;
  }

  #armTimer(delay: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const idle = Date.now() - this.#lastActivity;
      if (idle >= this.#timeoutMs) {
        this.emit("timeout");
        this.#lastActivity = Date.now();
        this.#armTimer(this.#timeoutMs);
      } else {
        this.#armTimer(this.#timeoutMs - idle);
      }
    }, delay);
    this.#timer.unref();
  }

  #touch(): void {
    if (this.#timeoutMs > 0) this.#lastActivity = Date.now();
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  setNoDelay(_noDelay?: boolean): this {
    return this;
  }

  setKeepAlive(_enable?: boolean, _initialDelay?: number): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  address(): { address: string; family: string; port: number } {
    return { address: "127.0.0.1", family: "IPv4", port: 0 };
  }
}

import type { Http2Stream } from "node:http2";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { ErrorCode, WarrenError } from "./errors.js";
import { TunnelSocket } from "./tunnel-socket.js";

/** How the caller reads the one answer of a dial exchange. */
export type DialAnswer = { readonly ok: true } | { readonly ok: false; readonly error: Error };

export interface DialHandshakeOptions<In extends DescMessage> {
  /** The claimed stream, with nothing read from it yet. */
  readonly stream: Http2Stream;
  /** Schema of the peer's messages; its first must be the dial's answer. */
  readonly inbound: In;
  readonly maxMessageBytes: number;
  /** Ends the stream once both directions are closed (see TunnelSocketOptions.finish). */
  readonly finish: (stream: Http2Stream) => void;
  /** The encoded dial message, written first. */
  readonly request: Buffer;
  /**
   * Reads the peer's answer: ok, a failure, or undefined when the message is not an answer at
   * all (a protocol violation: the socket is destroyed with invalid_argument).
   */
  readonly answerOf: (message: MessageShape<In>) => DialAnswer | undefined;
  /** What the dial fails with when the stream closes before the answer. */
  readonly closedEarly: (lastError: Error | undefined) => Error;
  readonly timeoutMs: number;
  readonly timeoutError: () => Error;
  readonly signal?: AbortSignal | undefined;
  /** Written right behind the request (before the answer), each through the socket's own framing. */
  readonly afterRequest?: (socket: TunnelSocket<In>) => void;
  /**
   * Sees the socket as soon as it exists (error listeners of the caller), with `fail`, which
   * ends the dial with that error unless it is answered already (a refusal seen elsewhere).
   */
  readonly onSocket?: (socket: TunnelSocket<In>, fail: (err: Error) => void) => void;
}

/**
 * The calling side of a dial exchange, the same for the server dialing an agent and for a
 * server forwarding a dial to another: write the dial, wait for its one answer (bounded by a
 * timeout, cancellable), then hand back the stream as a byte socket. Every way out settles
 * exactly once; a failed dial destroys the stream.
 */
export function runDialHandshake<In extends DescMessage>(options: DialHandshakeOptions<In>): Promise<TunnelSocket<In>> {
  return new Promise<TunnelSocket<In>>((resolve, reject) => {
    let settled = false;
    let lastError: Error | undefined;
    const settle = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      socket.off("close", onClose);
      options.stream.off("end", onClose);
      if (err) {
        if (!socket.destroyed) socket.destroy();
        reject(err);
      } else {
        resolve(socket);
      }
    };
    const socket: TunnelSocket<In> = new TunnelSocket({
      stream: options.stream,
      inbound: options.inbound,
      maxMessageBytes: options.maxMessageBytes,
      handshake: true,
      finish: options.finish,
      onControlMessage: (message: MessageShape<In>) => {
        const answer = settled ? undefined : options.answerOf(message);
        if (!answer) {
          const kind = (message as { msg?: { case?: string } }).msg?.case ?? "empty";
          throw new WarrenError(ErrorCode.InvalidArgument, `unexpected ${kind} message on a tunnel stream`);
        }
        if (answer.ok) {
          socket.completeHandshake();
          settle(undefined);
        } else {
          settle(answer.error);
        }
      },
    });
    options.onSocket?.(socket, (err) => settle(err));
    socket.on("error", (err) => (lastError = err));
    const onClose = () => settle(options.closedEarly(lastError));
    const onAbort = () => settle(new WarrenError(ErrorCode.Canceled, "request canceled"));
    socket.on("close", onClose);
    // A peer that ends its side before answering will never answer: an agent retires an idle
    // stream that way, and a claim that crosses the retirement must not wait out the timeout.
    options.stream.once("end", onClose);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => settle(options.timeoutError()), options.timeoutMs);
    options.stream.write(options.request);
    options.afterRequest?.(socket);
  });
}

import { ErrorCode, WarrenError } from "./errors.js";

/** Length of the gRPC message prefix: 1 byte compressed flag, 4 bytes big-endian length. */
export const GRPC_PREFIX_LENGTH = 5;

/**
 * Splits a byte stream into gRPC length-prefixed messages. Payloads that arrive within one
 * chunk are returned as views of that chunk, without copying. A message over `maxMessageBytes`
 * or a compressed message (Warren never negotiates compression) is a protocol error: push()
 * throws, and the caller drops the peer.
 */
export class GrpcFrameDecoder {
  readonly #maxMessageBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Length of the message being assembled, or -1 while its prefix is incomplete. */
  #pending = -1;

  constructor(maxMessageBytes: number) {
    this.#maxMessageBytes = maxMessageBytes;
  }

  /** Bytes held for an incomplete message. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /**
   * Adds a chunk and returns the messages it completes, in order. Throws a WarrenError
   * (invalid_argument or resource_exhausted) on a frame this side will not accept.
   */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (chunk.length === 0) return out;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    for (;;) {
      if (this.#pending < 0) {
        if (this.#buffered < GRPC_PREFIX_LENGTH) break;
        const prefix = this.#take(GRPC_PREFIX_LENGTH);
        const flag = prefix[0]!;
        if (flag !== 0) {
          throw new WarrenError(
            flag === 1 ? ErrorCode.Unimplemented : ErrorCode.InvalidArgument,
            flag === 1 ? "compressed gRPC messages are not supported" : `invalid gRPC frame flag ${flag}`,
          );
        }
        const length = prefix.readUInt32BE(1);
        if (length > this.#maxMessageBytes) {
          throw new WarrenError(
            ErrorCode.ResourceExhausted,
            `gRPC message of ${length} bytes exceeds the limit of ${this.#maxMessageBytes} bytes`,
          );
        }
        this.#pending = length;
      }
      if (this.#buffered < this.#pending) break;
      out.push(this.#take(this.#pending));
      this.#pending = -1;
    }
    return out;
  }

  /**
   * Returns the raw bytes of the incomplete message held (its prefix included) and forgets
   * them: for handing the byte stream on to something that forwards frames as they are.
   */
  takeRemainder(): Buffer[] {
    const out = this.#pending >= 0 ? [grpcPrefix(this.#pending), ...this.#chunks] : [...this.#chunks];
    this.#chunks = [];
    this.#buffered = 0;
    this.#pending = -1;
    return out;
  }

  #take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.length === n ? first : first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let offset = 0;
    while (offset < n) {
      const chunk = this.#chunks[0]!;
      const want = n - offset;
      if (chunk.length <= want) {
        chunk.copy(out, offset);
        offset += chunk.length;
        this.#chunks.shift();
      } else {
        chunk.copy(out, offset, 0, want);
        this.#chunks[0] = chunk.subarray(want);
        offset += want;
      }
    }
    return out;
  }
}

/** The 5-byte gRPC prefix for an uncompressed message of `length` bytes. */
export function grpcPrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(GRPC_PREFIX_LENGTH);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

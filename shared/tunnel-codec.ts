import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { GRPC_PREFIX_LENGTH } from "./grpc-frame-decoder.js";
import { decodeGrpcMessage } from "./grpc-message.js";

/**
 * The hot path of the tunnel: `bytes data = 2` of TunnelRequest/TunnelResponse, encoded and
 * decoded by hand so that a payload is never copied. The wire format is plain protobuf (field 2,
 * wire type 2: tag byte 0x12, varint length, bytes), so any gRPC peer that uses the generated
 * code interoperates; tunnel-codec.spec.ts checks both directions against @bufbuild/protobuf.
 */
const DATA_TAG = (2 << 3) | 2;

/** Payloads up to this size are copied into one buffer with their header: one write, not two. */
const COALESCE_BYTES = 16 * 1024;

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, offset: number, n: number): number {
  while (n >= 0x80) {
    buf[offset++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[offset++] = n;
  return offset;
}

/**
 * Encodes `payload` as a data message with its gRPC prefix. Returns one buffer for small
 * payloads and [header, payload] for large ones (written with writev, payload not copied).
 */
export function encodeTunnelData(payload: Buffer): Buffer[] {
  const bodyLength = 1 + varintLength(payload.length) + payload.length;
  const headerLength = GRPC_PREFIX_LENGTH + bodyLength - payload.length;
  const small = payload.length <= COALESCE_BYTES;
  const header = Buffer.allocUnsafe(small ? headerLength + payload.length : headerLength);
  header[0] = 0;
  header.writeUInt32BE(bodyLength, 1);
  header[GRPC_PREFIX_LENGTH] = DATA_TAG;
  const end = writeVarint(header, GRPC_PREFIX_LENGTH + 1, payload.length);
  if (small) {
    payload.copy(header, end);
    return [header];
  }
  return [header, payload];
}

export type DecodedTunnelMessage<Desc extends DescMessage> =
  | { readonly kind: "data"; readonly data: Buffer }
  | { readonly kind: "message"; readonly message: MessageShape<Desc> };

/**
 * Decodes one tunnel message payload (without its gRPC prefix). A data message comes back as
 * a view of `payload`; anything else goes through the generated code. Throws invalid_argument
 * on malformed input.
 */
export function decodeTunnelMessage<Desc extends DescMessage>(schema: Desc, payload: Buffer): DecodedTunnelMessage<Desc> {
  if (payload.length >= 2 && payload[0] === DATA_TAG) {
    let length = 0;
    let shift = 1;
    let offset = 1;
    for (; offset < payload.length && offset < 6; offset++) {
      const byte = payload[offset]!;
      length += (byte & 0x7f) * shift;
      shift *= 128;
      if (byte < 0x80) {
        offset++;
        if (offset + length === payload.length) {
          return { kind: "data", data: payload.subarray(offset) };
        }
        break;
      }
    }
  }
  return { kind: "message", message: decodeGrpcMessage(schema, payload) };
}

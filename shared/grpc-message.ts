import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { ErrorCode, WarrenError } from "./errors.js";
import { GRPC_PREFIX_LENGTH } from "./grpc-frame-decoder.js";

/** Encodes a protobuf message as one gRPC length-prefixed frame. */
export function encodeGrpcMessage<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Buffer {
  const body = toBinary(schema, message);
  const frame = Buffer.allocUnsafe(GRPC_PREFIX_LENGTH + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, GRPC_PREFIX_LENGTH);
  return frame;
}

/** Decodes a gRPC message payload; a payload that is not valid protobuf is invalid_argument. */
export function decodeGrpcMessage<Desc extends DescMessage>(schema: Desc, payload: Uint8Array): MessageShape<Desc> {
  try {
    return fromBinary(schema, payload);
  } catch (err) {
    throw new WarrenError(ErrorCode.InvalidArgument, `malformed ${schema.typeName} message: ${(err as Error).message}`);
  }
}

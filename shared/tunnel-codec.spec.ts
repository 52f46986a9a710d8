import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { TunnelRequestSchema, TunnelResponseSchema, DialStatus } from "./gen/warren/v1/agent_pb.js";
import { decodeTunnelMessage, encodeTunnelData } from "./tunnel-codec.js";

describe("tunnel data codec", () => {
  for (const size of [0, 1, 127, 128, 16_384, 16_385, 65_536, 300_000]) {
    it(`encodes ${size} bytes exactly as the generated code does, and decodes them back`, () => {
      const payload = randomBytes(size);
      const encoded = Buffer.concat(encodeTunnelData(payload));
      const body = encoded.subarray(5);
      expect(encoded.readUInt32BE(1)).toBe(body.length);
      for (const schema of [TunnelRequestSchema, TunnelResponseSchema]) {
        const reference = toBinary(schema, create(schema, { msg: { case: "data", value: payload } }));
        expect(Buffer.from(reference).equals(body)).toBe(true);
        const decoded = fromBinary(schema, body);
        expect(decoded.msg.case).toBe("data");
        const fast = decodeTunnelMessage(schema, body);
        expect(fast.kind).toBe("data");
        if (fast.kind === "data") expect(fast.data.equals(payload)).toBe(true);
      }
    });
  }

  it("hands other messages to the generated code", () => {
    const body = Buffer.from(toBinary(TunnelRequestSchema, create(TunnelRequestSchema, { msg: { case: "dialResult", value: { status: DialStatus.REFUSED, message: "x" } } })));
    const decoded = decodeTunnelMessage(TunnelRequestSchema, body);
    expect(decoded.kind).toBe("message");
    if (decoded.kind === "message") expect(decoded.message.msg.case).toBe("dialResult");
  });

  it("does not take a data tag followed by more fields for a bare data message", () => {
    // data (field 2) followed by close_write (field 3): valid protobuf, last oneof field wins.
    const body = Buffer.from([0x12, 0x01, 0x41, 0x1a, 0x00]);
    const decoded = decodeTunnelMessage(TunnelRequestSchema, body);
    expect(decoded.kind).toBe("message");
  });

  it("reports malformed input as invalid_argument", () => {
    expect(() => decodeTunnelMessage(TunnelRequestSchema, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrowError(/malformed warren.v1.TunnelRequest/);
  });
});

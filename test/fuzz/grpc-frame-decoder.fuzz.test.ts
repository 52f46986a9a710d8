import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isWarrenError } from "../../shared/errors.js";
import { GRPC_PREFIX_LENGTH, GrpcFrameDecoder } from "../../shared/grpc-frame-decoder.js";
import { fuzzParameters } from "./fuzz-settings.js";

const MAX = 4096;

function frame(message: Uint8Array): Buffer {
  const prefix = Buffer.alloc(GRPC_PREFIX_LENGTH);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** Cuts `bytes` at the given points (sorted, deduplicated, within range). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  out.push(bytes.subarray(at));
  return out;
}

describe("GrpcFrameDecoder (property-based)", () => {
  it("gives back exactly the messages framed, however the stream is cut", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (messages, cuts) => {
        const wire = Buffer.concat(messages.map(frame));
        const decoder = new GrpcFrameDecoder(MAX);
        const out: Buffer[] = [];
        for (const piece of split(wire, cuts)) out.push(...decoder.push(piece).map((m) => Buffer.from(m)));
        expect(out.map((m) => m.toString("hex"))).toEqual(messages.map((m) => Buffer.from(m).toString("hex")));
        expect(decoder.bufferedBytes).toBe(0);
      }),
      fuzzParameters(300),
    );
  });

  it("on any bytes: messages out, then the remainder, are the stream again; or a WarrenError for a frame it refuses", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 20 }), (bytes, cuts) => {
        const wire = Buffer.from(bytes);
        const decoder = new GrpcFrameDecoder(MAX);
        const out: Buffer[] = [];
        try {
          for (const piece of split(wire, cuts)) out.push(...decoder.push(piece).map((m) => Buffer.from(m)));
        } catch (err) {
          expect(isWarrenError(err)).toBe(true);
          return;
        }
        const again = Buffer.concat([...out.map(frame), ...decoder.takeRemainder()]);
        expect(again.toString("hex")).toBe(wire.toString("hex"));
        for (const m of out) expect(m.length).toBeLessThanOrEqual(MAX);
      }),
      fuzzParameters(300),
    );
  });

  it("refuses a frame over the limit however it is cut, before the message arrives", () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX + 1, max: 0xffffffff }), fc.nat({ max: 4 }), (length, cut) => {
        const prefix = Buffer.alloc(GRPC_PREFIX_LENGTH);
        prefix.writeUInt32BE(length, 1);
        const decoder = new GrpcFrameDecoder(MAX);
        expect(() => {
          decoder.push(prefix.subarray(0, cut));
          decoder.push(prefix.subarray(cut));
        }).toThrowError(/exceeds the limit/);
      }),
      fuzzParameters(200),
    );
  });
});

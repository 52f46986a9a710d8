import { describe, expect, it } from "vitest";
import { GrpcFrameDecoder, grpcPrefix } from "./grpc-frame-decoder.js";
import { WarrenError } from "./errors.js";

const frame = (payload: Buffer) => Buffer.concat([grpcPrefix(payload.length), payload]);

describe("GrpcFrameDecoder", () => {
  it("splits frames that arrive together, apart and byte by byte", () => {
    const a = Buffer.from("first message");
    const b = Buffer.alloc(70_000, 7);
    const c = Buffer.alloc(0);
    const wire = Buffer.concat([frame(a), frame(b), frame(c)]);
    for (const step of [wire.length, 1, 3, 4096]) {
      const d = new GrpcFrameDecoder(1 << 20);
      const out: Buffer[] = [];
      for (let i = 0; i < wire.length; i += step) out.push(...d.push(wire.subarray(i, i + step)));
      expect(out.map((m) => m.length)).toEqual([a.length, b.length, 0]);
      expect(out[0]!.equals(a)).toBe(true);
      expect(out[1]!.equals(b)).toBe(true);
      expect(d.bufferedBytes).toBe(0);
    }
  });

  it("returns a view without copying when a frame sits in one chunk", () => {
    const wire = frame(Buffer.from("abc"));
    const [m] = new GrpcFrameDecoder(100).push(wire);
    expect(m!.buffer).toBe(wire.buffer);
  });

  it("refuses a frame over the limit as soon as its prefix arrives", () => {
    const d = new GrpcFrameDecoder(1024);
    expect(() => d.push(grpcPrefix(1025))).toThrowError(/exceeds the limit of 1024 bytes/);
  });

  it("refuses compressed and malformed flags", () => {
    const compressed = Buffer.from([1, 0, 0, 0, 0]);
    expect(() => new GrpcFrameDecoder(10).push(compressed)).toThrowError(WarrenError);
    expect(() => new GrpcFrameDecoder(10).push(Buffer.from([9, 0, 0, 0, 0]))).toThrowError(/invalid gRPC frame flag 9/);
  });
});

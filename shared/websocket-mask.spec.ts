import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { mask, unmask } from "./websocket-mask.js";

const naive = (data: Uint8Array, key: Uint8Array) => Buffer.from(data.map((b, i) => b ^ key[i & 3]!));

describe("WebSocket masking, four bytes at a time", () => {
  it("matches the byte-by-byte XOR for every length and alignment", () => {
    const key = randomBytes(4);
    const pool = randomBytes(400);
    for (let start = 0; start < 8; start++) {
      for (const length of [0, 1, 3, 4, 5, 31, 32, 33, 48, 63, 64, 65, 255, 300]) {
        const source = Buffer.from(pool.subarray(start, start + length));
        const expected = naive(source, key);

        const inPlace = Buffer.alloc(length + 8).subarray(start % 4, (start % 4) + length);
        inPlace.set(source);
        unmask(inPlace, key);
        expect(Buffer.from(inPlace)).toEqual(expected);

        for (const offset of [0, 1, 2, 6]) {
          const output = Buffer.alloc(offset + length + 3, 0xaa);
          mask(source, key, output, offset, length);
          expect(output.subarray(offset, offset + length)).toEqual(expected);
          expect([...output.subarray(0, offset), ...output.subarray(offset + length)].every((b) => b === 0xaa)).toBe(true);
        }
      }
    }
  });
});

import { describe, expect, it } from "vitest";
import { TokenKind } from "../domain/tokens.js";
import type { TokenRecord } from "../domain/records.js";
import { TokenCache } from "./token-cache.js";

const record: TokenRecord = { id: "t1", kind: TokenKind.Access, hash: "h", subject: "alice", createdAt: 0, expiresAt: 10 };

describe("TokenCache", () => {
  it("serves a record from memory until it ages out, and forgets a revoked one at once", async () => {
    let now = 0;
    let reads = 0;
    const stored = new Map([["t1", record]]);
    const cache = new TokenCache({ store: { getToken: async (id) => (reads++, stored.get(id)) }, ttlMs: 1000, now: () => now });
    expect(await cache.getToken("t1")).toEqual(record);
    expect(await cache.getToken("t1")).toEqual(record);
    expect(reads).toBe(1);
    now = 1000;
    await cache.getToken("t1");
    expect(reads).toBe(2);
    stored.delete("t1");
    cache.invalidate("t1");
    expect(await cache.getToken("t1")).toBeUndefined();
  });

  it("does not keep what a read in flight during a revocation returned", async () => {
    let release: (r: TokenRecord | undefined) => void = () => {};
    const cache = new TokenCache({ store: { getToken: () => new Promise((resolve) => (release = resolve)) } });
    const reading = cache.getToken("t1");
    cache.invalidate("t1");
    release(record);
    expect(await reading).toEqual(record);
    let reads = 0;
    const after = new TokenCache({ store: { getToken: async () => (reads++, undefined) } });
    await after.getToken("t1");
    await after.getToken("t1");
    expect(reads).toBe(2);
  });
});

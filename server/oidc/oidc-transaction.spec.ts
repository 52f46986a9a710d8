import { describe, expect, it } from "vitest";
import { TransactionSealer } from "./oidc-transaction.js";

const key = Buffer.alloc(32, 7);
const t = { state: "s", nonce: "n", codeVerifier: "v", returnTo: "http://warren.localhost:8080/", expiresAt: 2000 };

describe("the sealed sign-in transaction", () => {
  it("opens what it sealed until it expires", () => {
    let now = 1000;
    const sealer = new TransactionSealer({ key, now: () => now });
    const value = sealer.seal(t);
    expect(sealer.open(value)).toEqual(t);
    now = 2000;
    expect(sealer.open(value)).toBeUndefined();
  });

  it("refuses a changed value or another key's", () => {
    const sealer = new TransactionSealer({ key, now: () => 0 });
    const value = sealer.seal(t);
    const forged = Buffer.from(JSON.stringify({ ...t, returnTo: "http://evil.example.com/" })).toString("base64url") + value.slice(value.indexOf("."));
    expect(sealer.open(forged)).toBeUndefined();
    expect(new TransactionSealer({ key: Buffer.alloc(32, 8), now: () => 0 }).open(value)).toBeUndefined();
    expect(sealer.open(undefined)).toBeUndefined();
    expect(sealer.open("garbage")).toBeUndefined();
  });
});

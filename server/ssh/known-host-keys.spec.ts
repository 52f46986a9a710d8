import { describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store.js";
import { KnownHostKeys } from "./known-host-keys.js";
import { generateEd25519KeyPair } from "./ssh-keygen.js";
import { parsePublicKey } from "../domain/ssh-public-key.js";

const blob = () => parsePublicKey(generateEd25519KeyPair("").publicKey).blob;

describe("KnownHostKeys", () => {
  it("pins the first key, accepts it again, refuses another, and starts over when forgotten", async () => {
    const known = new KnownHostKeys({ store: new MemoryStore() });
    const ws = { name: "alpha", createdAt: 100 };
    const first = blob();
    expect(await known.check(ws, first)).toMatchObject({ ok: true, firstUse: true });
    expect(await known.check(ws, first)).toMatchObject({ ok: true, firstUse: false });
    const other = blob();
    const refused = await known.check(ws, other);
    expect(refused).toMatchObject({ ok: false });
    expect(await known.forget("alpha")).toBe(true);
    expect(await known.check(ws, other)).toMatchObject({ ok: true, firstUse: true });
  });

  it("ignores a key pinned for an earlier workspace of the same name", async () => {
    const known = new KnownHostKeys({ store: new MemoryStore() });
    await known.check({ name: "alpha", createdAt: 1 }, blob());
    expect(await known.check({ name: "alpha", createdAt: 2 }, blob())).toMatchObject({ ok: true, firstUse: true });
  });

  it("agrees on one key when two checks race on first use", async () => {
    const known = new KnownHostKeys({ store: new MemoryStore() });
    const ws = { name: "alpha", createdAt: 1 };
    const [a, b] = await Promise.all([known.check(ws, blob()), known.check(ws, blob())]);
    expect([a.ok, b.ok].sort()).toEqual([false, true]);
  });
});

import { describe, expect, it } from "vitest";
import { MemoryStore } from "./memory-store.js";

/** Counts the entries that iterations over any Map visit while `fn` runs. */
async function mapEntriesVisited(fn: () => Promise<void>): Promise<number> {
  const original = Map.prototype[Symbol.iterator];
  let visited = 0;
  Map.prototype[Symbol.iterator] = function (this: Map<unknown, unknown>) {
    const inner = original.call(this);
    return {
      next: () => {
        const step = inner.next();
        if (!step.done) visited++;
        return step;
      },
      [Symbol.iterator]() {
        return this;
      },
    } as MapIterator<[unknown, unknown]>;
  };
  try {
    await fn();
  } finally {
    Map.prototype[Symbol.iterator] = original;
  }
  return visited;
}

describe("MemoryStore login codes", () => {
  const code = (id: string, expiresAt: number) => ({ id, hash: "h", host: "80-a.warren.localhost", tokenId: "t", expiresAt });

  it("does not scan every live login code on each insert (it was quadratic under a flood of logins)", async () => {
    let now = 1_000;
    const store = new MemoryStore({ now: () => now });
    for (let i = 0; i < 5_000; i++) await store.putLoginCode(code(`live-${i}`, now + 60_000));
    const visited = await mapEntriesVisited(() => store.putLoginCode(code("one-more", now + 60_000)));
    expect(visited).toBeLessThanOrEqual(1);
    // Expired ones are still dropped as new codes arrive.
    now += 60_000;
    await store.putLoginCode(code("later", now + 60_000));
    expect(await store.takeLoginCode("live-0")).toBeUndefined();
    expect(await store.takeLoginCode("one-more")).toBeUndefined();
    expect(await store.takeLoginCode("later")).toMatchObject({ id: "later" });
  });
});

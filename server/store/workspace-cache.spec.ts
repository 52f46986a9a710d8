import { describe, expect, it } from "vitest";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { WorkspaceRecord } from "../domain/records.js";
import { WorkspaceCache } from "./workspace-cache.js";

function record(name: string, port = 8000): WorkspaceRecord {
  return { name, ports: [{ port, public: false }], createdAt: 0, agentTokenId: "t", agentTokenExpiresAt: 1 };
}

/** A store whose answers the test controls, counting reads. */
class FakeStore {
  reads = 0;
  records = new Map<string, WorkspaceRecord>();
  down = false;
  async getWorkspace(name: string): Promise<WorkspaceRecord | undefined> {
    this.reads++;
    // The answer is what the store held when the read started.
    const answer = this.records.get(name);
    const down = this.down;
    await Promise.resolve();
    if (down) throw new WarrenError(ErrorCode.Unavailable, "Redis is unreachable");
    return answer;
  }
}

describe("WorkspaceCache", () => {
  it("serves a fresh record without reading the store, and merges concurrent misses", async () => {
    let now = 0;
    const store = new FakeStore();
    store.records.set("w", record("w"));
    const cache = new WorkspaceCache({ store, freshMs: 1000, now: () => now });
    const answers = await Promise.all([cache.getWorkspace("w"), cache.getWorkspace("w"), cache.getWorkspace("w")]);
    expect(answers).toEqual([record("w"), record("w"), record("w")]);
    expect(store.reads).toBe(1);
    now = 999;
    await cache.getWorkspace("w");
    expect(store.reads).toBe(1);
    now = 1000;
    await cache.getWorkspace("w");
    expect(store.reads).toBe(2);
  });

  it("serves the last known record while the store is down, up to the stale limit", async () => {
    let now = 0;
    const store = new FakeStore();
    store.records.set("w", record("w"));
    const cache = new WorkspaceCache({ store, freshMs: 10, staleMs: 5000, now: () => now });
    await cache.getWorkspace("w");
    store.down = true;
    now = 4000;
    expect(await cache.getWorkspace("w")).toEqual(record("w"));
    now = 6000;
    await expect(cache.getWorkspace("w")).rejects.toMatchObject({ code: "unavailable" });
    await expect(cache.getWorkspace("never-seen")).rejects.toMatchObject({ code: "unavailable" });
  });

  it("reads a changed workspace again at once, but keeps serving the old record while the store is down", async () => {
    const store = new FakeStore();
    store.records.set("w", record("w"));
    const cache = new WorkspaceCache({ store, freshMs: 60_000, now: () => 0 });
    await cache.getWorkspace("w");
    store.records.set("w", record("w", 9000));
    cache.invalidate("w", false);
    expect((await cache.getWorkspace("w"))?.ports[0]?.port).toBe(9000);
    expect(store.reads).toBe(2);
    cache.invalidate("w", false);
    store.down = true;
    expect((await cache.getWorkspace("w"))?.ports[0]?.port).toBe(9000);
  });

  it("keeps a record read while it changed as a fallback for an outage, and reads it again", async () => {
    const store = new FakeStore();
    store.records.set("w", record("w"));
    const cache = new WorkspaceCache({ store, freshMs: 60_000, now: () => 0 });
    const reading = cache.getWorkspace("w");
    cache.invalidate("w", false);
    await reading;
    expect(store.reads).toBe(1);
    await cache.getWorkspace("w");
    expect(store.reads).toBe(2);
    cache.invalidate("w", false);
    store.down = true;
    expect(await cache.getWorkspace("w")).toEqual(record("w"));
  });

  it("does not cache absent workspaces, and invalidate() forgets at once, even a read in flight", async () => {
    const store = new FakeStore();
    const cache = new WorkspaceCache({ store });
    expect(await cache.getWorkspace("w")).toBeUndefined();
    store.records.set("w", record("w"));
    expect(await cache.getWorkspace("w")).toEqual(record("w"));
    // Deleted elsewhere: the event invalidates, the next request sees it gone.
    store.records.delete("w");
    cache.invalidate("w");
    expect(await cache.getWorkspace("w")).toBeUndefined();
    // A read that started before an invalidation must not store the old answer.
    store.records.set("w", record("w", 1));
    const inflight = cache.getWorkspace("w");
    store.records.set("w", record("w", 2));
    cache.invalidate("w");
    expect((await inflight)?.ports[0]?.port).toBe(1);
    expect((await cache.getWorkspace("w"))?.ports[0]?.port).toBe(2);
  });

  it("is primed by agent authentication", async () => {
    const store = new FakeStore();
    store.down = true;
    const cache = new WorkspaceCache({ store, freshMs: 0 });
    cache.prime(record("w"));
    expect(await cache.getWorkspace("w")).toEqual(record("w"));
  });
});

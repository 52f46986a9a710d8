import { Duplex, PassThrough } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { UpstreamPool } from "./upstream-pool.js";

const A = { workspace: "alpha", workspaceId: "ws_alpha", port: 8080 };
const B = { workspace: "beta", workspaceId: "ws_beta", port: 8080 };

function pool(overrides: Partial<ConstructorParameters<typeof UpstreamPool>[0]> = {}): UpstreamPool {
  return new UpstreamPool({ maxIdlePerTarget: 2, idleTimeoutMs: 1000, acceptsNewWork: () => true, ...overrides });
}

describe("UpstreamPool", () => {
  afterEach(() => vi.useRealTimers());

  it("hands a kept connection back for the same workspace port only, most recent first", () => {
    const p = pool();
    const first = new PassThrough();
    const second = new PassThrough();
    p.give(A, first);
    p.give(A, second);
    expect(p.take(B)).toBeUndefined();
    expect(p.take({ workspace: "alpha", workspaceId: "ws_alpha", port: 3000 })).toBeUndefined();
    expect(p.take(A)).toBe(second);
    expect(p.take(A)).toBe(first);
    expect(p.take(A)).toBeUndefined();
  });

  it("ends what it cannot keep: over the limit, closed, or with bytes nobody asked for", () => {
    const p = pool();
    const kept = [new PassThrough(), new PassThrough()];
    for (const d of kept) p.give(A, d);
    const extra = new PassThrough();
    p.give(A, extra);
    expect(extra.writableEnded).toBe(true);
    kept[1]!.write("unsolicited");
    expect(kept[1]!.destroyed).toBe(true);
    expect(p.size).toBe(1);
    p.close();
    expect(kept[0]!.destroyed).toBe(true);
    const late = new PassThrough();
    p.give(A, late);
    expect(late.writableEnded).toBe(true);
    expect(p.size).toBe(0);
  });

  it("drops a connection the app closed, and one idle past the timeout", async () => {
    const p = pool();
    const closedByApp = new PassThrough();
    p.give(A, closedByApp);
    closedByApp.end(); // the peer's end reaches the readable side
    await new Promise((r) => setImmediate(r));
    expect(closedByApp.destroyed).toBe(true);
    expect(p.take(A)).toBeUndefined();
    vi.useFakeTimers();
    const idle = new PassThrough();
    p.give(B, idle);
    vi.advanceTimersByTime(1001);
    expect(idle.destroyed).toBe(true);
    expect(p.take(B)).toBeUndefined();
  });

  it("keeps nothing whose agent session no longer takes new work", () => {
    const session = {};
    const onDraining = Object.assign(new Duplex({ read() {}, write(_c, _e, cb) { cb(); } }), { http2Stream: { session } });
    const p = pool({ acceptsNewWork: (s) => s !== session });
    p.give(A, onDraining);
    expect(onDraining.writableEnded).toBe(true);
    expect(p.take(A)).toBeUndefined();
  });
});

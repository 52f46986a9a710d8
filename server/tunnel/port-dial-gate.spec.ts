import { describe, expect, it } from "vitest";
import { PortDialGate } from "./port-dial-gate.js";

describe("PortDialGate", () => {
  it("lets `limit` dials to one port through, queues the next, and leaves other ports alone", async () => {
    const gate = new PortDialGate(2);
    const a = await gate.enter("w", 80, 1000);
    await gate.enter("w", 80, 1000);
    let third = false;
    const waiting = gate.enter("w", 80, 10_000).then((release) => {
      third = true;
      return release;
    });
    // Another port of the same workspace, and the same port of another workspace, go at once.
    await gate.enter("w", 81, 0);
    await gate.enter("v", 80, 0);
    await Promise.resolve();
    expect(third).toBe(false);
    a();
    a(); // releasing twice frees one slot only
    (await waiting)();
    expect(third).toBe(true);
    expect(gate.activeOn("w", 80)).toBe(1);
  });

  it("answers unavailable, naming the port, when no slot frees in time", async () => {
    const gate = new PortDialGate(1);
    await gate.enter("w", 80, 0);
    await expect(gate.enter("w", 80, 5)).rejects.toMatchObject({ code: "unavailable", message: expect.stringContaining('port 80 of workspace "w"') });
  });

  it("gives up waiting when the request is canceled", async () => {
    const gate = new PortDialGate(1);
    await gate.enter("w", 80, 0);
    const abort = new AbortController();
    const waiting = gate.enter("w", 80, 10_000, abort.signal);
    abort.abort();
    await expect(waiting).rejects.toMatchObject({ code: "canceled" });
  });
});

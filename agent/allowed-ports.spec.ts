import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { AllowedPorts } from "./allowed-ports.js";

class FakeConnection extends EventEmitter {
  destroyedWith: Error | undefined;
  destroy(error?: Error): void {
    this.destroyedWith = error ?? new Error("destroyed");
    this.emit("close");
  }
}

describe("AllowedPorts", () => {
  it("closes the open connections of a port that is no longer allowed, and only those", () => {
    const allowed = new AllowedPorts([8000, 5432]);
    const db = new FakeConnection();
    const web = new FakeConnection();
    allowed.track(5432, db);
    allowed.track(8000, web);
    expect(allowed.replace([8000, 3000])).toEqual([5432]);
    expect(db.destroyedWith?.message).toBe("port 5432 is no longer exposed");
    expect(web.destroyedWith).toBeUndefined();
    expect(allowed.has(3000)).toBe(true);
    expect(allowed.has(5432)).toBe(false);
  });

  it("closes a connection that finished dialing after its port went away", () => {
    const allowed = new AllowedPorts([8000]);
    allowed.replace([]);
    const late = new FakeConnection();
    allowed.track(8000, late);
    expect(late.destroyedWith?.message).toBe("port 8000 is no longer exposed");
  });
});

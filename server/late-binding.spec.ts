import { describe, expect, it } from "vitest";
import { isWarrenError } from "../shared/errors.js";
import { LateBinding } from "./late-binding.js";

describe("LateBinding", () => {
  it("gives what was attached, and says what is missing and where it is attached when read before", () => {
    const binding = new LateBinding<{ n: number }>("the front doors", "buildFrontDoors");
    expect(binding.attached).toBe(false);
    let err: unknown;
    try {
      binding.get();
    } catch (e) {
      err = e;
    }
    expect(isWarrenError(err, "internal")).toBe(true);
    expect((err as Error).message).toBe("the front doors was used before it was attached: build it and call buildFrontDoors first");
    binding.attach({ n: 1 });
    expect(binding.get().n).toBe(1);
    expect(() => binding.attach({ n: 2 })).toThrow("the front doors is attached twice (buildFrontDoors)");
  });
});

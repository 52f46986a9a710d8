import { describe, expect, it } from "vitest";
import { usernameFromClaim } from "./oidc-username.js";

describe("usernameFromClaim", () => {
  it("makes a DNS label of what the provider says", () => {
    expect(usernameFromClaim("alice", "preferred_username")).toBe("alice");
    expect(usernameFromClaim("Alice.Smith@example.com", "email")).toBe("alice-smith");
    expect(usernameFromClaim("bob_o'neil", "preferred_username")).toBe("bob-o-neil");
  });

  it("refuses a missing claim or one that starts with no letter", () => {
    expect(() => usernameFromClaim(undefined, "preferred_username")).toThrow(/no "preferred_username" claim/);
    expect(() => usernameFromClaim("1234", "sub")).toThrow(/must start with a letter/);
  });
});

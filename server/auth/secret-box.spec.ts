import { describe, expect, it } from "vitest";
import { SecretBox } from "./secret-box.js";
import { KeyPurpose, SecretKeys } from "./secret-keys.js";

describe("secret box (AES-256-GCM)", () => {
  const keys = new SecretKeys("a server secret of at least thirty-two characters");
  const box = new SecretBox(keys.derive(KeyPurpose.Variables));

  it("seals and opens, with a fresh nonce each time", () => {
    const a = box.seal("hunter2", "workspace:a");
    const b = box.seal("hunter2", "workspace:a");
    expect(a).not.toBe(b);
    expect(a).not.toContain("hunter2");
    expect(a).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
    expect(box.open(a, "workspace:a").toString()).toBe("hunter2");
  });

  it("refuses another owner's ciphertext, tampering and other keys", () => {
    const sealed = box.seal("hunter2", "workspace:a");
    expect(() => box.open(sealed, "workspace:b")).toThrow(/cannot decrypt/);
    const raw = Buffer.from(sealed.slice(3), "base64url");
    raw[raw.length - 1]! ^= 1;
    expect(() => box.open(`v1.${raw.toString("base64url")}`, "workspace:a")).toThrow(/cannot decrypt/);
    const other = new SecretBox(new SecretKeys("another server secret, also thirty-two chars").derive(KeyPurpose.Variables));
    expect(() => other.open(sealed, "workspace:a")).toThrow(/WARREN_SECRET_KEY/);
    expect(() => box.open("garbage", "workspace:a")).toThrow(/cannot decrypt/);
  });

  it("opens what an earlier secret sealed when that secret is accepted, and seals with the current one", () => {
    const earlier = new SecretBox(new SecretKeys("the earlier server secret, thirty-two chars+").derive(KeyPurpose.Variables));
    const sealedBefore = earlier.seal("kept across the rotation", "workspace:a");
    const rotated = new SecretBox(keys.derive(KeyPurpose.Variables), [new SecretKeys("the earlier server secret, thirty-two chars+").derive(KeyPurpose.Variables)]);
    expect(rotated.open(sealedBefore, "workspace:a").toString()).toBe("kept across the rotation");
    // New values: sealed with the current key only.
    const sealedAfter = rotated.seal("new", "workspace:a");
    expect(box.open(sealedAfter, "workspace:a").toString()).toBe("new");
    expect(() => earlier.open(sealedAfter, "workspace:a")).toThrow(/cannot decrypt/);
    // Without the earlier secret, its values stay closed.
    expect(() => box.open(sealedBefore, "workspace:a")).toThrow(/WARREN_SECRET_KEY_ACCEPTED/);
  });

  it("derives a different key per purpose", () => {
    expect(keys.derive(KeyPurpose.Variables).equals(keys.derive(KeyPurpose.SessionCookie))).toBe(false);
    expect(keys.derive(KeyPurpose.Variables)).toHaveLength(32);
  });
});

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

  it("derives a different key per purpose", () => {
    expect(keys.derive(KeyPurpose.Variables).equals(keys.derive(KeyPurpose.SessionCookie))).toBe(false);
    expect(keys.derive(KeyPurpose.Variables)).toHaveLength(32);
  });
});

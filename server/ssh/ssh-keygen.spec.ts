import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { utils, type ParsedKey } from "ssh2";
import { describe, expect, it } from "vitest";
import { generateEd25519KeyPair } from "./ssh-keygen.js";

describe("generateEd25519KeyPair", () => {
  it("writes keys that ssh2 reads and that sign and verify, leading zero bytes included", () => {
    // ~1 key in 128 has a public key starting with 0x00: 2000 keys cover that many times.
    for (let i = 0; i < 2000; i++) {
      const pair = generateEd25519KeyPair("warren@test");
      const priv = utils.parseKey(pair.privateKey) as ParsedKey;
      const pub = utils.parseKey(pair.publicKey) as ParsedKey;
      expect(priv).not.toBeInstanceOf(Error);
      expect(pub).not.toBeInstanceOf(Error);
      expect(priv.getPublicSSH().equals(pub.getPublicSSH())).toBe(true);
      const sig = priv.sign(Buffer.from("data"));
      expect(pub.verify(Buffer.from("data"), sig)).toBe(true);
    }
  });

  it("writes keys OpenSSH reads: ssh-keygen derives the same public key", () => {
    const dir = mkdtempSync(join(tmpdir(), "warren-keygen-"));
    const pair = generateEd25519KeyPair("warren@test");
    writeFileSync(join(dir, "k"), pair.privateKey, { mode: 0o600 });
    expect(execFileSync("ssh-keygen", ["-y", "-f", join(dir, "k")], { encoding: "utf8" }).trim()).toBe(pair.publicKey);
  });
});

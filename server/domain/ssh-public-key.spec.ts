import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { utils } from "ssh2";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../test/harness/temp-dirs.js";
import { generateEd25519KeyPair } from "../ssh/ssh-keygen.js";
import { parsePublicKey } from "./ssh-public-key.js";

describe("parsePublicKey", () => {
  it("reads an OpenSSH line and fingerprints it as ssh-keygen does", () => {
    const dir = tempDir("warren-pk-");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "me@laptop", "-f", join(dir, "k")]);
    const line = readFileSync(join(dir, "k.pub"), "utf8");
    const key = parsePublicKey(line);
    const keygen = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", join(dir, "k.pub")], { encoding: "utf8" }).split(" ")[1];
    expect(key.fingerprint).toBe(keygen);
    expect(key.comment).toBe("me@laptop");
    expect(key.line).toBe(line.split(" ").slice(0, 2).join(" "));
    // The wire blob a client presents parses to the same key.
    expect(parsePublicKey(key.blob).fingerprint).toBe(key.fingerprint);
  });

  it("refuses private keys, garbage, several lines and small RSA keys with a message naming the field", () => {
    const pair = generateEd25519KeyPair("");
    expect(() => parsePublicKey(pair.privateKey)).toThrow(/^publicKey: this is a private key/);
    expect(() => parsePublicKey("ssh-ed25519 AAAA")).toThrow(/^publicKey: not an OpenSSH public key/);
    expect(() => parsePublicKey(`${pair.publicKey}\n${pair.publicKey}`)).toThrow(/^publicKey: expected one/);
    const small = utils.generateKeyPairSync("rsa", { bits: 1024 });
    expect(() => parsePublicKey(small.public)).toThrow(/at least 2048 bits/);
    expect(parsePublicKey(utils.generateKeyPairSync("rsa", { bits: 2048 }).public).type).toBe("ssh-rsa");
  });
});

import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../test/harness/temp-dirs.js";
import { loadServerHostKey } from "./server-host-key.js";
import { GENERATED_HOST_KEY_FILE } from "../store/data-dir-files.js";

describe("loadServerHostKey", () => {
  it("generates a key once into the data directory, private to the owner, and reads it back", () => {
    const dataDir = join(tempDir("warren-hk-"), "nested");
    const first = loadServerHostKey({ dataDir });
    expect(first.generated).toBe(true);
    expect(first.type).toBe("ssh-ed25519");
    expect(statSync(join(dataDir, GENERATED_HOST_KEY_FILE)).mode & 0o777).toBe(0o600);
    const second = loadServerHostKey({ dataDir });
    expect(second.generated).toBe(false);
    expect(second.fingerprint).toBe(first.fingerprint);
    expect(readFileSync(join(dataDir, `${GENERATED_HOST_KEY_FILE}.pub`), "utf8")).toMatch(/^ssh-ed25519 /);
  });

  it("names the setting when a key cannot be used", () => {
    const dir = tempDir("warren-hk-");
    writeFileSync(join(dir, "bad"), "nope");
    expect(() => loadServerHostKey({ file: join(dir, "bad"), dataDir: dir })).toThrow(/^WARREN_SSH_HOST_KEY: .* is not a usable SSH host key/);
    writeFileSync(join(dir, "file-not-dir"), "x");
    expect(() => loadServerHostKey({ dataDir: join(dir, "file-not-dir") })).toThrow(/^WARREN_DATA_DIR: cannot write the SSH host key/);
  });
});

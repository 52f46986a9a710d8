import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { utils, type ParsedKey } from "ssh2";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { generateEd25519KeyPair } from "./ssh-keygen.js";
import { fingerprintOf } from "../domain/ssh-public-key.js";
import { GENERATED_HOST_KEY_FILE } from "../store/data-dir-files.js";


export interface ServerHostKey {
  /** The private key as read or generated (OpenSSH or PEM text). */
  readonly privateKey: string;
  readonly type: string;
  readonly fingerprint: string;
  /** Where it came from, for the start-up log line. */
  readonly path: string;
  readonly generated: boolean;
}

export interface ServerHostKeyOptions {
  /** A key file given by the operator (WARREN_SSH_HOST_KEY); wins over the data directory. */
  readonly file?: string;
  /** Where a generated key is kept (WARREN_DATA_DIR). */
  readonly dataDir: string;
}

/**
 * The SSH listener's host key: the operator's file, else the key generated into the data
 * directory on the first start and read from there ever after, so clients' known_hosts stay
 * valid across restarts. Several servers sharing one data directory agree on one key: it is
 * written to a temporary file and hard-linked into place, which fails when another got there
 * first. Throws invalid_argument naming the setting when the key cannot be read or written.
 */
export function loadServerHostKey(options: ServerHostKeyOptions): ServerHostKey {
  if (options.file) return readKey(options.file, "WARREN_SSH_HOST_KEY", false);
  const path = join(options.dataDir, GENERATED_HOST_KEY_FILE);
  if (existsSync(path)) return readKey(path, "WARREN_DATA_DIR", false);
  try {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    const pair = generateEd25519KeyPair("warren-server");
    const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    writeFileSync(tmp, pair.privateKey, { mode: 0o600 });
    try {
      linkSync(tmp, path);
      writeFileSync(`${path}.pub`, `${pair.publicKey}\n`, { mode: 0o644 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    } finally {
      unlinkSync(tmp);
    }
  } catch (err) {
    throw new WarrenError(ErrorCode.InvalidArgument, `WARREN_DATA_DIR: cannot write the SSH host key to ${path}: ${(err as Error).message}`, { cause: err });
  }
  return readKey(path, "WARREN_DATA_DIR", true);
}

function readKey(path: string, setting: string, generated: boolean): ServerHostKey {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new WarrenError(ErrorCode.InvalidArgument, `${setting}: cannot read the SSH host key ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const parsed = utils.parseKey(text);
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
  if (!key || key instanceof Error || !key.isPrivateKey()) {
    const why = key instanceof Error ? key.message : "not a private key";
    throw new WarrenError(ErrorCode.InvalidArgument, `${setting}: ${path} is not a usable SSH host key (${why}); it must be an unencrypted private key in OpenSSH or PEM format`);
  }
  return { privateKey: text, type: key.type, fingerprint: fingerprintOf(key.getPublicSSH()), path, generated };
}

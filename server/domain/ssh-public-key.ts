import { createHash } from "node:crypto";
import { utils, type ParsedKey } from "ssh2";
import { ErrorCode, WarrenError } from "../../shared/errors.js";

/** Key types accepted for logins; DSA is obsolete and refused. */
const ACCEPTED_TYPES = new Set(["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]);
const MIN_RSA_BITS = 2048;

export interface PublicKey {
  readonly type: string;
  /** The SSH wire encoding of the key (what clients present). */
  readonly blob: Buffer;
  /** `<type> <base64>`, without comment. */
  readonly line: string;
  readonly fingerprint: string;
  readonly comment: string;
  readonly parsed: ParsedKey;
}

/** `SHA256:<unpadded base64>` of a key blob, as `ssh-keygen -l` prints it. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/**
 * Parses one OpenSSH public key (an authorized_keys line without options, or a key blob).
 * Throws invalid_argument naming what is wrong.
 */
export function parsePublicKey(input: string | Buffer): PublicKey {
  const text = typeof input === "string" ? input.trim() : input;
  if (typeof text === "string" && text.includes("PRIVATE KEY")) {
    throw new WarrenError(ErrorCode.InvalidArgument, "publicKey: this is a private key; send the .pub file");
  }
  if (typeof text === "string" && (text === "" || text.includes("\n"))) {
    throw new WarrenError(ErrorCode.InvalidArgument, "publicKey: expected one OpenSSH public key line like `ssh-ed25519 AAAA... comment`");
  }
  const parsed = utils.parseKey(text);
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
  if (!key || key instanceof Error) {
    throw new WarrenError(ErrorCode.InvalidArgument, `publicKey: not an OpenSSH public key (${key instanceof Error ? key.message : "empty"})`);
  }
  if (key.isPrivateKey()) throw new WarrenError(ErrorCode.InvalidArgument, "publicKey: this is a private key; send the .pub file");
  if (!ACCEPTED_TYPES.has(key.type)) {
    throw new WarrenError(ErrorCode.InvalidArgument, `publicKey: key type ${key.type} is not accepted (use ssh-ed25519, ecdsa-sha2-* or ssh-rsa)`);
  }
  const blob = key.getPublicSSH();
  if (key.type === "ssh-rsa" && rsaBits(blob) < MIN_RSA_BITS) {
    throw new WarrenError(ErrorCode.InvalidArgument, `publicKey: RSA keys need at least ${MIN_RSA_BITS} bits`);
  }
  return {
    type: key.type,
    blob,
    line: `${key.type} ${blob.toString("base64")}`,
    fingerprint: fingerprintOf(blob),
    comment: key.comment ?? "",
    parsed: key,
  };
}

/** Bits of the RSA modulus in an ssh-rsa blob (string type, mpint e, mpint n). */
function rsaBits(blob: Buffer): number {
  let p = 0;
  const next = (): Buffer => {
    const len = blob.readUInt32BE(p);
    const v = blob.subarray(p + 4, p + 4 + len);
    p += 4 + len;
    return v;
  };
  next();
  next();
  const n = next();
  let i = 0;
  while (i < n.length && n[i] === 0) i++;
  return (n.length - i) * 8;
}

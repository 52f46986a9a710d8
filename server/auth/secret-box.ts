import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { ErrorCode, WarrenError } from "../../shared/errors.js";

const VERSION = "v1";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Authenticated encryption for secrets at rest (workspace variables): AES-256-GCM with a
 * random 96-bit nonce per message. The associated data binds a ciphertext to its owner (the
 * workspace name), so a sealed value copied onto another record does not open.
 * Sealed form: `v1.` + base64url(nonce | tag | ciphertext).
 */
export class SecretBox {
  readonly #key: Buffer;
  /** Keys of earlier secrets: they still open what they sealed; nothing new is sealed with them. */
  readonly #acceptedKeys: readonly Buffer[];

  constructor(key: Buffer, acceptedKeys: readonly Buffer[] = []) {
    if ([key, ...acceptedKeys].some((k) => k.length !== 32)) throw new Error("SecretBox needs 256-bit keys");
    this.#key = key;
    this.#acceptedKeys = acceptedKeys;
  }

  seal(plaintext: string | Buffer, associatedData: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    cipher.setAAD(Buffer.from(associatedData, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return `${VERSION}.${Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64url")}`;
  }

  /** The plaintext; throws internal when the value was not sealed with this key and data. */
  open(sealed: string, associatedData: string): Buffer {
    const dot = sealed.indexOf(".");
    const raw = dot > 0 && sealed.slice(0, dot) === VERSION ? Buffer.from(sealed.slice(dot + 1), "base64url") : undefined;
    if (!raw || raw.length < IV_BYTES + TAG_BYTES) throw cannotOpen();
    for (const key of [this.#key, ...this.#acceptedKeys]) {
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, IV_BYTES));
        decipher.setAAD(Buffer.from(associatedData, "utf8"));
        decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
        return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
      } catch {
        // Not this key: the next one, if any.
      }
    }
    throw cannotOpen();
  }
}

function cannotOpen(): WarrenError {
  return new WarrenError(
    ErrorCode.Internal,
    "cannot decrypt stored secrets: were they written with another WARREN_SECRET_KEY? (every server of a cluster needs the same one; an earlier one goes in WARREN_SECRET_KEY_ACCEPTED)",
  );
}

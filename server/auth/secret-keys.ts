import { hkdfSync, randomBytes } from "node:crypto";

/** What a derived key is for; each purpose gets its own key, so one never unlocks another. */
export const KeyPurpose = {
  Variables: "warren variables v1",
  SessionCookie: "warren session cookie v1",
  OidcTransaction: "warren oidc transaction v1",
  CliLoginCsrf: "warren cli login csrf v1",
} as const;
export type KeyPurpose = (typeof KeyPurpose)[keyof typeof KeyPurpose];

/**
 * Keys derived from the server secret (WARREN_SECRET_KEY) with HKDF-SHA256. Every server of a
 * cluster must share the secret: they read each other's variables and cookies.
 */
export class SecretKeys {
  readonly #secret: Buffer;

  constructor(secret: string) {
    this.#secret = Buffer.from(secret, "utf8");
  }

  /** A 256-bit key for the purpose. */
  derive(purpose: KeyPurpose): Buffer {
    return Buffer.from(hkdfSync("sha256", this.#secret, Buffer.from("warren"), Buffer.from(purpose), 32));
  }
}

/** A secret for servers started without WARREN_SECRET_KEY (their store is in memory anyway). */
export function generateSecretKey(): string {
  return randomBytes(32).toString("base64url");
}

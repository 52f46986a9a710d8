import { createHmac, timingSafeEqual } from "node:crypto";

/** What Warren remembers between sending a browser to the provider and its return. */
export interface OidcTransaction {
  readonly state: string;
  readonly nonce: string;
  readonly codeVerifier: string;
  /** Where the browser goes after sign-in (validated again on return). */
  readonly returnTo: string;
  /** Milliseconds since the epoch. */
  readonly expiresAt: number;
}

/** Name of the cookie that carries the transaction (host-only on the root domain). */
export function transactionCookieName(secure: boolean): string {
  return secure ? "__Host-warren_oidc" : "warren_oidc";
}

/**
 * Seals a transaction into a cookie value: base64url(JSON) "." HMAC-SHA256. Stateless, so any
 * server of a cluster finishes a sign-in another one started; the PKCE verifier is in it, but
 * the cookie is HttpOnly, host-only and useless without the code the provider sends back.
 */
export class TransactionSealer {
  readonly #key: Buffer;
  readonly #now: () => number;

  constructor(options: { key: Buffer; now?: () => number }) {
    this.#key = options.key;
    this.#now = options.now ?? Date.now;
  }

  seal(transaction: OidcTransaction): string {
    const payload = Buffer.from(JSON.stringify(transaction)).toString("base64url");
    return `${payload}.${this.#mac(payload).toString("base64url")}`;
  }

  /** The transaction when the value is authentic and unexpired; else undefined. */
  open(value: string | undefined): OidcTransaction | undefined {
    if (!value || value.length > 4096) return undefined;
    const dot = value.indexOf(".");
    if (dot <= 0) return undefined;
    const payload = value.slice(0, dot);
    const mac = Buffer.from(value.slice(dot + 1), "base64url");
    const expected = this.#mac(payload);
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return undefined;
    let t: Partial<OidcTransaction>;
    try {
      t = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Partial<OidcTransaction>;
    } catch {
      return undefined;
    }
    if (typeof t.state !== "string" || typeof t.nonce !== "string" || typeof t.codeVerifier !== "string") return undefined;
    if (typeof t.returnTo !== "string" || typeof t.expiresAt !== "number" || t.expiresAt <= this.#now()) return undefined;
    return t as OidcTransaction;
  }

  #mac(payload: string): Buffer {
    return createHmac("sha256", this.#key).update(`warren-oidc.${payload}`).digest();
  }
}

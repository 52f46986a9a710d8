import type { TokenRecord } from "../domain/records.js";
import type { TokenStore } from "../domain/store.js";

/**
 * Access-token records for the request path: every request of a browser session or a script
 * carries a token, and asking Redis each time would put a round trip on every request. Records
 * are kept for `ttlMs`; a revocation reaches every server as a cluster event and drops the
 * record at once (invalidate), so revocation still takes effect within the event's delivery.
 * Missing tokens are not cached (a token created on another server works at once).
 */
export class TokenCache {
  readonly #store: Pick<TokenStore, "getToken">;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, { record: TokenRecord; at: number }>();
  readonly #maxEntries: number;
  /** Bumped by invalidate(): a read that started before it does not store what it read. */
  #generation = 0;

  constructor(options: { store: Pick<TokenStore, "getToken">; ttlMs?: number; maxEntries?: number; now?: () => number }) {
    this.#store = options.store;
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#maxEntries = options.maxEntries ?? 50_000;
    this.#now = options.now ?? Date.now;
  }

  /** The token's record, from memory when fresh; rejects only when the store fails. */
  async getToken(id: string): Promise<TokenRecord | undefined> {
    const entry = this.#entries.get(id);
    if (entry && this.#now() - entry.at < this.#ttlMs) return entry.record;
    const generation = this.#generation;
    const record = await this.#store.getToken(id);
    if (generation === this.#generation) {
      this.#entries.delete(id);
      if (record) {
        this.#entries.set(id, { record, at: this.#now() });
        if (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
      }
    }
    return record;
  }

  /** Forgets every record (the store may have lost data). Never blocks. */
  clear(): void {
    this.#entries.clear();
    this.#generation++;
  }

  /** The token was revoked: forget it. Never blocks. */
  invalidate(id: string): void {
    this.#entries.delete(id);
    this.#generation++;
  }
}

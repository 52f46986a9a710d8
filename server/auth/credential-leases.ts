/**
 * Credential leases: every long-lived thing (agent connection, WebSocket, spliced client
 * connection, SSH session) holds a lease on the credential that opened it, and is closed when
 * that credential is revoked or expires, or when its workspace incarnation is terminated or
 * deleted. Revocations reach every server as cluster events (server/events); this module is
 * the one place that maps them to what must close.
 *
 * Registration is made atomic with respect to revocation by its callers: register first, then
 * re-check the credential in the store. A revocation marks the store before it announces
 * itself, so either the re-check sees it, or the announcement finds the lease.
 */

/** What a long-lived thing was opened with. Every field present is checked independently. */
export interface LeaseCredentials {
  /** Id of the token (agent or access token) that opened it. */
  readonly tokenId?: string | undefined;
  /** The workspace incarnation it belongs to (WorkspaceRecord id, never the name). */
  readonly workspaceId?: string | undefined;
  /** When the credential expires (ms since the epoch); the lease closes then. */
  readonly expiresAt?: number | undefined;
  /**
   * Re-reads the credential: resolves false when it is gone (revoked, expired, its workspace
   * replaced), true when it still holds. A rejection means "cannot tell now" and keeps the lease.
   */
  readonly stillValid?: (() => Promise<boolean>) | undefined;
}

/** Closes the thing; called at most once, with a reason a person can read. Must not throw. */
export type LeaseCloser = (reason: string) => void;

export interface LeaseHandle {
  /** The thing ended on its own: forget the lease. Idempotent; never blocks. */
  release(): void;
  /** Whether the lease was ended by a revocation or expiry (the closer ran). */
  readonly revoked: boolean;
}

export interface CredentialLeasesOptions {
  readonly now?: () => number;
  /** How often expiry is checked; a lease closes at most this long after its credential expires. */
  readonly expiryCheckMs?: number;
  /** Re-validations running at once (each is one or two store reads). */
  readonly revalidateConcurrency?: number;
}

class Lease implements LeaseHandle {
  #done = false;
  #revoked = false;

  constructor(
    readonly credentials: LeaseCredentials,
    readonly close: LeaseCloser,
    readonly owner: CredentialLeases,
  ) {}

  get revoked(): boolean {
    return this.#revoked;
  }

  get done(): boolean {
    return this.#done;
  }

  release(): void {
    if (this.#done) return;
    this.#done = true;
    this.owner.forget(this);
  }

  /** Ends the lease by revocation: forgets it, then closes the thing. */
  end(reason: string): boolean {
    if (this.#done) return false;
    this.#revoked = true;
    this.release();
    try {
      this.close(reason);
    } catch {
      // A closer that throws must not stop the others from closing.
    }
    return true;
  }
}

/** Every lease this server holds, indexed by token id and workspace id. */
export class CredentialLeases {
  readonly #byToken = new Map<string, Set<Lease>>();
  readonly #byWorkspace = new Map<string, Set<Lease>>();
  readonly #all = new Set<Lease>();
  readonly #expiring = new Set<Lease>();
  readonly #now: () => number;
  readonly #expiryCheckMs: number;
  readonly #concurrency: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: CredentialLeasesOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#expiryCheckMs = options.expiryCheckMs ?? 250;
    this.#concurrency = options.revalidateConcurrency ?? 32;
  }

  get size(): number {
    return this.#all.size;
  }

  /** Starts the expiry clock (the server does; unit specs call expireDue() themselves). */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.expireDue(), this.#expiryCheckMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Holds a lease for `credentials` until release() or revocation. A credential already
   * expired closes at once (the closer runs in a microtask, after register returns).
   */
  register(credentials: LeaseCredentials, close: LeaseCloser): LeaseHandle {
    const lease = new Lease(credentials, close, this);
    this.#all.add(lease);
    if (credentials.tokenId) addTo(this.#byToken, credentials.tokenId, lease);
    if (credentials.workspaceId) addTo(this.#byWorkspace, credentials.workspaceId, lease);
    if (credentials.expiresAt !== undefined) {
      this.#expiring.add(lease);
      if (credentials.expiresAt <= this.#now()) queueMicrotask(() => lease.end("the credential expired"));
    }
    return lease;
  }

  /** A token was revoked (or replaced): closes what it opened. Resolves nothing; returns how many closed. */
  revokeToken(tokenId: string, reason: string): number {
    return this.#endAll(this.#byToken.get(tokenId), reason);
  }

  /** A workspace incarnation was terminated or deleted: closes everything of it. */
  revokeWorkspace(workspaceId: string, reason: string): number {
    return this.#endAll(this.#byWorkspace.get(workspaceId), reason);
  }

  /** Closes the leases whose credential has expired by now. Never blocks. */
  expireDue(): number {
    const now = this.#now();
    let n = 0;
    for (const lease of [...this.#expiring]) {
      if (lease.credentials.expiresAt! <= now && lease.end("the credential expired")) n++;
    }
    return n;
  }

  /**
   * Re-reads every credential that can be re-read (after the store may have lost data, or
   * periodically) and closes the leases whose credential is gone. Resolves with how many
   * closed; never rejects (a check that fails keeps its lease until the next pass).
   */
  async revalidate(): Promise<number> {
    const pending = [...this.#all].filter((l) => l.credentials.stillValid);
    let closed = 0;
    const worker = async () => {
      for (let lease = pending.shift(); lease; lease = pending.shift()) {
        if (lease.done) continue;
        let valid = true;
        try {
          valid = await lease.credentials.stillValid!();
        } catch {
          valid = true;
        }
        if (!valid && lease.end("the credential is no longer valid")) closed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, pending.length) }, worker));
    return closed;
  }

  /** Called by a lease as it ends. */
  forget(lease: Lease): void {
    this.#all.delete(lease);
    this.#expiring.delete(lease);
    const { tokenId, workspaceId } = lease.credentials;
    if (tokenId) removeFrom(this.#byToken, tokenId, lease);
    if (workspaceId) removeFrom(this.#byWorkspace, workspaceId, lease);
  }

  #endAll(leases: Set<Lease> | undefined, reason: string): number {
    if (!leases) return 0;
    let n = 0;
    for (const lease of [...leases]) if (lease.end(reason)) n++;
    return n;
  }
}

function addTo(index: Map<string, Set<Lease>>, key: string, lease: Lease): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(lease);
}

function removeFrom(index: Map<string, Set<Lease>>, key: string, lease: Lease): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(lease);
  if (set.size === 0) index.delete(key);
}

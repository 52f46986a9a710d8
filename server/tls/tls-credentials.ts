import { readFileSync, watchFile, unwatchFile } from "node:fs";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";

/** Anything that can swap its certificate for new connections (https.Server, Http2SecureServer). */
export interface SecureContextHolder {
  setSecureContext(options: SecureContextOptions): void;
}

/**
 * The server's certificate and key, read from files and re-read when they change on disk
 * (cert-manager, certbot), so renewals need no restart. New connections get the new
 * certificate; open ones keep theirs.
 */
export class TlsCredentials {
  readonly #certFile: string;
  readonly #keyFile: string;
  readonly #log: Logger;
  readonly #holders: SecureContextHolder[] = [];
  #options: SecureContextOptions;
  #watching = false;

  constructor(options: { certFile: string; keyFile: string; log: Logger }) {
    this.#certFile = options.certFile;
    this.#keyFile = options.keyFile;
    this.#log = options.log;
    this.#options = this.#load();
  }

  /** Current certificate and key, for creating a server. */
  get options(): SecureContextOptions {
    return this.#options;
  }

  /** Servers whose certificate follows the files. */
  attach(holder: SecureContextHolder): void {
    this.#holders.push(holder);
  }

  /** Polls the files (works across the atomic renames that secret mounts use). */
  watch(intervalMs = 2000): void {
    if (this.#watching) return;
    this.#watching = true;
    const onChange = () => this.reload();
    watchFile(this.#certFile, { interval: intervalMs, persistent: false }, onChange);
    watchFile(this.#keyFile, { interval: intervalMs, persistent: false }, onChange);
  }

  stop(): void {
    unwatchFile(this.#certFile);
    unwatchFile(this.#keyFile);
    this.#watching = false;
  }

  /** Re-reads the files; keeps the current certificate when the new pair is unusable. */
  reload(): void {
    let next: SecureContextOptions;
    try {
      next = this.#load();
    } catch (err) {
      // A renewal may write the certificate and the key one after the other: the next poll retries.
      this.#log.warn({ err: (err as Error).message }, "TLS certificate change not applied");
      return;
    }
    this.#options = next;
    for (const holder of this.#holders) holder.setSecureContext(next);
    this.#log.info({ cert: this.#certFile }, "TLS certificate reloaded");
  }

  #load(): SecureContextOptions {
    let cert: Buffer;
    let key: Buffer;
    try {
      cert = readFileSync(this.#certFile);
      key = readFileSync(this.#keyFile);
    } catch (err) {
      throw new WarrenError(ErrorCode.InvalidArgument, `WARREN_TLS_CERT, WARREN_TLS_KEY: cannot read the files: ${(err as Error).message}`);
    }
    const options = { cert, key };
    try {
      createSecureContext(options);
    } catch (err) {
      throw new WarrenError(ErrorCode.InvalidArgument, `WARREN_TLS_CERT, WARREN_TLS_KEY: the certificate and key do not form a usable pair: ${(err as Error).message}`);
    }
    return options;
  }
}

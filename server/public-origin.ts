import { ErrorCode, WarrenError } from "../shared/errors.js";

/**
 * The public origin workspace URLs, login redirects and install scripts are built from:
 * WARREN_PUBLIC_URL when set, else the root domain on the port the HTTP listener bound, so
 * it is known only once that listener listens.
 */
export class PublicOrigin {
  readonly #rootDomain: string;
  #base: string | undefined;

  constructor(options: { publicUrl: string | undefined; rootDomain: string }) {
    this.#rootDomain = options.rootDomain;
    this.#base = options.publicUrl;
  }

  /** Called once the public listener listens: the origin is the root domain on that port, unless configured. */
  listening(port: number, tls: boolean): string {
    if (this.#base === undefined) {
      const defaultPort = tls ? 443 : 80;
      this.#base = `${tls ? "https" : "http"}://${this.#rootDomain}${port === defaultPort ? "" : `:${port}`}`;
    }
    return this.#base;
  }

  get known(): boolean {
    return this.#base !== undefined;
  }

  /** The origin (no trailing slash); an error before the listener listens, when nothing could have asked. */
  get base(): string {
    if (this.#base === undefined) {
      throw new WarrenError(ErrorCode.Internal, "the public URL was read before the HTTP listener listened (set WARREN_PUBLIC_URL, or read it after start)");
    }
    return this.#base;
  }
}

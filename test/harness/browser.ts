import http from "node:http";

/** A cookie as a browser keeps it: host-only unless a Domain attribute says otherwise. */
export interface StoredCookie {
  readonly name: string;
  readonly value: string;
  readonly host: string;
  readonly attributes: Record<string, string | true>;
}

export interface BrowserResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly url: string;
}

/**
 * A tiny browser for tests: a cookie jar (host-only cookies, Max-Age=0 deletes) and requests
 * to the Warren listener with the Host header of the URL (names under *.localhost need no DNS).
 */
export class Browser {
  readonly cookies: StoredCookie[] = [];
  readonly #port: number;

  constructor(listenerPort: number) {
    this.#port = listenerPort;
  }

  /** The Cookie header this browser would send to `host`. */
  cookieHeader(host: string): string | undefined {
    const list = this.cookies.filter((c) => c.host === host || (typeof c.attributes["domain"] === "string" && host.endsWith(String(c.attributes["domain"]))));
    return list.length > 0 ? list.map((c) => `${c.name}=${c.value}`).join("; ") : undefined;
  }

  setCookie(host: string, name: string, value: string): void {
    this.#store(host, `${name}=${value}`);
  }

  async request(url: string, options: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<BrowserResponse> {
    const u = new URL(url);
    const headers: Record<string, string> = { host: u.host, accept: "text/html,application/xhtml+xml", ...options.headers };
    const cookie = this.cookieHeader(u.hostname);
    if (cookie) headers["cookie"] = cookie;
    if (options.body !== undefined) headers["content-type"] ??= "application/x-www-form-urlencoded";
    const res = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port: this.#port, method: options.method ?? "GET", path: `${u.pathname}${u.search}`, headers, agent: false },
        (r) => {
          let body = "";
          r.setEncoding("utf8").on("data", (c: string) => (body += c));
          r.on("end", () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body }));
        },
      );
      req.on("error", reject);
      req.end(options.body);
    });
    for (const line of res.headers["set-cookie"] ?? []) this.#store(u.hostname, line);
    return { ...res, url };
  }

  /** Follows redirects like a browser (303 and 302 become GET), up to `max` hops. */
  async navigate(url: string, options: { method?: string; body?: string; max?: number } = {}): Promise<{ final: BrowserResponse; hops: BrowserResponse[] }> {
    const hops: BrowserResponse[] = [];
    let res = await this.request(url, options);
    hops.push(res);
    for (let i = 0; i < (options.max ?? 10) && res.status >= 300 && res.status < 400; i++) {
      res = await this.request(new URL(String(res.headers.location), res.url).toString());
      hops.push(res);
    }
    return { final: res, hops };
  }

  #store(host: string, line: string): void {
    const [pair, ...attrs] = line.split(";").map((p) => p.trim());
    const eq = pair!.indexOf("=");
    const name = pair!.slice(0, eq);
    const value = pair!.slice(eq + 1);
    const attributes: Record<string, string | true> = {};
    for (const a of attrs) {
      const i = a.indexOf("=");
      if (i < 0) attributes[a.toLowerCase()] = true;
      else attributes[a.slice(0, i).toLowerCase()] = a.slice(i + 1);
    }
    const at = this.cookies.findIndex((c) => c.name === name && c.host === host);
    if (at >= 0) this.cookies.splice(at, 1);
    if (attributes["max-age"] === "0") return;
    this.cookies.push({ name, value, host, attributes });
  }
}

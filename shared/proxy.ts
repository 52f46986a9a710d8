import net from "node:net";

/**
 * HTTP proxies as curl and most tools read them: HTTPS_PROXY for https:// targets, HTTP_PROXY
 * for http:// ones (lower-case names win, as in curl), NO_PROXY for hosts to reach directly.
 * Warren tunnels through the proxy with HTTP CONNECT, so the same works for the agent's
 * long-lived HTTP/2 connection and the CLI's requests; credentials come from the proxy URL.
 */

/** The proxy to use for `target`, or undefined to connect directly. Throws on an unusable proxy URL. */
export function proxyFor(target: URL, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  const names = target.protocol === "https:" ? ["https_proxy", "HTTPS_PROXY"] : ["http_proxy", "HTTP_PROXY"];
  const raw = names.map((n) => env[n]?.trim()).find((v) => v);
  if (!raw) return undefined;
  if (bypassed(target, env["no_proxy"] ?? env["NO_PROXY"] ?? "")) return undefined;
  let proxy: URL;
  try {
    // A bare host:port is common in these variables: it means http://host:port.
    proxy = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new Error(`the proxy address "${raw}" (${names[1]}) is not a URL: write it as http://[user:password@]host:port`);
  }
  if (proxy.protocol !== "http:") {
    throw new Error(`the proxy ${proxy.protocol}//${proxy.host} (${names[1]}) is not supported: only http:// proxies (HTTP CONNECT) are`);
  }
  return proxy;
}

/** Whether NO_PROXY names the target: `*`, a host, a domain (and its subdomains), optionally with a port. */
export function bypassed(target: URL, noProxy: string): boolean {
  const host = target.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const port = target.port || (target.protocol === "https:" ? "443" : "80");
  for (const entry of noProxy.split(/[\s,]+/).filter(Boolean)) {
    if (entry === "*") return true;
    let [name, entryPort] = [entry.toLowerCase(), ""];
    const m = /^(.*?)(?::(\d+))?$/.exec(name.startsWith("[") ? name.replace(/^\[(.*)\]/, "$1") : name);
    if (m && !net.isIPv6(name)) [name, entryPort] = [m[1]!, m[2] ?? ""];
    if (entryPort && entryPort !== port) continue;
    name = name.replace(/^\*?\./, "");
    if (host === name || host.endsWith(`.${name}`)) return true;
  }
  return false;
}

/** The proxy's address for messages: never its credentials. */
export function describeProxy(proxy: URL): string {
  return `${proxy.protocol}//${proxy.host}`;
}

/** The proxy said no, or could not be reached: a message that says which and what to check. */
export class ProxyError extends Error {
  override readonly name = "ProxyError";
}

/** Opens a TCP tunnel to host:port through the proxy (HTTP CONNECT); resolves once the proxy answers 2xx. */
export function openTunnel(proxy: URL, host: string, port: number): Promise<net.Socket> {
  const where = describeProxy(proxy);
  const authority = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: proxy.hostname.replace(/^\[|\]$/g, ""), port: Number(proxy.port || 80), noDelay: true });
    let head = Buffer.alloc(0);
    const fail = (message: string) => {
      socket.destroy();
      reject(new ProxyError(message));
    };
    socket.once("connect", () => {
      const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
      if (proxy.username || proxy.password) {
        const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
        lines.push(`Proxy-Authorization: Basic ${Buffer.from(credentials).toString("base64")}`);
      }
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    });
    socket.on("error", (err: NodeJS.ErrnoException) => fail(`cannot reach the proxy ${where}: ${err.code ?? err.message}`));
    socket.on("close", () => fail(`the proxy ${where} closed the connection before answering CONNECT ${authority}`));
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (head.length > 16 * 1024) fail(`the proxy ${where} sent an answer too long to be HTTP`);
        return;
      }
      socket.off("data", onData);
      socket.removeAllListeners("close");
      socket.removeAllListeners("error");
      const status = /^HTTP\/1\.[01] (\d{3}) ?([^\r\n]*)/.exec(head.subarray(0, end).toString("latin1"));
      if (!status) return fail(`the proxy ${where} did not answer CONNECT with HTTP: is it an HTTP proxy?`);
      const code = Number(status[1]);
      if (code < 200 || code > 299) {
        const hint =
          code === 407 || code === 401
            ? proxy.username
              ? ": it did not accept the user and password in the proxy URL"
              : ": it wants a user and password (http://user:password@host:port in HTTPS_PROXY)"
            : code === 403
              ? `: its rules do not allow ${authority}`
              : "";
        return fail(`the proxy ${where} refused CONNECT ${authority} (${code} ${status[2]!.trim()})${hint}`);
      }
      const rest = head.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    socket.on("data", onData);
  });
}

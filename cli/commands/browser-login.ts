import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { ApiClient } from "../api-client.js";
import { openBrowser } from "./open-browser.js";

/** What the server hands the CLI for a completed browser login: a new access token of the user. */
export interface BrowserLoginResult {
  readonly token: string;
  readonly id: string;
  readonly user: string;
  readonly expireTime: string;
}

export interface BrowserLoginOptions {
  /** The server's root URL, as given to `warren login --server`. */
  readonly server: string;
  /** False (`--no-browser`): only print the URL to open. */
  readonly openBrowser: boolean;
  /** Label of the token created (`warren token list` shows it). */
  readonly tokenName: string;
  /** Tells the person what to do (stderr). */
  readonly say: (text: string) => void;
  /** Ends the wait (another way of logging in won). */
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const CALLBACK_PATH = "/callback";

/**
 * `warren login` through the browser (RFC 8252's loopback redirect with PKCE): listens on
 * 127.0.0.1 on a free port, opens the server's confirmation page, and waits for the browser to
 * come back with a one-time code and the state it was sent with; the code and the verifier
 * only this process knows buy a new access token.
 */
export async function loginThroughBrowser(options: BrowserLoginOptions): Promise<BrowserLoginResult> {
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const state = randomBytes(24).toString("base64url");
  const loopback = http.createServer();
  await new Promise<void>((resolve, reject) => {
    loopback.once("error", (err: NodeJS.ErrnoException) => reject(new Error(`cannot listen on 127.0.0.1 for the browser's answer: ${err.code ?? err.message}`)));
    loopback.listen(0, "127.0.0.1", resolve);
  });
  const redirectUri = `http://127.0.0.1:${(loopback.address() as AddressInfo).port}${CALLBACK_PATH}`;
  const page = new URL("/-/cli-login", options.server);
  page.search = new URLSearchParams({ redirect_uri: redirectUri, state, code_challenge: challenge, code_challenge_method: "S256", name: options.tokenName }).toString();
  const url = page.toString();

  try {
    return await new Promise<BrowserLoginResult>((resolve, reject) => {
      let settled = false;
      const settle = (err: Error | undefined, result?: BrowserLoginResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(result!);
      };
      const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const timer = setTimeout(() => settle(new Error(`no answer from the browser within ${Math.round(timeoutMs / 60_000)} minutes; run warren login again`)), timeoutMs);
      const onAbort = () => settle(new Error("browser login abandoned"));
      options.signal?.addEventListener("abort", onAbort);

      loopback.on("request", (req, res) => {
        const at = new URL(req.url ?? "/", "http://127.0.0.1");
        if (at.pathname !== CALLBACK_PATH) return answer(res, 404, "Not found", "This is the warren CLI waiting for a login.");
        if (settled) return answer(res, 410, "This login is over", "Run <code>warren login</code> again if you need to.");
        if (!sameText(at.searchParams.get("state") ?? "", state)) {
          answer(res, 400, "Login refused", "The answer does not belong to the login this terminal started (its state does not match). Nothing was saved.");
          return settle(new Error("the browser came back with a state that does not match this login (an answer to someone else's login page?); nothing was saved; run warren login again"));
        }
        const error = at.searchParams.get("error");
        if (error) {
          answer(res, 200, "Login denied", "You denied the login. Nothing was saved; you can close this tab.");
          return settle(new Error(error === "access_denied" ? "the login was denied in the browser" : `the server refused the login: ${error.slice(0, 100)}`));
        }
        const code = at.searchParams.get("code") ?? "";
        new ApiClient({ server: options.server })
          .post<BrowserLoginResult>("/-/cli-login/token", { code, code_verifier: verifier, redirect_uri: redirectUri })
          .then(
            (result) => {
              answer(res, 200, "Logged in", `The warren CLI is logged in as <strong>${escapeHtml(result.user)}</strong>. You can close this tab and go back to the terminal.`);
              settle(undefined, result);
            },
            (err: Error) => {
              answer(res, 400, "Login failed", escapeHtml(err.message));
              settle(err);
            },
          );
      });

      if (!options.openBrowser) {
        options.say(`Open this URL in a browser to log in:\n  ${url}\n`);
        return;
      }
      void openBrowser(url).then((opened) =>
        options.say(opened ? `Opening a browser to log in; if none opens, go to:\n  ${url}\n` : `Open this URL in a browser to log in:\n  ${url}\n`),
      );
    });
  } finally {
    loopback.close();
    loopback.closeIdleConnections();
  }
}

function answer(res: http.ServerResponse, status: number, title: string, body: string): void {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1><p>${body}</p></body></html>\n`;
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "content-length": String(Buffer.byteLength(html)),
    "content-security-policy": "default-src 'none'",
    "cache-control": "no-store",
    connection: "close",
  });
  res.end(html);
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BrowserContext, Page } from "playwright-core";
import { freePort } from "./harness/apps.js";
import { launchChromium } from "./harness/chromium.js";
import { oidcServerEnv, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, TestOidcProvider } from "./harness/oidc-provider.js";
import { ROOT_DOMAIN, startServer, type ServerHandle } from "./harness/warren.js";

/**
 * Each way a single sign-on can go wrong gets a page that says what happened, and no
 * session: the dashboard still sends the browser to the login page afterwards.
 */
describe("single sign-on failures", () => {
  let provider: TestOidcProvider;
  let server: ServerHandle;
  let chromium: Awaited<ReturnType<typeof launchChromium>>;
  const root = () => `http://${ROOT_DOMAIN}:${server.httpPort}`;
  const redirectUri = () => `${root()}/-/oidc/callback`;

  beforeAll(async () => {
    provider = new TestOidcProvider();
    await provider.listen();
    server = await startServer(
      oidcServerEnv(provider, {
        WARREN_SECRET_KEY: "oidc-failures-test-secret-0123456789abcdef",
      }),
    );
    provider.configure({ redirectUri: redirectUri() });
    chromium = await launchChromium();
  });

  afterAll(async () => {
    await chromium?.close();
    await server?.stop();
    await provider?.close();
  });

  /** Starts a sign-in and submits the provider's form; resolves once the browser is back at Warren. */
  async function signIn(p: Page, user: string): Promise<void> {
    await p.goto(`${root()}/-/login/oidc?return_to=${encodeURIComponent(`${root()}/`)}`);
    await p.locator('input[name="login"]').fill(user);
    await p.locator('input[name="password"]').fill("any password");
    await Promise.all([p.waitForURL((url) => url.host === `${ROOT_DOMAIN}:${server.httpPort}`), p.getByRole("button", { name: "Sign-in" }).click()]);
  }

  /** No session: the root domain sends the browser to the login page. */
  async function expectNoSession(context: BrowserContext): Promise<void> {
    const names = (await context.cookies(root())).map((c) => c.name);
    expect(names).not.toContain("warren_session");
    const p = await context.newPage();
    await p.goto(`${root()}/`);
    expect(new URL(p.url()).pathname).toBe("/-/login");
    await p.close();
  }

  async function failurePage(p: Page): Promise<string> {
    await p.getByRole("heading", { name: "Sign-in failed" }).waitFor();
    return (await p.getByRole("alert").textContent()) ?? "";
  }

  it("signs in a member of an allowed group (the baseline for the failures below)", async () => {
    const context = await chromium.context();
    const p = await context.newPage();
    await signIn(p, "alice");
    await p.getByRole("heading", { name: "Workspaces", level: 1 }).waitFor();
    await context.close();
  });

  it("refuses a callback whose state is not the one this browser started with", async () => {
    const context = await chromium.context();
    const p = await context.newPage();
    // The sign-in starts (state cookie set), then an answer meant for another sign-in arrives.
    await p.goto(`${root()}/-/login/oidc?return_to=${encodeURIComponent(`${root()}/`)}`);
    await p.locator('input[name="login"]').waitFor();
    const response = await p.goto(`${redirectUri()}?code=stolen-code&state=someone-elses-state&iss=${encodeURIComponent(provider.issuer)}`);
    expect(response?.status()).toBe(401);
    expect(await failurePage(p)).toMatch(/state mismatch/);
    await expectNoSession(context);
    await context.close();
  });

  it("refuses a callback without a sign-in started in this browser", async () => {
    const context = await chromium.context();
    const p = await context.newPage();
    const response = await p.goto(`${redirectUri()}?code=x&state=y`);
    expect(response?.status()).toBe(401);
    expect(await failurePage(p)).toMatch(/not started in this browser/);
    await expectNoSession(context);
    await context.close();
  });

  it("refuses a reused authorization code", async () => {
    const context = await chromium.context();
    const p = await context.newPage();
    let callback: { url: string; cookie: string } | undefined;
    p.on("request", (req) => {
      if (req.url().startsWith(redirectUri())) {
        void req.allHeaders().then((headers) => (callback = { url: req.url(), cookie: headers["cookie"] ?? "" }));
      }
    });
    await signIn(p, "alice");
    await p.getByRole("heading", { name: "Workspaces", level: 1 }).waitFor();
    expect(callback?.cookie).toMatch(/warren_oidc=/);
    // The same answer again, with the transaction cookie it came with (an attacker who copied both).
    const replay = await get(server.httpPort, callback!.url, callback!.cookie.replace(/(^|; )warren_session=[^;]*/, ""));
    expect(replay.status).toBe(401);
    expect(replay.body).toMatch(/already used or has expired/);
    expect(String(replay.headers["set-cookie"] ?? "")).not.toMatch(/warren_session=[^;]/);
    await context.close();
  });

  it("refuses a user outside WARREN_OIDC_ALLOWED_GROUPS", async () => {
    const context = await chromium.context();
    const p = await context.newPage();
    await signIn(p, "carol");
    expect(await failurePage(p)).toMatch(/"carol" is not a member of a group allowed to use Warren \(developers\)/);
    await expectNoSession(context);
    await context.close();
  });

  it("refuses an ID token whose signature does not verify against the provider's JWKS", async () => {
    // Same issuer and key id, another key: what Warren already fetched no longer verifies.
    provider.configure({ redirectUri: redirectUri() });
    const context = await chromium.context();
    const p = await context.newPage();
    await signIn(p, "alice");
    expect(await failurePage(p)).toMatch(/signature does not verify/);
    await expectNoSession(context);
    await context.close();
  });

  it("refuses an expired ID token", async () => {
    // A provider whose clock is two hours behind signs a token that expired long ago.
    provider.configure({ redirectUri: redirectUri(), kid: "key-2", clockSkewSeconds: -7200 });
    const context = await chromium.context();
    const p = await context.newPage();
    await signIn(p, "alice");
    expect(await failurePage(p)).toMatch(/ID token has expired or is not valid yet/);
    await expectNoSession(context);
    await context.close();
  });

  it("says so when the identity provider is down, and starts nonetheless", async () => {
    const down = await freePort();
    const other = await startServer({
      WARREN_OIDC_ISSUER: `http://127.0.0.1:${down}`,
      WARREN_OIDC_CLIENT_ID: OIDC_CLIENT_ID,
      WARREN_OIDC_CLIENT_SECRET: OIDC_CLIENT_SECRET,
      WARREN_SECRET_KEY: "oidc-failures-test-secret-0123456789abcdef",
    });
    try {
      const context = await chromium.context();
      const p = await context.newPage();
      const otherRoot = `http://${ROOT_DOMAIN}:${other.httpPort}`;
      await p.goto(`${otherRoot}/-/login?return_to=${encodeURIComponent(`${otherRoot}/`)}`);
      const [response] = await Promise.all([p.waitForResponse((r) => r.url().startsWith(`${otherRoot}/-/login/oidc`)), p.getByRole("link", { name: "Sign in with single sign-on" }).click()]);
      expect(response.status()).toBe(503);
      expect(await failurePage(p)).toMatch(new RegExp(`cannot reach the identity provider at http://127.0.0.1:${down}`));
      // The token form still works as a way in.
      await p.goto(`${otherRoot}/-/login?return_to=${encodeURIComponent(`${otherRoot}/`)}`);
      await p.getByLabel("Access token").waitFor();
      await context.close();
    } finally {
      await other.stop();
    }
  });
});

/** A GET to Warren's listener with the Host of the URL, as a browser would send it. */
function get(port: number, url: string, cookie: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: `${u.pathname}${u.search}`, headers: { host: u.host, cookie, accept: "text/html" }, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

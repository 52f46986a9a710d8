import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startApp, type App } from "./harness/apps.js";
import { Browser } from "./harness/browser.js";
import { callApi, httpRequest, ROOT_DOMAIN, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/** The browser login flow, with a cookie jar, from the redirect to the app's answer. */
describe("browser login", () => {
  let server: ServerHandle;
  let app: App;
  let aliceToken: string;
  let aliceTokenId: string;
  let bobToken: string;
  const agents: AgentHandle[] = [];
  const root = () => `http://${ROOT_DOMAIN}:${server.httpPort}`;
  const wsUrl = (workspace: string, path = "/") => `http://${workspaceHost(workspace, app.port)}:${server.httpPort}${path}`;

  beforeAll(async () => {
    // The app shows what reached it: Warren's cookie and token must not.
    app = await startApp(
      (req, res) => res.end(JSON.stringify({ url: req.url, cookie: req.headers.cookie ?? null, token: req.headers["x-warren-token"] ?? null })),
      { webSocketEcho: true },
    );
    server = await startServer({ WARREN_LOGIN_CODE_TTL: "1s", WARREN_SECRET_KEY: "browser-login-test-secret-0123456789abcdef" });
    for (const name of ["alice", "bob"]) await callApi(server, "UserService/CreateUser", { name });
    const alice = await callApi<{ token: string; id: string }>(server, "UserService/CreateAccessToken", { user: "alice", ttlSeconds: 3600 });
    aliceToken = alice.body.token;
    aliceTokenId = alice.body.id;
    bobToken = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "bob", ttlSeconds: 3600 })).body.token;
    for (const name of ["alpha", "beta"]) {
      const res = await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name, ports: [{ port: app.port }] }, aliceToken);
      agents.push(await startAgent(server, res.body.agentToken));
    }
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.stop();
    await app?.close();
  });

  /** Logs in on the login page with a token; returns the hops up to the app's answer. */
  async function login(browser: Browser, workspace: string, token: string, path = "/deep/page?x=1") {
    const first = await browser.request(wsUrl(workspace, path));
    expect(first.status).toBe(302);
    const loginUrl = new URL(String(first.headers.location));
    expect(loginUrl.origin).toBe(root());
    expect(loginUrl.pathname).toBe("/-/login");
    expect(loginUrl.searchParams.get("return_to")).toBe(wsUrl(workspace, path));
    const page = await browser.request(loginUrl.toString());
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(page.body).toContain('action="/-/login/token"');
    const form = new URLSearchParams({ token, return_to: wsUrl(workspace, path) }).toString();
    return browser.navigate(`${root()}/-/login/token`, { method: "POST", body: form });
  }

  it("takes a browser from the redirect through login to the app, with a host-only signed cookie", async () => {
    const browser = new Browser(server.httpPort);
    browser.setCookie(workspaceHost("alpha", app.port), "app_pref", "dark");
    const { final, hops } = await login(browser, "alpha", aliceToken);
    // POST -> 303 to the callback with a one-time code -> 303 to the page -> the app.
    expect(hops.map((h) => h.status)).toEqual([303, 303, 200]);
    const callback = new URL(String(hops[0]!.headers.location));
    expect(callback.host).toBe(`${workspaceHost("alpha", app.port)}:${server.httpPort}`);
    expect(callback.pathname).toBe("/.warren/callback");
    expect(callback.searchParams.get("code")).toMatch(/^wlc_/);
    expect(hops[1]!.headers.location).toBe("/deep/page?x=1");
    const setCookie = String(hops[1]!.headers["set-cookie"]);
    expect(setCookie).toMatch(/^warren_session=[^;]+; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Lax$/);
    expect(setCookie).not.toMatch(/Domain/i);
    const seen = JSON.parse(final.body) as { url: string; cookie: string | null; token: string | null };
    expect(seen.url).toBe("/deep/page?x=1");
    // The app gets its own cookies, never Warren's.
    expect(seen.cookie).toBe("app_pref=dark");
    expect(seen.token).toBeNull();
    // The cookie works for WebSocket upgrades too, and is stripped there as well.
    const first = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/`, {
        headers: { host: workspaceHost("alpha", app.port), cookie: browser.cookieHeader(workspaceHost("alpha", app.port))! },
      });
      ws.on("message", (d: Buffer) => {
        resolve(d.toString());
        ws.close();
      });
      ws.on("unexpected-response", (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
      ws.on("error", reject);
    });
    expect(JSON.parse(first)).toEqual({ hello: workspaceHost("alpha", app.port) });
  });

  it("refuses the cookie of workspace A on workspace B's host", async () => {
    const browser = new Browser(server.httpPort);
    await login(browser, "alpha", aliceToken);
    const cookieForA = browser.cookieHeader(workspaceHost("alpha", app.port))!;
    expect(cookieForA).toMatch(/^warren_session=/);
    // Same owner, so only the host binding can refuse it.
    const replayed = await httpRequest({ port: server.httpPort, host: workspaceHost("beta", app.port), headers: { cookie: cookieForA } });
    expect(replayed.status).toBe(401);
    const asBrowser = await httpRequest({ port: server.httpPort, host: workspaceHost("beta", app.port), headers: { cookie: cookieForA, accept: "text/html" } });
    expect(asBrowser.status).toBe(302);
    expect(asBrowser.headers.location).toMatch(/\/-\/login\?return_to=/);
    // A tampered cookie is refused too.
    // (a character of the payload changes; the signature no longer matches)
    const at = "warren_session=".length + 2;
    const forged = `${cookieForA.slice(0, at)}${cookieForA[at] === "A" ? "B" : "A"}${cookieForA.slice(at + 1)}`;
    expect((await httpRequest({ port: server.httpPort, host: workspaceHost("alpha", app.port), headers: { cookie: forged } })).status).toBe(401);
  });

  it("refuses a login code that was used already or has expired", async () => {
    const browser = new Browser(server.httpPort);
    const { hops } = await login(browser, "alpha", aliceToken);
    const callbackUrl = new URL(String(hops[0]!.headers.location));
    const again = await new Browser(server.httpPort).request(callbackUrl.toString());
    expect(again.status).toBe(401);
    expect(again.body).toMatch(/login code is invalid, expired or already used/);
    expect(again.headers["set-cookie"]).toBeUndefined();

    // A fresh code, left to expire (the server's code lifetime is 1 s here).
    const second = new Browser(server.httpPort);
    const res = await second.request(`${root()}/-/login/token`, {
      method: "POST",
      body: new URLSearchParams({ token: aliceToken, return_to: wsUrl("alpha") }).toString(),
    });
    expect(res.status).toBe(303);
    await new Promise((r) => setTimeout(r, 1200));
    const late = await second.request(new URL(String(res.headers.location)).toString());
    expect(late.status).toBe(401);
    expect(late.body).toMatch(/login code is invalid, expired or already used/);
    // A code is bound to its host: redeemed on another workspace's host it is refused.
    const third = await new Browser(server.httpPort).request(`${root()}/-/login/token`, {
      method: "POST",
      body: new URLSearchParams({ token: aliceToken, return_to: wsUrl("alpha") }).toString(),
    });
    const stolen = new URL(String(third.headers.location));
    stolen.hostname = workspaceHost("beta", app.port);
    expect((await new Browser(server.httpPort).request(stolen.toString())).status).toBe(401);
  });

  it("reaches a second workspace without a second login, and logs out", async () => {
    const browser = new Browser(server.httpPort);
    await login(browser, "alpha", aliceToken);
    // The root domain's own session mints the code at once: no form this time.
    const { final, hops } = await browser.navigate(wsUrl("beta", "/b"));
    expect(hops.map((h) => h.status)).toEqual([302, 303, 303, 200]);
    expect(JSON.parse(final.body).url).toBe("/b");
    const rootCookie = browser.cookies.find((c) => c.host === ROOT_DOMAIN)!;
    expect(rootCookie.attributes["httponly"]).toBe(true);
    expect(rootCookie.attributes["domain"]).toBeUndefined();

    const out = await browser.navigate(wsUrl("alpha", "/.warren/logout"));
    expect(out.final.status).toBe(200);
    expect(out.final.body).toMatch(/logged out/i);
    expect(browser.cookieHeader(workspaceHost("alpha", app.port))).toBeUndefined();
    expect(browser.cookieHeader(ROOT_DOMAIN)).toBeUndefined();
    const after = await browser.request(wsUrl("alpha"));
    expect(after.status).toBe(302);
  });

  it("shows the login page again for a wrong token, and sends nobody else's user into a workspace", async () => {
    const browser = new Browser(server.httpPort);
    const res = await browser.request(`${root()}/-/login/token`, {
      method: "POST",
      body: new URLSearchParams({ token: "wut_0123456789abcdefAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", return_to: wsUrl("alpha") }).toString(),
    });
    expect(res.status).toBe(401);
    expect(res.body).toMatch(/token is invalid, expired or revoked/);
    expect(res.body).toContain('action="/-/login/token"');
    // Bob logs in fine, but alpha is Alice's: it answers like a workspace that does not exist.
    const { final } = await login(browser, "alpha", bobToken);
    expect(final.status).toBe(404);
    // A browser gets the page, curl the line: both say the same, nothing more.
    expect(final.headers["content-type"]).toMatch(/^text\/html/);
    expect(final.body).toContain("workspace &quot;alpha&quot; not found");
  });

  it("never redirects anywhere but a workspace of this server", async () => {
    const browser = new Browser(server.httpPort);
    for (const target of [
      "http://evil.example.com/",
      `http://${ROOT_DOMAIN}:${server.httpPort + 1}/`,
      `https://${ROOT_DOMAIN}:${server.httpPort}/`,
      `https://${workspaceHost("alpha", app.port)}:${server.httpPort}/`,
      "/relative",
    ]) {
      const res = await browser.request(`${root()}/-/login?return_to=${encodeURIComponent(target)}`);
      expect(res.status, target).toBe(400);
      expect(res.body).toMatch(/return_to/);
    }
    // The dashboard (this server's own root origin) is a place to come back to.
    expect((await browser.request(`${root()}/-/login?return_to=${encodeURIComponent(`${root()}/`)}`)).status).toBe(200);
    const crossSite = await browser.request(`${root()}/-/login/token`, {
      method: "POST",
      body: new URLSearchParams({ token: aliceToken, return_to: wsUrl("alpha") }).toString(),
      headers: { origin: "http://evil.example.com" },
    });
    expect(crossSite.status).toBe(403);
    // The callback only ever redirects to a path on its own host.
    const fresh = await new Browser(server.httpPort).request(`${root()}/-/login/token`, {
      method: "POST",
      body: new URLSearchParams({ token: aliceToken, return_to: wsUrl("alpha") }).toString(),
    });
    const freshCallback = new URL(String(fresh.headers.location));
    freshCallback.searchParams.set("path", "//evil.example.com/");
    const redirected = await new Browser(server.httpPort).request(freshCallback.toString());
    expect(redirected.status).toBe(303);
    expect(redirected.headers.location).toBe("/");
  });

  /** A fresh login callback URL for alpha (a one-time code), as the login form answers it. */
  async function freshCallback(): Promise<URL> {
    const posted = await new Browser(server.httpPort).request(`${root()}/-/login/token`, {
      method: "POST",
      body: new URLSearchParams({ token: aliceToken, return_to: wsUrl("alpha") }).toString(),
    });
    expect(posted.status).toBe(303);
    return new URL(String(posted.headers.location));
  }

  it("never redirects off-site from the callback for a path of /%09/evil.example/ (browsers strip the tab: open redirect)", async () => {
    for (const path of ["/\t/evil.example/", "/\n/evil.example/", "/\\evil.example/", "/ /evil.example/"]) {
      const callback = await freshCallback();
      callback.searchParams.set("path", path);
      const res = await new Browser(server.httpPort).request(callback.toString());
      expect(res.status, JSON.stringify(path)).toBe(303);
      const location = String(res.headers.location);
      // Resolved against the workspace host as a browser would: it stays there.
      expect(new URL(location, wsUrl("alpha")).host, JSON.stringify(path)).toBe(`${workspaceHost("alpha", app.port)}:${server.httpPort}`);
    }
  });

  it("answers a callback path of /%0a/x with a redirect on this host, not a 500 after the cookie is set", async () => {
    const callback = await freshCallback();
    callback.searchParams.set("path", "/\n/x?y=1");
    const res = await new Browser(server.httpPort).request(callback.toString());
    expect(res.status).toBe(303);
    // Browsers drop the line break (//x?y=1 would be another host): back to the root of this one.
    expect(String(res.headers.location)).toBe("/");
    expect(String(res.headers["set-cookie"])).toMatch(/^warren_session=/);
  });

  it("refuses a login form posted with Origin: null (a sandboxed cross-site frame: login CSRF)", async () => {
    const res = await new Browser(server.httpPort).request(`${root()}/-/login/token`, {
      method: "POST",
      body: new URLSearchParams({ token: aliceToken, return_to: wsUrl("alpha") }).toString(),
      headers: { origin: "null" },
    });
    expect(res.status).toBe(403);
    expect(res.headers["set-cookie"]).toBeUndefined();
  });

  it("ends browser sessions when their access token is revoked", async () => {
    const created = await callApi<{ token: string; id: string }>(server, "UserService/CreateAccessToken", { user: "alice", ttlSeconds: 600 });
    const browser = new Browser(server.httpPort);
    const { final } = await login(browser, "alpha", created.body.token);
    expect(final.status).toBe(200);
    expect(created.body.id).not.toBe(aliceTokenId);
    await callApi(server, "UserService/RevokeAccessToken", { id: created.body.id });
    const after = await browser.request(wsUrl("alpha"), { headers: { accept: "*/*" } });
    expect(after.status).toBe(401);
  });

  it("marks cookies Secure with the __Host- prefix under TLS", async () => {
    // The public URL says https (TLS ends at a load balancer); this test still speaks plain HTTP.
    const tls = await startServer({ WARREN_PUBLIC_URL: "https://warren.localhost" });
    try {
      const res = await callApi<{ agentToken: string }>(tls, "WorkspaceService/CreateWorkspace", { name: "sec", ports: [{ port: app.port }] });
      expect(res.status).toBe(200);
      const browser = new Browser(tls.httpPort);
      const posted = await browser.request(`http://${ROOT_DOMAIN}/-/login/token`, {
        method: "POST",
        body: new URLSearchParams({ token: tls.adminToken, return_to: `https://${workspaceHost("sec", app.port)}/` }).toString(),
      });
      expect(posted.status).toBe(303);
      expect(String(posted.headers["set-cookie"])).toMatch(/^__Host-warren_session=[^;]+; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Lax; Secure$/);
      const callback = await browser.request(String(posted.headers.location));
      expect(callback.status).toBe(303);
      expect(String(callback.headers["set-cookie"])).toMatch(/^__Host-warren_session=.*; Secure$/);
    } finally {
      await tls.stop();
    }
  });
});

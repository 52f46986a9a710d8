import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BrowserContext, Page } from "playwright-core";
import { freePort, type App } from "./harness/apps.js";
import { launchChromium, seriousAccessibilityViolations } from "./harness/chromium.js";
import { clientKey, keygenFingerprint } from "./harness/sshd.js";
import { oidcServerEnv, TestOidcProvider } from "./harness/oidc-provider.js";
import { callApi, httpRequest, ROOT_DOMAIN, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/**
 * The dashboard in Debian's Chromium, signed in through a real OpenID provider: what a person
 * sees and does on the root domain, and on workspace hosts afterwards.
 */
describe("dashboard with single sign-on", () => {
  let provider: TestOidcProvider;
  let server: ServerHandle;
  let chromium: Awaited<ReturnType<typeof launchChromium>>;
  let alice: BrowserContext;
  let page: Page;
  const agents: AgentHandle[] = [];
  const apps: App[] = [];
  const root = () => `http://${ROOT_DOMAIN}:${server.httpPort}`;
  const wsUrl = (workspace: string, port: number) => `http://${workspaceHost(workspace, port)}:${server.httpPort}/`;

  beforeAll(async () => {
    provider = new TestOidcProvider();
    await provider.listen();
    server = await startServer(
      oidcServerEnv(provider, {
        WARREN_OIDC_ADMIN_GROUPS: "warren-admins",
        WARREN_SECRET_KEY: "dashboard-test-secret-0123456789abcdef",
      }),
    );
    provider.configure({ redirectUri: `${root()}/-/oidc/callback` });
    chromium = await launchChromium();
    alice = await chromium.context();
    page = await alice.newPage();
  });

  afterAll(async () => {
    await chromium?.close();
    for (const a of agents) await a.stop();
    for (const a of apps) await a.close();
    await server?.stop();
    await provider?.close();
  });

  /** Signs in at the provider's own form; the browser lands on the dashboard. */
  async function signIn(p: Page, user: string): Promise<void> {
    await p.goto(`${root()}/`);
    expect(new URL(p.url()).pathname).toBe("/-/login");
    await p.getByRole("link", { name: "Sign in with single sign-on" }).click();
    await p.locator('input[name="login"]').fill(user);
    await p.locator('input[name="password"]').fill("any password");
    await Promise.all([p.waitForURL(`${root()}/`), p.getByRole("button", { name: "Sign-in" }).click()]);
    await p.getByRole("heading", { name: "Workspaces", level: 1 }).waitFor();
  }

  const card = (p: Page, name: string) => p.locator(`[data-workspace="${name}"]`);

  it("signs in through the provider, creates a workspace, and shows the agent command once", async () => {
    await signIn(page, "alice");
    await expect(page.locator("header").textContent()).resolves.toContain("alice");
    // A user made by the admin before, to check that alice sees only her own workspaces.
    await callApi(server, "UserService/CreateUser", { name: "dave" });
    await callApi(server, "WorkspaceService/CreateWorkspace", { name: "daves", ports: [{ port: 8000 }], owner: "dave" });

    await page.getByLabel("Name", { exact: true }).first().fill("alpha");
    await page.getByLabel("Private ports").fill("8000");
    await page.getByLabel("Time to live").selectOption({ label: "8 hours" });
    await page.getByRole("button", { name: "Create workspace" }).click();
    const command = await page.locator("#agent-command").textContent();
    expect(command).toMatch(/^WARREN_SERVER=http:\/\/127\.0\.0\.1:\d+ WARREN_TOKEN=wat_\S+ \.\/warren-agent run -- /);
    await expect(page.locator("#install-command").textContent()).resolves.toBe(`curl -fsSL ${root()}/-/agent/install.sh | sh`);
    await card(page, "alpha").waitFor();
    expect(await page.locator("[data-workspace]").evaluateAll((els) => els.map((e) => e.getAttribute("data-workspace")))).toEqual(["alpha"]);
    const owned = await callApi<{ workspace: { owner: string; expireTime: string } }>(server, "WorkspaceService/GetWorkspace", { name: "alpha" });
    expect(owned.body.workspace.owner).toBe("alice");
    expect(owned.body.workspace.expireTime).toBeTruthy();
  });

  it("follows stop and start from the page, and opens the workspace without another login", async () => {
    const appPort = await freePort();
    const created = await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "beta", ports: [{ port: appPort }], owner: "alice" });
    const workload = `require("http").createServer((q, s) => s.end("hello from the app")).listen(${appPort}, "127.0.0.1")`;
    agents.push(await startAgent(server, created.body.agentToken, { args: ["run", "--", process.execPath, "-e", workload] }));
    await card(page, "beta").locator('[data-actual="Running"]').waitFor();
    await card(page, "beta").getByRole("button", { name: "Stop beta", exact: true }).click();
    await card(page, "beta").locator('[data-actual="Stopped"]').waitFor();
    await card(page, "beta").getByRole("button", { name: "Start beta", exact: true }).click();
    await card(page, "beta").locator('[data-actual="Running"]').waitFor();

    const tab = await alice.newPage();
    await tab.goto(wsUrl("beta", appPort));
    expect(new URL(tab.url()).host).toBe(`${workspaceHost("beta", appPort)}:${server.httpPort}`);
    // The workload reports Running as it starts; its app may listen a moment later (the 502
    // page then retries by itself).
    await tab.getByText("hello from the app").waitFor();
    await tab.close();
  });

  it("shows a 502 page that turns into the app once the app listens", async () => {
    const port = await freePort();
    const created = await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "gamma", ports: [{ port }], owner: "alice" });
    agents.push(await startAgent(server, created.body.agentToken));
    const tab = await alice.newPage();
    const first = await tab.goto(wsUrl("gamma", port));
    expect(first?.status()).toBe(502);
    await tab.getByRole("heading", { name: `Nothing is listening on port ${port} yet` }).waitFor();
    expect(await seriousAccessibilityViolations(tab)).toEqual([]);
    const real = await startAppOn(port);
    apps.push(real);
    await tab.getByText("gamma is up on its port").waitFor({ timeout: 20_000 });
    await tab.close();
  });

  it("passes axe-core, fits a phone, and stays under 100 KB", async () => {
    const phone = await chromium.context({ viewport: { width: 360, height: 740 } });
    await phone.addCookies(await alice.cookies(root()));
    const p = await phone.newPage();
    const response = await p.goto(`${root()}/`);
    await card(p, "alpha").waitFor();
    expect((await response!.body()).length).toBeLessThan(100 * 1024);
    expect(await seriousAccessibilityViolations(p)).toEqual([]);
    expect(await p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")).toBe(true);
    // Keyboard: the first workspace's controls are reached with Tab.
    await p.getByRole("link", { name: "Open alpha" }).focus();
    await p.keyboard.press("Tab");
    expect(await p.evaluate("document.activeElement.getAttribute('aria-label')")).toBe("Stop alpha");
    await phone.close();
  });

  it("shows a second user none of the first user's workspaces", async () => {
    const bob = await chromium.context();
    const p = await bob.newPage();
    await signIn(p, "bob");
    await p.getByText("No workspaces yet").waitFor();
    expect(await p.locator("[data-workspace]").count()).toBe(0);
    // The API says the same with bob's session: alice's workspace does not exist for him.
    const probe = await p.evaluate(`fetch("/warren.v1.WorkspaceService/GetWorkspace", { method: "POST", headers: { "content-type": "application/json", "x-warren-csrf": "1" }, body: '{"name":"alpha"}' }).then((r) => r.status)`);
    expect(probe).toBe(404);
    await bob.close();
  });

  it("regression: the token form refused every real browser (its pages said no-referrer, so Chromium posted Origin: null)", async () => {
    const ctx = await chromium.context();
    const p = await ctx.newPage();
    await p.goto(`${root()}/`);
    await p.getByLabel("Access token").fill(server.adminToken);
    await Promise.all([p.waitForURL(`${root()}/`), p.getByRole("button", { name: "Log in" }).click()]);
    await p.getByRole("heading", { name: "Workspaces", level: 1 }).waitFor();
    await ctx.close();
  });

  it("regression: signed in with the admin token, the page showed 'user: required with the admin token' (it listed SSH keys without naming the user)", async () => {
    const ctx = await chromium.context();
    const p = await ctx.newPage();
    await p.goto(`${root()}/`);
    await p.getByLabel("Access token").fill(server.adminToken);
    await Promise.all([p.waitForURL(`${root()}/`), p.getByRole("button", { name: "Log in" }).click()]);
    await p.getByRole("heading", { name: "Workspaces", level: 1 }).waitFor();
    // The page has asked for everything it shows (workspaces, tokens, keys) once a second has passed.
    await p.waitForTimeout(1500);
    expect(await p.locator("#live.error").allTextContents()).toEqual([]);
    await ctx.close();
  });

  it("regression: signing out left the single sign-on session's token alive, so a copied cookie kept working", async () => {
    const bob = await chromium.context();
    const p = await bob.newPage();
    await signIn(p, "bob");
    const cookie = (await bob.cookies(root())).map((c) => `${c.name}=${c.value}`).join("; ");
    const listWithCopiedCookie = () =>
      httpRequest({
        port: server.httpPort,
        host: `${ROOT_DOMAIN}:${server.httpPort}`,
        method: "POST",
        path: "/warren.v1.WorkspaceService/ListWorkspaces",
        headers: { cookie, "content-type": "application/json", "x-warren-csrf": "1" },
        body: "{}",
      });
    expect((await listWithCopiedCookie()).status).toBe(200);
    await p.getByRole("link", { name: "Sign out" }).click();
    await p.getByText("You are logged out of Warren.").waitFor();
    const after = await listWithCopiedCookie();
    expect(after.status).toBe(401);
    await bob.close();
  });

  it("shows an admin of the admin groups every workspace and the users", async () => {
    const admin = await chromium.context();
    const p = await admin.newPage();
    await signIn(p, "root");
    await card(p, "daves").waitFor();
    await card(p, "alpha").waitFor();
    await p.getByRole("heading", { name: "Users" }).waitFor();
    await p.locator("#users").getByText("alice").waitFor();
    await admin.close();
  });

  it("creates and revokes access tokens and adds and removes SSH keys from the page", async () => {
    await page.getByLabel("Name", { exact: true }).nth(1).fill("laptop");
    await page.getByRole("button", { name: "Create token" }).click();
    const token = (await page.locator("#new-token").textContent())!;
    expect(token).toMatch(/^wut_/);
    expect((await callApi(server, "WorkspaceService/ListWorkspaces", {}, token)).status).toBe(200);
    page.once("dialog", (d) => void d.accept());
    await page.locator("#tokens tr", { hasText: "laptop" }).getByRole("button", { name: "Revoke token laptop" }).click();
    await page.locator("#tokens tr", { hasText: "laptop" }).waitFor({ state: "detached" });
    expect((await callApi(server, "WorkspaceService/ListWorkspaces", {}, token)).status).toBe(401);

    const key = clientKey();
    await page.getByLabel("Public key").fill(key.publicKey);
    await page.getByLabel("Title").fill("work laptop");
    await page.getByRole("button", { name: "Add key" }).click();
    await page.locator("#keys").getByText(keygenFingerprint(`${key.file}.pub`)).waitFor();
    page.once("dialog", (d) => void d.accept());
    await page.getByRole("button", { name: "Remove key work laptop" }).click();
    await page.locator("#keys tr").first().waitFor({ state: "detached" });
  });

  it("starts a stopped workspace from its page through the dashboard", async () => {
    await callApi(server, "WorkspaceService/CreateWorkspace", { name: "paused", ports: [{ port: 8000 }], owner: "alice" });
    await callApi(server, "WorkspaceService/StopWorkspace", { name: "paused" });
    const tab = await alice.newPage();
    const res = await tab.goto(wsUrl("paused", 8000));
    expect(res?.status()).toBe(503);
    await tab.getByRole("heading", { name: "Workspace paused is stopped" }).waitFor();
    await tab.getByRole("link", { name: "Start paused" }).click();
    await tab.locator("#start-confirm").click();
    await card(tab, "paused").locator('[data-desired="Running"]').waitFor();
    await tab.close();
  });

  it("refuses API calls with the session cookie but without the CSRF header", async () => {
    const status = await page.evaluate(`fetch("/warren.v1.WorkspaceService/ListWorkspaces", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }).then((r) => r.status)`);
    expect(status).toBe(401);
  });

  it("revokes the session's token from the page, which ends the session on every host", async () => {
    page.once("dialog", (d) => void d.accept());
    const row = page.locator("#tokens tr", { hasText: "this session" });
    await row.getByRole("button", { name: /^Revoke token/ }).click();
    await page.waitForURL(/\/-\/login\?/);
    const tab = await alice.newPage();
    await tab.goto(wsUrl("beta", Number(new URL((await callApi<{ workspace: { urls: string[] } }>(server, "WorkspaceService/GetWorkspace", { name: "beta" })).body.workspace.urls[0]!).hostname.split("-")[0])));
    expect(new URL(tab.url()).pathname).toBe("/-/login");
    await tab.close();
  });
});

async function startAppOn(port: number): Promise<App> {
  const http = await import("node:http");
  const server = http.createServer((_req, res) => res.end("gamma is up on its port"));
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    port,
    server,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Browser } from "./harness/browser.js";
import { launchChromium } from "./harness/chromium.js";
import { CLI, cliEnv, cliHome, runCli, spawnCli } from "./harness/cli.js";
import { oidcServerEnv, TestOidcProvider } from "./harness/oidc-provider.js";
import { callApi, eventually, httpRequest, ROOT_DOMAIN, startServer, type ServerHandle } from "./harness/warren.js";

/** One Chromium for the file (2-core CI). */
let chromium: Awaited<ReturnType<typeof launchChromium>>;
beforeAll(async () => {
  chromium = await launchChromium();
});
afterAll(async () => {
  await chromium?.close();
});

/** `warren login` through the browser: loopback redirect, PKCE, a new token of the user's own. */
describe("warren login through the browser", () => {
  let server: ServerHandle;
  let context: BrowserContext;
  let aliceToken: string;
  const root = () => `http://${ROOT_DOMAIN}:${server.httpPort}`;
  const home = cliHome;

  beforeAll(async () => {
    server = await startServer();
    await callApi(server, "UserService/CreateUser", { name: "alice" });
    aliceToken = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "alice", ttlSeconds: 3600 })).body.token;
    context = await chromium.context();
  });

  afterAll(async () => {
    await context?.close();
    await server?.stop();
  });

  /** Starts `warren login` and returns the URL it asks to open, and its end. */
  async function startLogin(dir: string, extra: string[] = [], env: Record<string, string> = {}) {
    const child = spawnCli(dir, ["login", "--server", root(), ...extra], env);
    child.stdin!.end();
    const exit = new Promise<number | null>((resolve) => child.once("exit", resolve));
    let url = "";
    await eventually(() => {
      url = /^ {2}(http\S+)$/m.exec(child.output())?.[1] ?? "";
      return url !== "";
    }, 10_000, "the login URL");
    return { url, exit, output: () => child.output() };
  }

  /** Goes through the login page if the browser has no session yet; stops on the confirmation page. */
  async function toConfirmation(page: Page, url: string): Promise<void> {
    await page.goto(url);
    if (new URL(page.url()).pathname === "/-/login") {
      await page.locator('input[name="token"]').fill(aliceToken);
      await page.getByRole("button", { name: "Log in" }).click();
    }
    await page.getByRole("heading", { name: "Sign in the warren CLI?" }).waitFor();
  }

  it("logs in through the page the CLI opens: sign in, allow, and the CLI saves a new token of the user's own", async () => {
    const dir = home();
    const login = await startLogin(dir, ["--no-browser"]);
    expect(login.output()).toContain("Open this URL in a browser to log in:");
    const page = await context.newPage();
    await page.goto(login.url);
    // No session yet: the ordinary login page first, then back to the confirmation.
    expect(new URL(page.url()).pathname).toBe("/-/login");
    await page.locator('input[name="token"]').fill(aliceToken);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { name: "Sign in the warren CLI?" }).waitFor();
    expect(await page.locator("main").innerText()).toContain("asks to sign in as alice");
    await page.getByRole("button", { name: "Allow" }).click();
    await page.getByRole("heading", { name: "Logged in" }).waitFor();
    expect(await page.locator("body").innerText()).toContain("logged in as alice");
    expect(new URL(page.url()).hostname).toBe("127.0.0.1");
    await page.close();

    expect(await login.exit).toBe(0);
    const path = join(dir, ".config", "warren", "config.json");
    expect(login.output()).toContain(`Logged in to ${root()} as user alice; saved to ${path}`);
    const saved = JSON.parse(readFileSync(path, "utf8")) as { server: string; token: string };
    expect(saved.server).toBe(root());
    expect(saved.token).toMatch(/^wut_/);
    expect(saved.token).not.toBe(aliceToken);

    const me = await runCli(dir, ["whoami"]);
    expect(me.code).toBe(0);
    expect(me.stdout).toMatch(new RegExp(`^user alice on ${root()} \\(token expires in \\d+d\\)\\n$`));
    const tokens = await runCli(dir, ["token", "list", "--json"]);
    const current = (JSON.parse(tokens.stdout) as Array<{ name?: string; current?: boolean }>).find((t) => t.current);
    expect(current?.name).toMatch(/^warren login on /);
  });

  it("opens the page with $BROWSER; denying it in the browser ends the login with nothing saved", async () => {
    const dir = home();
    const opened = join(dir, "opened-url");
    const browserScript = join(dir, "browser");
    writeFileSync(browserScript, `#!/bin/sh\nprintf '%s' "$1" > ${opened}\n`);
    chmodSync(browserScript, 0o755);
    const login = await startLogin(dir, [], { BROWSER: browserScript });
    expect(login.output()).toContain("Opening a browser to log in");
    await eventually(() => existsSync(opened) && readFileSync(opened, "utf8") === login.url, 5000, "$BROWSER started with the URL");
    const page = await context.newPage();
    await toConfirmation(page, login.url);
    await page.getByRole("button", { name: "Deny" }).click();
    await page.getByRole("heading", { name: "Login denied" }).waitFor();
    await page.close();
    expect(await login.exit).toBe(1);
    expect(login.output()).toContain("warren: the login was denied in the browser\n");
    expect(existsSync(join(dir, ".config", "warren", "config.json"))).toBe(false);
  });

  it("refuses an answer with another state: the CLI says so and saves nothing", async () => {
    const dir = home();
    const login = await startLogin(dir, ["--no-browser"]);
    const forged = new URL(login.url);
    forged.searchParams.set("state", randomBytes(24).toString("base64url"));
    const page = await context.newPage();
    await toConfirmation(page, forged.toString());
    await page.getByRole("button", { name: "Allow" }).click();
    await page.getByRole("heading", { name: "Login refused" }).waitFor();
    await page.close();
    expect(await login.exit).toBe(1);
    expect(login.output()).toContain("warren: the browser came back with a state that does not match this login");
    expect(existsSync(join(dir, ".config", "warren", "config.json"))).toBe(false);
  });

  /** Plays the CLI's part by hand: a loopback listener that keeps the code the browser brings. */
  async function codeFromBrowser(challenge: string): Promise<{ code: string; redirectUri: string }> {
    let got!: (code: string) => void;
    const code = new Promise<string>((resolve) => (got = resolve));
    const loopback = http.createServer((req, res) => {
      got(new URL(req.url ?? "/", "http://x").searchParams.get("code") ?? "");
      res.end("ok");
    });
    await new Promise<void>((resolve) => loopback.listen(0, "127.0.0.1", resolve));
    const redirectUri = `http://127.0.0.1:${(loopback.address() as AddressInfo).port}/cb`;
    const url = new URL("/-/cli-login", root());
    url.search = new URLSearchParams({ redirect_uri: redirectUri, state: "s".repeat(20), code_challenge: challenge, code_challenge_method: "S256" }).toString();
    const page = await context.newPage();
    await toConfirmation(page, url.toString());
    await page.getByRole("button", { name: "Allow" }).click();
    const value = await code;
    await page.close();
    loopback.close();
    return { code: value, redirectUri };
  }

  const exchange = (body: Record<string, string>) =>
    httpRequest({ port: server.httpPort, host: `${ROOT_DOMAIN}:${server.httpPort}`, method: "POST", path: "/-/cli-login/token", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then(
      (r) => ({ status: r.status, body: JSON.parse(r.body.toString()) as { message?: string; token?: string; user?: string } }),
    );

  it("a code works once, only with its PKCE verifier and redirect_uri", async () => {
    const verifier = randomBytes(32).toString("base64url");
    const challenge = createHash("sha256").update(verifier).digest("base64url");

    const first = await codeFromBrowser(challenge);
    const wrongVerifier = await exchange({ code: first.code, code_verifier: randomBytes(32).toString("base64url"), redirect_uri: first.redirectUri });
    expect(wrongVerifier).toMatchObject({ status: 403, body: { message: expect.stringContaining("code_verifier does not match") } });
    // Spent by the failed try: the right verifier comes too late.
    const afterFailure = await exchange({ code: first.code, code_verifier: verifier, redirect_uri: first.redirectUri });
    expect(afterFailure).toEqual({ status: 401, body: { code: "unauthenticated", message: "login code is invalid, expired or already used; run warren login again" } });

    const second = await codeFromBrowser(challenge);
    const otherRedirect = await exchange({ code: second.code, code_verifier: verifier, redirect_uri: "http://127.0.0.1:1/cb" });
    expect(otherRedirect).toMatchObject({ status: 403, body: { message: expect.stringContaining("redirect_uri does not match") } });

    const third = await codeFromBrowser(challenge);
    const ok = await exchange({ code: third.code, code_verifier: verifier, redirect_uri: third.redirectUri });
    expect(ok).toMatchObject({ status: 200, body: { user: "alice", token: expect.stringMatching(/^wut_/) } });
    const replay = await exchange({ code: third.code, code_verifier: verifier, redirect_uri: third.redirectUri });
    expect(replay).toMatchObject({ status: 401, body: { message: "login code is invalid, expired or already used; run warren login again" } });
  });

  it("accepts only loopback redirect URIs", async () => {
    const page = (redirectUri: string) => {
      const q = new URLSearchParams({ redirect_uri: redirectUri, state: "s".repeat(20), code_challenge: "c".repeat(43) });
      return httpRequest({ port: server.httpPort, host: `${ROOT_DOMAIN}:${server.httpPort}`, path: `/-/cli-login?${q}` });
    };
    for (const bad of ["http://evil.example/cb", "https://127.0.0.1:8000/cb", "http://127.0.0.1.evil.example/cb", "http://user@127.0.0.1:9/cb", "http://10.0.0.1:9/cb", "javascript:alert(1)"]) {
      const res = await page(bad);
      expect(res.status, bad).toBe(400);
      expect(res.body.toString(), bad).toContain("redirect_uri: only a loopback address is accepted");
    }
    // Loopback, any port: on to the login page (no session here).
    for (const good of ["http://127.0.0.1:53682/cb", "http://[::1]:9/x", "http://localhost:7/"]) {
      const res = await page(good);
      expect(res.status, good).toBe(302);
      expect(String(res.headers.location), good).toMatch(new RegExp(`^${root()}/-/login\\?return_to=`));
    }
  });

  it("refuses a confirmation posted from another site or without the page's CSRF field", async () => {
    const browser = new Browser(server.httpPort);
    const signIn = await browser.request(`${root()}/-/login/token`, { method: "POST", body: new URLSearchParams({ token: aliceToken, return_to: `${root()}/` }).toString() });
    expect(signIn.status).toBe(303);
    const fields = { redirect_uri: "http://127.0.0.1:9/cb", state: "s".repeat(20), code_challenge: "c".repeat(43), code_challenge_method: "S256", name: "x", decision: "allow" };
    const crossSite = await browser.request(`${root()}/-/cli-login`, { method: "POST", body: new URLSearchParams({ ...fields, csrf: "x" }).toString(), headers: { origin: "http://evil.example" } });
    expect(crossSite.status).toBe(403);
    expect(crossSite.body).toContain("confirmation posted from another site");
    const noCsrf = await browser.request(`${root()}/-/cli-login`, { method: "POST", body: new URLSearchParams({ ...fields, csrf: "forged" }).toString(), headers: { origin: root() } });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body).toContain("CSRF check");
    expect(noCsrf.headers.location).toBeUndefined();
  });

  it("on a terminal, a token can be pasted instead, and it is not echoed", async () => {
    const dir = home();
    // `script` gives the CLI a terminal; what the terminal shows comes back on its stdout.
    const command = [process.execPath, CLI, "login", "--server", root(), "--no-browser"].map((a) => `'${a}'`).join(" ");
    const child = spawn("script", ["-qfec", command, "/dev/null"], { env: cliEnv(dir), stdio: ["pipe", "pipe", "pipe"] });
    let screen = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (screen += c));
    const exit = new Promise<number | null>((resolve) => child.once("exit", resolve));
    await eventually(() => screen.includes("paste an access token here (not shown as you type): "), 10_000, "the prompt");
    child.stdin.write(`${aliceToken}\r`);
    expect(await exit).toBe(0);
    child.stdin.end();
    expect(screen).toContain("Logged in to");
    expect(screen).not.toContain(aliceToken);
    expect(screen).not.toContain(aliceToken.slice(4, 20));
    expect(JSON.parse(readFileSync(join(dir, ".config", "warren", "config.json"), "utf8"))).toEqual({ server: root(), token: aliceToken });
  });
});

/** The same flow with single sign-on as the way of signing in (oidc-provider). */
describe("warren login through the browser, signing in with single sign-on", () => {
  let provider: TestOidcProvider;
  let server: ServerHandle;
  let home: string;
  const root = () => `http://${ROOT_DOMAIN}:${server.httpPort}`;

  beforeAll(async () => {
    provider = new TestOidcProvider();
    await provider.listen();
    server = await startServer(
      oidcServerEnv(provider, {
        WARREN_SECRET_KEY: "cli-login-test-secret-0123456789abcdef",
      }),
    );
    provider.configure({ redirectUri: `${root()}/-/oidc/callback` });
    home = cliHome();
  });

  afterAll(async () => {
    await server?.stop();
    await provider?.close();
  });

  it("signs in at the identity provider, comes back to the confirmation, and the CLI gets a token of that user", async () => {
    const child = spawnCli(home, ["login", "--server", root(), "--no-browser"]);
    child.stdin!.end();
    const exit = new Promise<number | null>((resolve) => child.once("exit", resolve));
    let url = "";
    await eventually(() => (url = /^ {2}(http\S+)$/m.exec(child.output())?.[1] ?? "") !== "", 10_000, "the login URL");
    const context = await chromium.context();
    const page = await context.newPage();
    await page.goto(url);
    await page.getByRole("link", { name: "Sign in with single sign-on" }).click();
    await page.locator('input[name="login"]').fill("alice");
    await page.locator('input[name="password"]').fill("any password");
    await page.getByRole("button", { name: "Sign-in" }).click();
    await page.getByRole("heading", { name: "Sign in the warren CLI?" }).waitFor();
    await page.getByRole("button", { name: "Allow" }).click();
    await page.getByRole("heading", { name: "Logged in" }).waitFor();
    await context.close();
    expect(await exit).toBe(0);
    expect(child.output()).toContain(`Logged in to ${root()} as user alice`);
    const me = await runCli(home, ["whoami", "--json"]);
    expect(JSON.parse(me.stdout)).toMatchObject({ user: "alice", server: root() });
  });
});

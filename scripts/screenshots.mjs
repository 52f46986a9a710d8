// Screenshots of the dashboard and of each page people see, for docs/images/ (README, docs).
// Runs the built server (npm run build first) with an agent and a few workspaces, signs in
// with the token form in Debian's Chromium, and saves PNGs:
//
//   node scripts/screenshots.mjs            # writes docs/images/*.png
import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const ROOT = "warren.localhost";
const ADMIN = "screenshots-admin-token-0123456789";
const OUT = "docs/images";
const children = [];
process.on("exit", () => children.forEach((c) => c.kill("SIGKILL")));

function start(command, args, env, readyWhen) {
  const child = spawn(command, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let buffer = "";
    child.stdout.setEncoding("utf8").on("data", (chunk) => {
      buffer += chunk;
      for (let nl; (nl = buffer.indexOf("\n")) >= 0; buffer = buffer.slice(nl + 1)) {
        try {
          const line = JSON.parse(buffer.slice(0, nl));
          if (readyWhen(line)) resolve({ child, line });
        } catch {}
      }
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited ${code}`)));
  });
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function api(port, method, body, token = ADMIN) {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: `/warren.v1.${method}`,
        headers: { host: `${ROOT}:${port}`, "content-type": "application/json", authorization: `Bearer ${token}` },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c) => (text += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`${method}: ${text}`))));
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

const data = mkdtempSync(join(tmpdir(), "warren-screens-"));
const deadIssuer = await freePort();
const { line: ready } = await start(
  process.execPath,
  ["dist/warren-server.cjs"],
  {
    WARREN_HTTP_ADDR: "127.0.0.1:0",
    WARREN_AGENT_ADDR: "127.0.0.1:0",
    WARREN_OBSERVABILITY_ADDR: "127.0.0.1:0",
    WARREN_SSH_ADDR: "127.0.0.1:0",
    WARREN_DATA_DIR: data,
    WARREN_ADMIN_TOKEN: ADMIN,
    WARREN_UPSTREAM_TIMEOUT: "1s",
    // Shows the single sign-on button; the provider is not needed for these pages.
    WARREN_OIDC_ISSUER: `http://127.0.0.1:${deadIssuer}`,
    WARREN_OIDC_CLIENT_ID: "warren",
  },
  (l) => l.msg === "warren server ready",
);
const port = Number(String(ready.http).split(":").pop());
const agentUrl = `http://127.0.0.1:${String(ready.agent).split(":").pop()}`;
const root = `http://${ROOT}:${port}`;

// A user, an app, and workspaces in a few states.
await api(port, "UserService/CreateUser", { name: "alice" });
const { token } = await api(port, "UserService/CreateAccessToken", { user: "alice", name: "laptop" });
const app = http.createServer((_q, s) => s.end("hello")).listen(0, "127.0.0.1");
await new Promise((r) => app.once("listening", r));
const hang = http.createServer(() => {}).listen(0, "127.0.0.1");
await new Promise((r) => hang.once("listening", r));
const empty = await freePort();
const created = await api(port, "WorkspaceService/CreateWorkspace", { name: "api", ports: [{ port: app.address().port }, { port: empty }, { port: hang.address().port }], ttlSeconds: 8 * 3600 }, token);
await start(process.execPath, ["dist/warren-agent.cjs"], { WARREN_SERVER: agentUrl, WARREN_TOKEN: created.agentToken }, (l) => l.event === "ready");
await api(port, "WorkspaceService/CreateWorkspace", { name: "docs-preview", ports: [{ port: 3000, public: true }] }, token);
await api(port, "WorkspaceService/CreateWorkspace", { name: "ml-notebook", ports: [{ port: 8888 }] }, token);
await api(port, "WorkspaceService/StopWorkspace", { name: "ml-notebook" }, token);

mkdirSync(OUT, { recursive: true });
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, colorScheme: "light" });
  const page = await context.newPage();
  await page.goto(`${root}/`);
  await page.screenshot({ path: `${OUT}/login.png` });
  await page.getByLabel("Access token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator('[data-workspace="api"] [data-actual]').waitFor();
  await page.screenshot({ path: `${OUT}/dashboard.png`, fullPage: true });
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  await phone.addCookies(await context.cookies(root));
  const small = await phone.newPage();
  await small.goto(`${root}/`);
  await small.locator('[data-workspace="api"] [data-actual]').waitFor();
  await small.screenshot({ path: `${OUT}/dashboard-phone.png` });
  const pages = [
    ["error-404", `http://${empty}-nosuch.${ROOT}:${port}/`],
    ["error-403", `http://9-api.${ROOT}:${port}/`],
    ["error-502", `http://${empty}-api.${ROOT}:${port}/`],
    ["error-503-stopped", `http://8888-ml-notebook.${ROOT}:${port}/`],
    ["error-503-not-connected", `http://3000-docs-preview.${ROOT}:${port}/`],
    ["error-504", `http://${hang.address().port}-api.${ROOT}:${port}/`],
    ["sign-in-failed", `${root}/-/oidc/callback?code=x&state=y`],
  ];
  const timing = async (p) =>
    p.evaluate("(() => { const n = performance.getEntriesByType('navigation')[0]; return { ms: Math.round(n.loadEventEnd - n.startTime), bytes: n.transferSize } })()");
  await page.goto(`${root}/`);
  await page.locator('[data-workspace="api"] [data-actual]').waitFor();
  console.log(`dashboard: ${JSON.stringify(await timing(page))}`);
  for (const [name, url] of pages) {
    await page.goto(url);
    await page.screenshot({ path: `${OUT}/${name}.png` });
    console.log(`${OUT}/${name}.png ${JSON.stringify(await timing(page))}`);
  }
} finally {
  await browser.close();
  app.close();
  hang.close();
  for (const c of children) c.kill("SIGTERM");
  rmSync(data, { recursive: true, force: true });
}
process.exit(0);

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "./harness/apps.js";
import { Browser } from "./harness/browser.js";
import { callApi, ROOT_DOMAIN, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/**
 * Issue 12, "workspace incarnations": a workspace deleted and created again under the same
 * name is another workspace. Browser sessions and one-time login codes minted for the first
 * are not valid on the second, even for the same person.
 */
describe("workspace incarnations: sessions and login codes are bound to the workspace id", () => {
  let server: ServerHandle;
  let app: App;
  let token: string;
  const agents: AgentHandle[] = [];
  const root = () => `http://${ROOT_DOMAIN}:${server.httpPort}`;
  const url = (path = "/") => `http://${workspaceHost("dev", app.port)}:${server.httpPort}${path}`;

  beforeAll(async () => {
    app = await startApp((req, res) => res.end(`app saw ${req.url}`));
    server = await startServer({});
    await callApi(server, "UserService/CreateUser", { name: "alice" });
    token = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "alice", ttlSeconds: 3600 })).body.token;
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.stop();
    await app?.close();
  });

  async function createDev(): Promise<void> {
    const res = await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "dev", ports: [{ port: app.port }] }, token);
    expect(res.status).toBe(200);
    agents.push(await startAgent(server, res.body.agentToken));
  }

  /** Posts the login form; returns the callback URL carrying a fresh one-time code (not followed). */
  async function loginCode(browser: Browser): Promise<string> {
    const form = new URLSearchParams({ token, return_to: url("/page") }).toString();
    const res = await browser.request(`${root()}/-/login/token`, { method: "POST", body: form });
    expect(res.status).toBe(303);
    return String(res.headers.location);
  }

  it("a session cookie and a login code of a deleted workspace do not open a new workspace of the same name", async () => {
    await createDev();
    const browser = new Browser(server.httpPort);
    // Logged in to the first "dev": the app answers.
    const first = await browser.navigate(await loginCode(browser));
    expect(first.final.status).toBe(200);
    expect(first.final.body).toBe("app saw /page");
    expect((await browser.request(url("/again"))).body).toBe("app saw /again");
    // A second code minted for the first "dev", never redeemed.
    const unusedCallback = await loginCode(browser);

    await agents.pop()!.stop();
    expect((await callApi(server, "WorkspaceService/DeleteWorkspace", { name: "dev" }, token)).status).toBe(200);
    await createDev();

    // The old cookie is not a session on the new workspace: the browser is sent to log in.
    const again = await browser.request(url("/again"), { headers: { accept: "text/html" } });
    expect(again.status).toBe(302);
    expect(new URL(String(again.headers.location)).pathname).toBe("/-/login");
    // Without text/html: 401, nothing of the app.
    const api = await browser.request(url("/again"), { headers: { accept: "application/json" } });
    expect(api.status).toBe(401);
    expect(api.body).not.toContain("app saw");
    // The old code is refused on the new workspace.
    const redeemed = await browser.request(unusedCallback);
    expect(redeemed.status).toBe(401);
    expect(redeemed.body).toMatch(/login code is invalid, expired or already used/);
    // Logging in again opens the new workspace.
    const relogin = await browser.navigate(await loginCode(browser));
    expect(relogin.final.status).toBe(200);
    expect(relogin.final.body).toBe("app saw /page");
  });
});

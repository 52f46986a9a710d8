import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startApp, type App } from "./harness/apps.js";
import { callApi, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

/**
 * Browsers get a page for each error on a workspace host, curl keeps the one-line text; the
 * status is the same either way, on the fast path and on node's HTTP path.
 */
describe.each([
  ["the fast path", "true"],
  ["node's HTTP path", "false"],
])("error pages on %s", (_name, fastPath) => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let hanging: App;
  let emptyPort: number;

  beforeAll(async () => {
    // An app that never answers: the 504.
    hanging = await startApp(() => undefined);
    emptyPort = await freePort();
    server = await startServer({ WARREN_HTTP_FAST_PATH: fastPath, WARREN_UPSTREAM_TIMEOUT: "1s" });
    const created = await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "pages", ports: [{ port: emptyPort }, { port: hanging.port }] });
    agent = await startAgent(server, created.body.agentToken);
    await callApi(server, "WorkspaceService/CreateWorkspace", { name: "idle", ports: [{ port: 8000 }] });
    await callApi(server, "WorkspaceService/CreateWorkspace", { name: "paused", ports: [{ port: 8000 }] });
    await callApi(server, "WorkspaceService/StopWorkspace", { name: "paused" });
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await hanging?.close();
  });

  async function both(host: string) {
    const ask = (accept?: string) =>
      httpRequest({ port: server.httpPort, host: `${host}:${server.httpPort}`, headers: { "x-warren-token": server.adminToken, ...(accept ? { accept } : {}) } });
    return { html: await ask("text/html,application/xhtml+xml"), text: await ask() };
  }

  const cases: [string, () => string, number, RegExp, RegExp][] = [
    ["an unknown workspace", () => workspaceHost("nosuch", 8000), 404, /<h1>Not found<\/h1>/, /^workspace "nosuch" not found\n$/],
    ["a port the workspace does not expose", () => workspaceHost("pages", 9), 403, /<h1>Not allowed<\/h1>/, /port 9/],
    ["nothing listening yet", () => workspaceHost("pages", emptyPort), 502, /Nothing is listening on port \d+ yet/, /^nothing is listening on port \d+ in workspace "pages"/],
    ["a stopped workspace", () => workspaceHost("paused", 8000), 503, /Workspace paused is stopped[\s\S]*href="\/\/warren\.localhost:\d+\/\?start=paused"/, /^workspace "paused" is stopped/],
    ["an agent that is not connected", () => workspaceHost("idle", 8000), 503, /Workspace idle is not connected[\s\S]*warren-agent run/, /^workspace "idle" is not connected/],
    ["an app that does not answer in time", () => workspaceHost("pages", hanging.port), 504, /The app did not answer in time/, /did not respond within 1000 ms/],
  ];

  it.each(cases)("answers %s with a page for browsers and the text line for curl", async (_what, host, status, page, line) => {
    const answers = await both(host());
    const html = { ...answers.html, body: answers.html.body.toString("utf8") };
    const text = { ...answers.text, body: answers.text.body.toString("utf8") };
    expect(html.status).toBe(status);
    expect(text.status).toBe(status);
    expect(html.headers["content-type"]).toMatch(/^text\/html/);
    expect(html.headers["content-security-policy"]).toMatch(/default-src 'none'/);
    expect(html.body).toMatch(page);
    expect(Buffer.byteLength(html.body)).toBeLessThan(100 * 1024);
    expect(text.headers["content-type"]).toMatch(/^text\/plain/);
    expect(text.body).toMatch(line);
  });
});

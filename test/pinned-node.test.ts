import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "./harness/apps.js";
import { AGENT_NODE_VERSION, PINNED_NODE } from "./harness/processes.js";
import { createWorkspace, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

// The rest of the suite runs the server and the agent bundle on the machine's node (20); this
// file runs both on the Node.js 24 that the agent binaries embed (scripts/build/agent-node.json),
// which the build unpacked under node_modules/.cache.
describe("server and agent on the pinned Node.js 24", () => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let app: App;

  beforeAll(async () => {
    if (!existsSync(PINNED_NODE)) throw new Error(`${PINNED_NODE} is missing: \`npm run build\` unpacks it`);
    app = await startApp((req, res) => {
      let body = "";
      req.setEncoding("utf8").on("data", (c: string) => (body += c));
      req.on("end", () => res.end(`${req.method} ${req.url} ${body}`));
    });
    server = await startServer({}, [], undefined, PINNED_NODE);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await app?.close();
  });

  it("is Node.js 24, not the machine's node", () => {
    const version = execFileSync(PINNED_NODE, ["-p", "process.version"]).toString().trim();
    expect(version).toBe(`v${AGENT_NODE_VERSION}`);
    expect(version).toMatch(/^v24\./);
    expect(version).not.toBe(process.version);
  });

  it("serves a workspace request through an agent, both running on Node.js 24", async () => {
    const ws = await createWorkspace(server, "node24", [app.port]);
    agent = await startAgent(server, ws.agentToken, { node: PINNED_NODE });
    const res = await httpRequest({
      port: server.httpPort,
      host: workspaceHost("node24", app.port),
      method: "POST",
      path: "/echo?x=1",
      body: "through the tunnel",
      headers: { "x-warren-token": server.adminToken },
    });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("POST /echo?x=1 through the tunnel");
    // Nothing on stderr from either side: no deprecation or experimental warnings on Node 24.
    expect(server.proc.stderr.join("")).toBe("");
    expect(agent.proc.stderr.join("")).toBe("");
  });
});

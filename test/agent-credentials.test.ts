import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WorkloadState } from "../shared/gen/warren/v1/agent_pb.js";
import { startApp, type App } from "./harness/apps.js";
import { RawAgent } from "./harness/raw-agent.js";
import { callApi, createWorkspace, httpRequest, startServer, workspaceHost, type ServerHandle } from "./harness/warren.js";

interface WorkspaceJson {
  name: string;
  connected?: boolean;
  actualState?: string;
}

/**
 * An agent token is good only while it is the workspace's current token, and only for the
 * workspace incarnation it was made for: checked again at hello, and every connection made
 * with it ends when it is revoked.
 */
describe("agent credentials", () => {
  let server: ServerHandle;
  let app: App;
  const agents: RawAgent[] = [];
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    app = await startApp((_req, res) => res.end("the owner's app"));
    server = await startServer();
    for (const user of ["alice", "bob"]) {
      expect((await callApi(server, "UserService/CreateUser", { name: user })).status).toBe(200);
      const token = await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user, ttlSeconds: 3600 });
      tokens[user] = token.body.token;
    }
  });

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.destroy();
    await callApi(server, "WorkspaceService/DeleteWorkspace", { name: "dev" });
  });

  afterAll(async () => {
    await server?.stop();
    await app?.close();
  });

  function rawAgent(token: string): RawAgent {
    const agent = new RawAgent(server.agentUrl, token);
    agents.push(agent);
    return agent;
  }

  async function getWorkspace(name: string, token: string): Promise<WorkspaceJson> {
    const res = await callApi<{ workspace: WorkspaceJson }>(server, "WorkspaceService/GetWorkspace", { name }, token);
    expect(res.status).toBe(200);
    return res.body.workspace;
  }

  it("regression: a token rotated before hello is refused at hello", async () => {
    const created = await createWorkspace(server, "rotated", [app.port], { variables: [{ name: "SECRET", value: "s3cret" }] });
    const agent = rawAgent(created.agentToken);
    await agent.openControl();
    // The token was good when the control stream opened; it is rotated before the agent says hello.
    expect((await callApi(server, "WorkspaceService/RotateAgentToken", { name: "rotated" })).status).toBe(200);
    agent.sendHello();
    const welcome = await agent.welcome();
    expect(welcome).toBeUndefined();
    expect(await agent.controlEnd()).toEqual({ status: "16", message: "agent token is invalid, expired or revoked" });
    expect((await getWorkspace("rotated", server.adminToken)).connected ?? false).toBe(false);
    const res = await httpRequest({ port: server.httpPort, host: workspaceHost("rotated", app.port), headers: { "x-warren-token": server.adminToken } });
    expect(res.status).toBe(503);
  });

  it.each(["DeleteWorkspace", "TerminateWorkspace"])(
    "regression: an agent of a workspace removed before hello (%s) cannot take over a new workspace of the same name",
    async (removal) => {
      const bobs = await createWorkspace(server, "dev", [app.port], {}, tokens["bob"]!);
      const stale = rawAgent(bobs.agentToken);
      await stale.openControl();
      expect((await callApi(server, `WorkspaceService/${removal}`, { name: "dev" }, tokens["bob"]!)).status).toBe(200);
      // Alice takes the name; her workspace is a new one, whatever its name.
      await createWorkspace(server, "dev", [app.port], {}, tokens["alice"]!);
      stale.sendHello();
      if (await stale.welcome()) {
        // What the old code let it do: serve Alice's requests and report on her workspace.
        stale.parkStreams(4);
        stale.sendReport(WorkloadState.FAILED, "forged");
        await new Promise((r) => setTimeout(r, 300));
      }
      const res = await httpRequest({
        port: server.httpPort,
        host: workspaceHost("dev", app.port),
        headers: { "x-warren-token": tokens["alice"]!, cookie: "app=alice-secret" },
      });
      expect(stale.dials).toEqual([]);
      expect(res.status).toBe(503);
      expect(res.body.toString()).toMatch(/workspace "dev" is not connected/);
      const alices = await getWorkspace("dev", tokens["alice"]!);
      expect(alices.connected ?? false).toBe(false);
      expect(alices.actualState).toBe("WORKSPACE_ACTUAL_STATE_CREATION_REQUESTED");
      expect((await stale.controlEnd()).status).toBe("16");
    },
  );
});

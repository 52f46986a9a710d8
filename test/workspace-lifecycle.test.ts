import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isLegalTransition, type ActualState } from "../server/domain/workspace-state.js";
import { freePort } from "./harness/apps.js";
import { callApi, eventually, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

interface WorkspaceJson {
  name: string;
  desiredState?: string;
  actualState?: string;
  connected?: boolean;
  variableNames?: string[];
  expireTime?: string;
}

/** A workload: an HTTP server on `port` that answers with its pid and what it sees of its environment. */
function appCommand(port: number): string[] {
  const script = `
    const http = require("http"), fs = require("fs");
    http.createServer((req, res) => res.end(JSON.stringify({
      pid: process.pid,
      apiKey: process.env.API_KEY ?? null,
      configPath: process.env.CONFIG ?? null,
      config: process.env.CONFIG ? fs.readFileSync(process.env.CONFIG, "utf8") : null,
      agentToken: process.env.WARREN_TOKEN ?? null,
    }))).listen(${port}, "127.0.0.1");
    process.on("SIGTERM", () => process.exit(0));`;
  return [process.execPath, "-e", script];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("workspace lifecycle with a supervised workload", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startServer();
  });

  afterAll(async () => {
    await server?.stop();
  });

  const getWorkspace = async (name: string) => (await callApi<{ workspace: WorkspaceJson }>(server, "WorkspaceService/GetWorkspace", { name })).body.workspace;
  const actual = async (name: string) => (await getWorkspace(name)).actualState;
  const act = async (method: string, name: string) => {
    const res = await callApi<{ workspace: WorkspaceJson }>(server, `WorkspaceService/${method}`, { name });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.workspace;
  };
  const fetchApp = (name: string, port: number) =>
    httpRequest({ port: server.httpPort, host: workspaceHost(name, port), headers: { "x-warren-token": server.adminToken } });
  const appInfo = async (name: string, port: number) => {
    const res = await fetchApp(name, port);
    if (res.status !== 200) throw new Error(`app answered ${res.status}: ${res.body.toString()}`);
    return JSON.parse(res.body.toString()) as { pid: number; apiKey: string | null; config: string | null; configPath: string | null; agentToken: string | null };
  };
  /** The actual states the server went through for a workspace, from its transition log lines. */
  const transitions = (name: string) =>
    server.proc.lines
      .filter((l) => l.msg === "workspace state changed" && l["workspace"] === name)
      .map((l) => ({ from: l["actualFrom"] as ActualState, to: l["actualTo"] as ActualState, desired: l["desiredTo"] as string }));

  it("stops, starts and restarts the real process, through legal actual states only", async () => {
    const port = await freePort();
    const created = await callApi<{ workspace: WorkspaceJson; agentToken: string }>(server, "WorkspaceService/CreateWorkspace", {
      name: "life",
      ports: [{ port }],
      variables: [
        { name: "API_KEY", value: "k3y-4-the-app" },
        { name: "CONFIG", value: "mode=test\n", file: true },
      ],
    });
    expect(created.status).toBe(200);
    expect(created.body.workspace.desiredState).toBe("WORKSPACE_DESIRED_STATE_RUNNING");
    expect(created.body.workspace.actualState).toBe("WORKSPACE_ACTUAL_STATE_CREATION_REQUESTED");
    expect(created.body.workspace.variableNames).toEqual(["API_KEY", "CONFIG"]);
    const agent = await startAgent(server, created.body.agentToken, { args: ["run", "--", ...appCommand(port)] });
    try {
      await eventually(async () => (await actual("life")) === "WORKSPACE_ACTUAL_STATE_RUNNING", 10_000, "Running");
      let info!: Awaited<ReturnType<typeof appInfo>>;
      await eventually(async () => {
        info = await appInfo("life", port);
        return true;
      }, 10_000, "the app to answer");
      // Variables reach the workload; the agent's own token does not.
      expect(info.apiKey).toBe("k3y-4-the-app");
      expect(info.config).toBe("mode=test\n");
      expect(info.agentToken).toBeNull();
      // Values never reach a log line of either program.
      for (const text of [server.proc.output(), agent.proc.output()]) {
        expect(text).not.toContain("k3y-4-the-app");
        expect(text).not.toContain("mode=test");
      }
      const firstPid = info.pid;
      expect(alive(firstPid)).toBe(true);

      // Stop: the process is killed; the workspace answers 503 while stopped.
      expect((await act("StopWorkspace", "life")).desiredState).toBe("WORKSPACE_DESIRED_STATE_STOPPED");
      await eventually(async () => (await actual("life")) === "WORKSPACE_ACTUAL_STATE_STOPPED", 10_000, "Stopped");
      await eventually(() => !alive(firstPid), 5000, "the process to be gone");
      const stopped = await fetchApp("life", port);
      expect(stopped.status).toBe(503);
      expect(stopped.body.toString()).toMatch(/workspace "life" is stopped/);

      // Start: a new process.
      await act("StartWorkspace", "life");
      await eventually(async () => (await actual("life")) === "WORKSPACE_ACTUAL_STATE_RUNNING", 10_000, "Running again");
      let second!: number;
      await eventually(async () => {
        second = (await appInfo("life", port)).pid;
        return true;
      }, 10_000, "the app to answer after start");
      expect(second).not.toBe(firstPid);

      // Restart: stop and start, back to desired Running.
      expect((await act("RestartWorkspace", "life")).desiredState).toBe("WORKSPACE_DESIRED_STATE_RESTART_REQUESTED");
      await eventually(async () => {
        const w = await getWorkspace("life");
        return w.desiredState === "WORKSPACE_DESIRED_STATE_RUNNING" && w.actualState === "WORKSPACE_ACTUAL_STATE_RUNNING";
      }, 10_000, "Running after restart");
      await eventually(() => !alive(second), 5000, "the old process to be gone");
      let third!: number;
      await eventually(async () => {
        third = (await appInfo("life", port)).pid;
        return true;
      }, 10_000, "the app to answer after restart");
      expect(third).not.toBe(second);

      const seen = transitions("life").filter((t) => t.from !== t.to);
      for (const t of seen) expect(isLegalTransition(t.from, t.to), `${t.from} -> ${t.to}`).toBe(true);
      expect(seen.map((t) => t.to)).toEqual([
        "Starting", "Running", // first start
        "Stopping", "Stopped", // stop
        "Starting", "Running", // start
        "Stopping", "Stopped", "Starting", "Running", // restart
      ]);
      // The restart went through RestartRequested and came back to Running at the Stopped report.
      const restartStopped = transitions("life").filter((t) => t.to === "Stopped").at(-1)!;
      expect(restartStopped.desired).toBe("Running");
      expect(server.proc.lines.some((l) => l.level === "warn" && /unexpected workspace state transition/.test(String(l.msg)))).toBe(false);
    } finally {
      await agent.stop();
    }
  });

  it("terminating stops the workload, the agent exits and its token is refused", async () => {
    const created = await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "doomed", ports: [] });
    const agent = await startAgent(server, created.body.agentToken, { args: ["run", "--", "sleep", "1000"] });
    await eventually(async () => (await actual("doomed")) === "WORKSPACE_ACTUAL_STATE_RUNNING", 10_000, "Running");
    const pid = Number(agent.proc.lines.find((l) => l["event"] === "workload" && l["status"] === "Running")!["pid"]);
    expect(alive(pid)).toBe(true);
    const terminating = await act("TerminateWorkspace", "doomed");
    expect(terminating.desiredState).toBe("WORKSPACE_DESIRED_STATE_TERMINATED");
    const exit = await agent.proc.exited;
    expect(exit.code).toBe(1);
    expect(alive(pid)).toBe(false);
    await eventually(async () => (await actual("doomed")) === "WORKSPACE_ACTUAL_STATE_TERMINATED", 5000, "Terminated");
    expect(transitions("doomed").map((t) => t.to)).toEqual(["Starting", "Running", "Terminating", "Terminated"]);
    const again = await startAgent(server, created.body.agentToken, { waitReady: false });
    expect((await again.proc.exited).code).toBe(1);
    expect(again.proc.output()).toMatch(/agent token is invalid, expired or revoked/);
    // Final: no way back.
    const start = await callApi<{ code: string }>(server, "WorkspaceService/StartWorkspace", { name: "doomed" });
    expect(start.status).toBe(400); // Connect maps failed_precondition to HTTP 400
    expect(start.body.code).toBe("failed_precondition");
  });

  it("terminates a workspace whose time to live has passed", async () => {
    const created = await callApi<{ workspace: WorkspaceJson; agentToken: string }>(server, "WorkspaceService/CreateWorkspace", {
      name: "brief",
      ports: [],
      ttlSeconds: 2,
    });
    expect(created.body.workspace.expireTime).toBeDefined();
    // Not waiting for "ready": on a loaded machine the two seconds may pass before the agent
    // is welcomed, and then it is refused; either way it must exit with 1.
    const agent = await startAgent(server, created.body.agentToken, { args: ["run", "--", "sleep", "1000"], waitReady: false });
    const exit = await Promise.race([agent.proc.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
    expect(exit?.code).toBe(1);
    const w = await getWorkspace("brief");
    expect([w.desiredState, w.actualState]).toEqual(["WORKSPACE_DESIRED_STATE_TERMINATED", "WORKSPACE_ACTUAL_STATE_TERMINATED"]);
    expect(server.proc.lines.some((l) => l["workspace"] === "brief" && l["cause"] === "its time to live passed")).toBe(true);
  });

  it("a plain agent follows the desired state too: a stopped workspace takes no traffic", async () => {
    const port = await freePort();
    const created = await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "plain", ports: [{ port }] });
    const agent: AgentHandle = await startAgent(server, created.body.agentToken);
    try {
      await eventually(async () => (await actual("plain")) === "WORKSPACE_ACTUAL_STATE_RUNNING", 10_000, "Running");
      await act("StopWorkspace", "plain");
      await eventually(async () => (await actual("plain")) === "WORKSPACE_ACTUAL_STATE_STOPPED", 10_000, "Stopped");
      expect((await fetchApp("plain", port)).status).toBe(503);
      await act("RestartWorkspace", "plain");
      await eventually(async () => (await actual("plain")) === "WORKSPACE_ACTUAL_STATE_RUNNING", 10_000, "Running after restart");
      // Running, nothing listening on the port: the app's absence (502), not Warren's refusal.
      expect((await fetchApp("plain", port)).status).toBe(502);
      await agent.stop();
      await eventually(async () => (await actual("plain")) === "WORKSPACE_ACTUAL_STATE_UNKNOWN", 5000, "Unknown once the agent is gone");
    } finally {
      await agent.stop();
    }
  });

  it("rotating the agent token disconnects the agent and only the new token works", async () => {
    const created = await callApi<{ agentToken: string }>(server, "WorkspaceService/CreateWorkspace", { name: "rotor", ports: [] });
    const agent = await startAgent(server, created.body.agentToken);
    const rotated = await callApi<{ agentToken: string }>(server, "WorkspaceService/RotateAgentToken", { name: "rotor" });
    expect(rotated.status).toBe(200);
    expect(rotated.body.agentToken).not.toBe(created.body.agentToken);
    expect((await agent.proc.exited).code).toBe(1);
    const fresh = await startAgent(server, rotated.body.agentToken);
    await fresh.stop();
  });
});

import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./harness/apps.js";
import { cliHome, runCli } from "./harness/cli.js";
import { callApi, createWorkspace, eventually, httpRequest, startAgent, startServer, workspaceHost, type AgentHandle, type ServerHandle } from "./harness/warren.js";

interface DetectedPort {
  port: number;
  address: string;
  process?: string;
  exposed?: boolean;
}

/** A separate program listening on a loopback port, like a database started in the workspace. */
async function listenerProcess(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["-e", `require("net").createServer().listen(${port}, "127.0.0.1", () => console.log("listening"))`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`listener exited with ${code}`)));
  });
  return child;
}

/** Item 2 of issue 17: the agent reports what listens in the workspace; nothing becomes reachable by it. */
describe("listening-port discovery", () => {
  let server: ServerHandle;
  let agent: AgentHandle;
  let home: string;
  let exposedPort: number;
  const name = "discover";

  beforeAll(async () => {
    server = await startServer();
    exposedPort = await freePort();
    const ws = await createWorkspace(server, name, [exposedPort]);
    // A short interval keeps the test quick; the default is 3 s.
    agent = await startAgent(server, ws.agentToken, { env: { WARREN_PORT_DISCOVERY_INTERVAL: "200ms" } });
    home = cliHome();
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
  });

  const detected = async (): Promise<DetectedPort[]> =>
    (await callApi<{ workspace: { detectedPorts?: DetectedPort[] } }>(server, "WorkspaceService/GetWorkspace", { name })).body.workspace.detectedPorts ?? [];

  it("detectedPorts follows an app that starts and stops, with its process name, and the port stays unreachable", async () => {
    const port = await freePort();
    expect((await detected()).some((d) => d.port === port)).toBe(false);
    const app = await listenerProcess(port);
    try {
      await eventually(async () => (await detected()).some((d) => d.port === port), 15_000, "the new listener in detectedPorts");
      expect((await detected()).find((d) => d.port === port)).toEqual({ port, address: "127.0.0.1", process: "node" }); // exposed: false is left out, as JSON leaves out defaults
      // Detected is not exposed: the front door still refuses the port.
      const res = await httpRequest({ port: server.httpPort, host: workspaceHost(name, port), headers: { "x-warren-token": server.adminToken } });
      expect(res.status).toBe(403);

      const table = await runCli(home, ["workspace", "ports", name, "--server", `http://127.0.0.1:${server.httpPort}`, "--token", server.adminToken]);
      expect(table.code).toBe(0);
      expect(table.stdout.split("\n")[0]).toMatch(/^PORT\s+LISTENING\s+ADDRESS\s+PROCESS\s+EXPOSED$/);
      expect(table.stdout).toMatch(new RegExp(`^${port}\\s+yes\\s+127\\.0\\.0\\.1\\s+node\\s+no$`, "m"));
      expect(table.stdout).toMatch(new RegExp(`^${exposedPort}\\s+no\\s+-\\s+-\\s+private$`, "m"));
    } finally {
      app.kill();
    }
    await eventually(async () => !(await detected()).some((d) => d.port === port), 15_000, "the stopped listener gone from detectedPorts");
  });
});

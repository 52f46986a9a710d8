import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./harness/apps.js";
import type { LogLine } from "./harness/processes.js";
import { callApi, createWorkspace, eventually, httpRequest, startAgent, startServer, workspaceHost, type ServerHandle } from "./harness/warren.js";

/** `warren-agent run -- CMD`, with the single-file binary. */
describe("warren-agent run -- CMD", () => {
  let server: ServerHandle;
  let port: number;

  beforeAll(async () => {
    server = await startServer();
    port = await freePort();
  });

  afterAll(async () => {
    await server?.stop();
  });

  async function run(workspace: string, command: string[], env: Record<string, string> = {}) {
    const ws = await createWorkspace(server, workspace, [port]);
    return startAgent(server, ws.agentToken, { binary: true, args: ["run", "--", ...command], waitReady: false, env: { WARREN_SHUTDOWN_TIMEOUT: "2s", ...env } });
  }

  const reports = (workspace: string): LogLine[] => server.proc.lines.filter((l) => l["event"] === "workload" && l["workspace"] === workspace);

  const reported = (workspace: string, state: string) =>
    server.proc.waitFor((l) => l["event"] === "workload" && l["workspace"] === workspace && l["state"] === state, 15_000, `workload ${state} of ${workspace}`);

  it("exits with the workload's exit code, which the server logs as FAILED", async () => {
    const agent = await run("fails", ["sh", "-c", "exit 7"]);
    expect((await agent.proc.exited).code).toBe(7);
    const report = await reported("fails", "FAILED");
    expect(report).toMatchObject({ level: "info", exitCode: 7, message: "exited with code 7" });
  });

  it("exits 0 when the workload does, reported as STOPPED, after the ready line", async () => {
    const agent = await run("finishes", ["sh", "-c", "sleep 1; echo workload-output"]);
    const ready = await agent.proc.waitFor((l) => l["event"] === "ready");
    expect(ready["workspace"]).toBe("finishes");
    expect((await agent.proc.exited).code).toBe(0);
    // The workload has the agent's stdout.
    expect(agent.proc.stdoutText).toContain("workload-output");
    expect(await reported("finishes", "STOPPED")).toMatchObject({ exitCode: 0 });
    // The latest state is sent on connecting (STARTING is usually over by then), the end last.
    const states = reports("finishes").map((l) => l["state"]);
    expect(states).toContain("RUNNING");
    expect(states.at(-1)).toBe("STOPPED");
  });

  it("passes SIGTERM on to the workload and exits with the code it exits with", async () => {
    const script = 'trap "echo workload-got-TERM; exit 3" TERM; echo workload-up; while :; do sleep 0.1; done';
    const agent = await run("graceful", ["sh", "-c", script]);
    await agent.proc.waitFor((l) => l["event"] === "ready");
    await reported("graceful", "RUNNING");
    await eventually(() => agent.proc.stdoutText.includes("workload-up"), 5000, "the workload to start");
    agent.proc.kill("SIGTERM");
    expect((await agent.proc.exited).code).toBe(3);
    expect(agent.proc.stdoutText).toContain("workload-got-TERM");
    // Stopped on request: STOPPED, not FAILED, whatever its code.
    expect(await reported("graceful", "STOPPED")).toMatchObject({ exitCode: 3, message: "exited with code 3 after SIGTERM" });
  });

  it("exits 128+N when signal N kills the workload (SIGINT passed on)", async () => {
    const agent = await run("interrupted", ["sleep", "60"]);
    await reported("interrupted", "RUNNING");
    agent.proc.kill("SIGINT");
    expect((await agent.proc.exited).code).toBe(130);
    expect(await reported("interrupted", "STOPPED")).toMatchObject({ exitCode: 130, message: "was killed by SIGINT" });
  });

  it("exits 127 and reports FAILED when the command does not exist", async () => {
    const agent = await run("missing", ["warren-no-such-command"]);
    expect((await agent.proc.exited).code).toBe(127);
    expect(await reported("missing", "FAILED")).toMatchObject({ exitCode: 127, message: 'could not start "warren-no-such-command": not found' });
  });

  it("carries traffic to the app it supervises, which does not see the agent token", async () => {
    const app = `require("http").createServer((q, s) => s.end("token=" + (process.env.WARREN_TOKEN ?? "none"))).listen(${port}, "127.0.0.1")`;
    const agent = await run("supervised", [process.execPath, "-e", app]);
    await agent.proc.waitFor((l) => l["event"] === "ready");
    const get = () => httpRequest({ port: server.httpPort, host: workspaceHost("supervised", port), headers: { "x-warren-token": server.adminToken } });
    await eventually(async () => (await get()).status === 200, 10_000, "the app to answer through the tunnel");
    expect((await get()).body.toString()).toBe("token=none");
    agent.proc.kill("SIGTERM");
    expect((await agent.proc.exited).code).toBe(143);
  });

  it("stops the workload and exits 1 when the workspace is deleted", async () => {
    const agent = await run("deleted", ["sleep", "60"]);
    const started = await agent.proc.waitFor((l) => l["event"] === "workload" && l["status"] === "Running");
    await agent.proc.waitFor((l) => l["event"] === "ready");
    const workloadPid = Number(started["pid"]);
    expect(isAlive(workloadPid)).toBe(true);
    expect((await callApi(server, "WorkspaceService/DeleteWorkspace", { name: "deleted" })).status).toBe(200);
    expect((await agent.proc.exited).code).toBe(1);
    expect(isAlive(workloadPid)).toBe(false);
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, startRedis, type ClusterServerHandle, type RedisHandle } from "./harness/cluster.js";
import { clientOptions, ensureTestUsers, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { createWorkspace, startAgent, type AgentHandle } from "./harness/warren.js";

/** Cluster mode: an SSH session that lands on a server other than the agent's is forwarded. */
describe("SSH front door in a cluster", () => {
  let redis: RedisHandle;
  let servers: ClusterServerHandle[];
  let sshd: Sshd;
  let agent: AgentHandle;
  const WS = "ssh-far";

  beforeAll(async () => {
    ensureTestUsers();
    sshd = await startSshd();
    redis = await startRedis();
    servers = await startCluster(redis, ["s1", "s2"]);
    const created = await createWorkspace(servers[0]!, WS, [], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER });
    // The agent knows s1 only: every session through s2 crosses the private API.
    agent = await startAgent(servers[0]!, created.agentToken);
  });

  afterAll(async () => {
    await agent?.stop();
    await Promise.all((servers ?? []).map((s) => s.stop()));
    await redis?.stop();
    await sshd?.stop();
  });

  const sshVia = (server: ClusterServerHandle, args: string[], input?: Buffer) =>
    run("sshpass", ["-p", server.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(server.sshPort), `${WS}@127.0.0.1`, ...args], { input });

  it("runs a command and passes its exit code through the server that does not hold the agent", async () => {
    const hi = await sshVia(servers[1]!, ["echo", "hi"]);
    expect(hi.stderr).toBe("");
    expect(hi.stdout).toBe("hi\n");
    expect(hi.code).toBe(0);
    expect((await sshVia(servers[1]!, ["exit", "3"])).code).toBe(3);
  });

  it("carries 8 MiB of stdin intact across servers", async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const sum = await sshVia(servers[1]!, ["sha256sum"], data);
    expect(sum.code).toBe(0);
    expect(sum.stdout.split(" ")[0]).toBe(createHash("sha256").update(data).digest("hex"));
  });
});

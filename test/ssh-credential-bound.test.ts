import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawAgent } from "./harness/raw-agent.js";
import { callApi, createWorkspace, startAgent, startServer, type AgentHandle, type ServerHandle } from "./harness/warren.js";
import { clientKey, clientOptions, ensureTestUsers, IS_ROOT, keyOptions, keygenFingerprint, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { tempDir } from "./harness/temp-dirs.js";

/** SSH sessions live only as long as the credential that opened them, and only reach their own workspace. */
describe.skipIf(!IS_ROOT)("SSH sessions bound to their credential", () => {
  let server: ServerHandle;
  let sshd: Sshd;
  let dataDir: string;
  const agents: AgentHandle[] = [];

  beforeAll(async () => {
    ensureTestUsers();
    dataDir = tempDir("warren-ssh-data-");
    sshd = await startSshd();
    server = await startServer({ WARREN_LOG_LEVEL: "info", WARREN_DATA_DIR: dataDir });
    for (const user of ["dave", "erin"]) expect((await callApi(server, "UserService/CreateUser", { name: user })).status).toBe(200);
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.stop();
    await sshd?.stop();
  });

  async function accessToken(user: string): Promise<string> {
    const res = await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user, ttlSeconds: 3600 });
    expect(res.status).toBe(200);
    return res.body.token;
  }

  const sshAs = (password: string, workspace: string, args: string[], timeoutMs?: number) =>
    run("sshpass", ["-p", password, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(server.sshPort), `${workspace}@127.0.0.1`, ...args], { timeoutMs });

  it("regression: an SSH session stays open after the access token that opened it is revoked", async () => {
    const token = await accessToken("dave");
    const created = await createWorkspace(server, "shell", [], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER }, token);
    agents.push(await startAgent(server, created.agentToken, { env: { WARREN_LOG_LEVEL: "info" } }));
    expect((await sshAs(token, "shell", ["true"])).code).toBe(0);
    // A session that would run for minutes; killed by the harness after 60 s if nothing ends it.
    const session = sshAs(token, "shell", ["sleep", "600"], 60_000);
    await server.proc.waitFor((l) => l.msg === "SSH login" && l["workspace"] === "shell" && server.proc.lines.filter((x) => x.msg === "SSH login" && x["workspace"] === "shell").length >= 2, 30_000, "the second SSH login");
    expect((await callApi(server, "UserService/RevokeAccessToken", { token })).status).toBe(200);
    const ended = await session;
    // Closed by the server (ssh's own exit status for a lost connection), not by the harness's kill.
    expect(ended.code).toBe(255);
    expect((await sshAs(token, "shell", ["true"])).code).toBe(255);
  });

  it("regression: an SSH session opened with a key stays open after the key is removed (issue 12)", async () => {
    const token = await accessToken("erin");
    const key = clientKey("erin-session");
    const added = await callApi<{ key: { fingerprint: string } }>(server, "UserService/AddSshKey", { publicKey: key.publicKey }, token);
    expect(added.status).toBe(200);
    expect(added.body.key.fingerprint).toBe(keygenFingerprint(`${key.file}.pub`));
    const created = await createWorkspace(server, "keyed", [], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER }, token);
    agents.push(await startAgent(server, created.agentToken, { env: { WARREN_LOG_LEVEL: "info" } }));
    const sshWithKey = (args: string[], timeoutMs?: number) =>
      run("ssh", [...clientOptions(), ...keyOptions(key.file), "-p", String(server.sshPort), "keyed@127.0.0.1", ...args], { timeoutMs });
    expect((await sshWithKey(["echo", "in"])).stdout).toBe("in\n");
    const logins = () => server.proc.lines.filter((x) => x.msg === "SSH login" && x["workspace"] === "keyed").length;
    const session = sshWithKey(["sleep", "600"], 60_000);
    await server.proc.waitFor(() => logins() >= 2, 30_000, "the second SSH login");
    expect((await callApi(server, "UserService/RemoveSshKey", { fingerprint: added.body.key.fingerprint }, token)).status).toBe(200);
    const ended = await session;
    // Closed by the server, not by the harness's kill after 60 s.
    expect(ended.code).toBe(255);
    expect((await sshWithKey(["true"])).code).toBe(255);
  });

  it("regression: on a squatted name the first SSH dial goes to the squatter's agent (whose sshd host key it would pin)", async () => {
    const erin = await accessToken("erin");
    const dave = await accessToken("dave");
    // Erin's agent opens its control stream and holds back its hello.
    const hers = await createWorkspace(server, "box", [], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER }, erin);
    const squatter = new RawAgent(server.agentUrl, hers.agentToken);
    try {
      await squatter.openControl();
      expect((await callApi(server, "WorkspaceService/DeleteWorkspace", { name: "box" }, erin)).status).toBe(200);
      // Dave takes the name; then the squatter says hello and offers streams.
      const his = await createWorkspace(server, "box", [], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER }, dave);
      squatter.sendHello();
      if (await squatter.welcome()) squatter.parkStreams(4);
      const first = await sshAs(dave, "box", ["true"]);
      expect(squatter.dials).toEqual([]);
      expect(first.code).toBe(255);
      // Dave's own agent: his sshd's key is the one remembered, and logins work.
      agents.push(await startAgent(server, his.agentToken, { env: { WARREN_LOG_LEVEL: "info" } }));
      expect((await sshAs(dave, "box", ["true"])).code).toBe(0);
      expect((await sshAs(dave, "box", ["true"])).code).toBe(0);
    } finally {
      squatter.destroy();
    }
  });
});

import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startApp, type App } from "./harness/apps.js";
import { callApi, eventually, startAgent, startServer, type AgentHandle, type ServerHandle } from "./harness/warren.js";
import { clientKey, clientOptions, ensureTestUsers, IS_ROOT, keyOptions, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { tempDir } from "./harness/temp-dirs.js";

/**
 * The SSH holes of issue 12, each pinned by a test named after it, with the real OpenSSH
 * client. "Another address" is another loopback address: `ssh -b 127.0.0.N` binds the client
 * there, and the server sees that source address.
 */
describe.skipIf(!IS_ROOT)("SSH front door: lock-outs, oracles and stopped workspaces", () => {
  let server: ServerHandle;
  let sshd: Sshd;
  let app: App;
  let work: string;
  const agents: AgentHandle[] = [];
  let alice: { token: string; key: { file: string; publicKey: string } };

  /** A directory holding only the public half of a key: what an attacker has. */
  function publicOnly(key: { file: string }): string {
    const dir = mkdtempSync(join(work, "pub-"));
    copyFileSync(`${key.file}.pub`, join(dir, "stolen.pub"));
    return join(dir, "stolen.pub");
  }

  const sshPassword = (from: string, password: string, workspace: string, args: string[]) =>
    run("sshpass", ["-p", password, "ssh", ...clientOptions(), ...passwordOptions(), "-b", from, "-p", String(server.sshPort), `${workspace}@127.0.0.1`, ...args]);
  const sshKey = (from: string, keyFile: string, workspace: string, args: string[], extra: string[] = []) =>
    // The first -o of a name wins: extra options go first.
    run("ssh", [...extra, ...clientOptions(), ...keyOptions(keyFile), "-b", from, "-p", String(server.sshPort), `${workspace}@127.0.0.1`, ...args]);

  async function userWorkspace(user: string, token: string, name: string, ports: number[] = []): Promise<void> {
    const created = await callApi<{ agentToken: string }>(
      server,
      "WorkspaceService/CreateWorkspace",
      { name, ports: ports.map((port) => ({ port })), sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER },
      token,
    );
    expect(created.status, `${user}: ${JSON.stringify(created.body)}`).toBe(200);
    agents.push(await startAgent(server, created.body.agentToken));
  }

  async function newUser(name: string): Promise<string> {
    expect((await callApi(server, "UserService/CreateUser", { name })).status).toBe(200);
    return (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: name })).body.token;
  }

  beforeAll(async () => {
    ensureTestUsers();
    work = tempDir("warren-ssh-security-");
    sshd = await startSshd();
    app = await startApp((_req, res) => res.end("hello from the app\n"));
    server = await startServer({ WARREN_LOG_LEVEL: "info" });
    alice = { token: await newUser("alice"), key: clientKey("alice") };
    expect((await callApi(server, "UserService/AddSshKey", { publicKey: alice.key.publicKey }, alice.token)).status).toBe(200);
    await userWorkspace("alice", alice.token, "alice-dev", [app.port]);
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.stop();
    await sshd?.stop();
    await app?.close();
  });

  it("anyone can lock people out of SSH (reproduced 3): 20+ failures from another address, with no credentials or with only the owner's public key, never refuse the owner's correct token or key", async () => {
    // From 127.0.0.2: wrong tokens against the owner's workspace name, well past the limit.
    for (let batch = 0; batch < 5; batch++) {
      const tries = await Promise.all(Array.from({ length: 5 }, () => sshPassword("127.0.0.2", "wrong-token-for-this-test", "alice-dev", ["true"])));
      for (const t of tries) expect(t.code).toBe(255);
    }
    // From 127.0.0.3: only alice's public key, against workspaces that do not exist (each
    // key query used to count against "user:alice").
    const stolen = publicOnly(alice.key);
    for (let batch = 0; batch < 5; batch++) {
      const tries = await Promise.all(Array.from({ length: 5 }, (_, i) => sshKey("127.0.0.3", stolen, `nope-${batch}-${i}`, ["true"])));
      for (const t of tries) expect(t.code).toBe(255);
    }

    // The owner, from their own address: both credentials still work at once.
    const byToken = await sshPassword("127.0.0.1", alice.token, "alice-dev", ["echo", "token"]);
    expect(byToken.stderr).toBe("");
    expect(byToken.stdout).toBe("token\n");
    const byKey = await sshKey("127.0.0.1", alice.key.file, "alice-dev", ["echo", "key"]);
    expect(byKey.stderr).toBe("");
    expect(byKey.stdout).toBe("key\n");

    // The limit still holds where the failures came from: that address is refused, even with a good token.
    const attacker = await sshPassword("127.0.0.2", alice.token, "alice-dev", ["true"]);
    expect(attacker.code).toBe(255);
    expect(attacker.stderr).toMatch(/Permission denied/);
    await server.proc.waitFor((l) => l.msg === "SSH login refused: too many failed attempts from this address" && String(l["remote"]).startsWith("127.0.0.2:"), 5000);
  });

  it("SSH user names of 30 KB are logged in full (reproduced 9): the name is capped in every log line", async () => {
    const huge = `x${"a".repeat(30 * 1024)}`;
    const before = server.proc.lines.length;
    const r = await sshPassword("127.0.0.4", "wrong-token-for-this-test", huge, ["true"]);
    expect(r.code).toBe(255);
    const denied = await server.proc.waitFor((l) => l.msg === "SSH login denied" && String(l["workspace"]).startsWith("xaaa"), 5000);
    expect(String(denied["workspace"])).toBe(`x${"a".repeat(63)}...(${huge.length} characters)`);
    await eventually(() => server.proc.lines.length > before, 5000, "log lines");
    for (const line of server.proc.lines.slice(before)) expect(JSON.stringify(line).length).toBeLessThan(2000);
  });

  it("existence oracle (reproduced 8): a key query with only a public key answers the same for the owner's workspace, another's and none", async () => {
    const bobToken = await newUser("bob");
    await userWorkspace("bob", bobToken, "bob-dev");
    const stolen = publicOnly(alice.key);
    // -v shows whether the server accepted the key query ("Server accepts key").
    const query = async (workspace: string) => {
      const r = await sshKey("127.0.0.5", stolen, workspace, ["true"], ["-o", "LogLevel=DEBUG1"]);
      expect(r.code).toBe(255);
      return r.stderr
        .split("\n")
        .filter((l) => /Server accepts key|Authentications that can continue|Permission denied/.test(l))
        .map((l) => l.replaceAll(workspace, "WS").trim());
    };
    const own = await query("alice-dev");
    expect(own.some((l) => l.includes("Server accepts key"))).toBe(true);
    expect(await query("bob-dev")).toEqual(own);
    expect(await query("no-such-workspace")).toEqual(own);
    // And a key nobody registered is refused alike everywhere.
    const stranger = publicOnly(clientKey("stranger"));
    const unknown = await sshKey("127.0.0.5", stranger, "alice-dev", ["true"], ["-o", "LogLevel=DEBUG1"]);
    expect(unknown.stderr).not.toMatch(/Server accepts key/);
  });

  it("SSH keys can be registered by someone who does not hold them (reproduced 8): the holder still registers theirs and logs in as themselves", async () => {
    const malloryToken = await newUser("mallory");
    const carolToken = await newUser("carol");
    const carolKey = clientKey("carol");
    // Mallory pastes carol's public key first.
    const claimed = await callApi(server, "UserService/AddSshKey", { publicKey: carolKey.publicKey }, malloryToken);
    expect(claimed.status).toBe(200);
    // It blocks nobody: carol registers her own key (no 409).
    const own = await callApi<{ key: { user: string } }>(server, "UserService/AddSshKey", { publicKey: carolKey.publicKey }, carolToken);
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    expect(own.body.key.user).toBe("carol");
    expect((await callApi(server, "UserService/AddSshKey", { publicKey: carolKey.publicKey }, carolToken)).status).toBe(409);

    // Carol's key logs in to carol's workspace as carol, not as mallory.
    await userWorkspace("carol", carolToken, "carol-dev");
    const r = await sshKey("127.0.0.1", carolKey.file, "carol-dev", ["echo", "mine"]);
    expect(r.stdout).toBe("mine\n");
    const login = await server.proc.waitFor((l) => l.msg === "SSH login" && l["workspace"] === "carol-dev", 5000);
    expect(login["principal"]).toBe("carol");

    // Mallory's registration reaches only mallory's own workspaces, never carol's or alice's.
    const alices = await sshKey("127.0.0.1", carolKey.file, "alice-dev", ["true"]);
    expect(alices.code).toBe(255);
    expect(alices.stderr).toMatch(/Permission denied/);
    // Removing one registration leaves the other.
    const fingerprint = (await callApi<{ keys: Array<{ fingerprint: string }> }>(server, "UserService/ListSshKeys", {}, malloryToken)).body.keys[0]!.fingerprint;
    expect((await callApi(server, "UserService/RemoveSshKey", { fingerprint }, malloryToken)).status).toBe(200);
    expect((await sshKey("127.0.0.1", carolKey.file, "carol-dev", ["echo", "still"])).stdout).toBe("still\n");
  });

  it("`ssh -L` keeps working on a stopped workspace (reproduced 6): forwards and sessions end when it stops, and nothing new opens", async () => {
    const name = "alice-stops";
    await userWorkspace("alice", alice.token, name, [app.port]);
    const local = await freePort();
    const forward = spawn(
      "sshpass",
      ["-p", alice.token, "ssh", ...clientOptions(), ...passwordOptions(), "-N", "-o", "ExitOnForwardFailure=yes", "-L", `${local}:localhost:${app.port}`, "-p", String(server.sshPort), `${name}@127.0.0.1`],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    const forwardExit = new Promise<number | null>((resolve) => forward.on("close", resolve));
    // An interactive session, open while the workspace stops.
    const shell = spawn("sshpass", ["-p", alice.token, "ssh", ...clientOptions(), ...passwordOptions(), "-T", "-p", String(server.sshPort), `${name}@127.0.0.1`], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let shellOut = "";
    let shellErr = "";
    shell.stdout.on("data", (c: Buffer) => (shellOut += c.toString()));
    shell.stderr.on("data", (c: Buffer) => (shellErr += c.toString()));
    const shellExit = new Promise<number | null>((resolve) => shell.on("close", resolve));
    try {
      let body = "";
      await eventually(async () => {
        body = await (await fetch(`http://127.0.0.1:${local}/`, { headers: { connection: "close" } })).text();
        return true;
      }, 15_000, "the -L forward to answer");
      expect(body).toBe("hello from the app\n");
      shell.stdin.write("echo ready\n");
      await eventually(() => shellOut === "ready\n", 15_000, "the shell to answer");

      expect((await callApi(server, "WorkspaceService/StopWorkspace", { name }, alice.token)).status).toBe(200);

      // The session is told why and ends; the forward's connection closes.
      expect(await shellExit).toBe(255);
      expect(shellErr).toBe(`warren: workspace unavailable: workspace "${name}" is stopped (start it with StartWorkspace or \`warren workspace start\`)\n`);
      expect(await forwardExit).toBe(255);
      await expect(fetch(`http://127.0.0.1:${local}/`)).rejects.toThrow();

      // A new login is told the same, and a new -L gets no channel.
      const again = await sshPassword("127.0.0.1", alice.token, name, ["true"]);
      expect(again.code).toBe(255);
      expect(again.stderr).toMatch(/is stopped/);
      const newForward = await run("sshpass", [
        "-p", alice.token, "ssh", ...clientOptions(), ...passwordOptions(), "-W", `localhost:${app.port}`, "-p", String(server.sshPort), `${name}@127.0.0.1`,
      ], { input: "GET / HTTP/1.0\r\n\r\n" });
      expect(newForward.code).toBe(255);
      expect(newForward.stdout).toBe("");

      // Started again, it works again.
      expect((await callApi(server, "WorkspaceService/StartWorkspace", { name }, alice.token)).status).toBe(200);
      await eventually(async () => (await sshPassword("127.0.0.1", alice.token, name, ["echo", "back"])).stdout === "back\n", 15_000, "the workspace to take SSH again");
    } finally {
      forward.kill("SIGKILL");
      shell.kill("SIGKILL");
    }
  });

  it("an SSH connection to a deleted workspace never reaches a new workspace of the same name", async () => {
    const name = "reused-name";
    const doraToken = await newUser("dora");
    await userWorkspace("dora", doraToken, name);
    const shell = spawn("sshpass", ["-p", doraToken, "ssh", ...clientOptions(), ...passwordOptions(), "-T", "-p", String(server.sshPort), `${name}@127.0.0.1`], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    shell.stdout.on("data", (c: Buffer) => (out += c.toString()));
    shell.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => shell.on("close", resolve));
    try {
      shell.stdin.write("echo ready\n");
      await eventually(() => out === "ready\n", 15_000, "dora's shell to answer");
      expect((await callApi(server, "WorkspaceService/DeleteWorkspace", { name }, doraToken)).status).toBe(200);
      expect(await exited).toBe(255);
      expect(err).toMatch(new RegExp(`^warren: access denied: workspace "${name}" (was deleted|no longer exists)\n$`));

      // Alice takes the name: dora's credentials reach nothing of hers, alice's do.
      await userWorkspace("alice", alice.token, name);
      const doras = await sshPassword("127.0.0.1", doraToken, name, ["true"]);
      expect(doras.code).toBe(255);
      expect(doras.stderr).toMatch(/Permission denied/);
      expect((await sshPassword("127.0.0.1", alice.token, name, ["echo", "hers"])).stdout).toBe("hers\n");
    } finally {
      shell.kill("SIGKILL");
    }
  });
});

import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./harness/apps.js";
import { requireBuilt, SERVER_BUNDLE } from "./harness/processes.js";
import { callApi, cleanEnv, createWorkspace, startAgent, startServer, type AgentHandle, type ServerHandle } from "./harness/warren.js";
import { clientKey, clientOptions, ensureTestUsers, IS_ROOT, keygenFingerprint, keyOptions, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, SSH_KEY_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { tempDir } from "./harness/temp-dirs.js";

/** Who gets in, what people are told when they do not, and what the server remembers. */
describe.skipIf(!IS_ROOT)("SSH front door access and trust", () => {
  let server: ServerHandle;
  let sshd: Sshd;
  let dataDir: string;
  const agents: AgentHandle[] = [];

  const sshAs = (password: string, workspace: string, args: string[]) =>
    run("sshpass", ["-p", password, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(server.sshPort), `${workspace}@127.0.0.1`, ...args]);

  async function workspaceWithAgent(name: string, extra: Record<string, unknown>): Promise<void> {
    const created = await createWorkspace(server, name, [], extra);
    agents.push(await startAgent(server, created.agentToken, { env: { WARREN_LOG_LEVEL: "info" } }));
  }

  beforeAll(async () => {
    ensureTestUsers();
    dataDir = tempDir("warren-ssh-data-");
    sshd = await startSshd();
    server = await startServer({ WARREN_LOG_LEVEL: "info", WARREN_DATA_DIR: dataDir });
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.stop();
    await sshd?.stop();
  });

  it("refuses a wrong token, an unknown workspace and another user's key alike: Permission denied, exit 255", async () => {
    await workspaceWithAgent("ssh-open", { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER });
    expect((await sshAs(server.adminToken, "ssh-open", ["true"])).code).toBe(0);

    const wrong = await sshAs("wut_0123456789abcdefnotarealtokennotarealtokennotarealtok", "ssh-open", ["true"]);
    expect(wrong.code).toBe(255);
    expect(wrong.stderr).toBe("ssh-open@127.0.0.1: Permission denied (publickey,password).\r\n");

    // A key registered to a user who may not reach the workspace is refused exactly like a
    // workspace that does not exist.
    const bob = clientKey("bob");
    expect((await callApi(server, "UserService/CreateUser", { name: "bob" })).status).toBe(200);
    expect((await callApi(server, "UserService/AddSshKey", { user: "bob", publicKey: bob.publicKey })).status).toBe(200);
    const key = (workspace: string) => run("ssh", [...clientOptions(), ...keyOptions(bob.file), "-p", String(server.sshPort), `${workspace}@127.0.0.1`, "true"]);
    const notYours = await key("ssh-open");
    const missing = await key("no-such-workspace");
    expect(notYours.code).toBe(255);
    expect(missing.code).toBe(255);
    expect(notYours.stderr.replace("ssh-open", "X")).toBe(missing.stderr.replace("no-such-workspace", "X"));
    expect(notYours.stderr).toMatch(/Permission denied \(publickey,password\)/);
    const badToken = await sshAs(server.adminToken, "no-such-workspace", ["true"]);
    expect(badToken.stderr).toBe("no-such-workspace@127.0.0.1: Permission denied (publickey,password).\r\n");
  });

  it("says when the workspace is not connected or its sshd is not reachable, exit 255", async () => {
    await createWorkspace(server, "ssh-offline", [], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER });
    const offline = await sshAs(server.adminToken, "ssh-offline", ["echo", "hi"]);
    expect(offline.code).toBe(255);
    expect(offline.stdout).toBe("");
    expect(offline.stderr).toBe('warren: workspace unavailable: workspace "ssh-offline" is not connected\n');

    const closedPort = await freePort();
    await workspaceWithAgent("ssh-nosshd", { sshPort: closedPort, sshUser: SSH_EMPTY_PASSWORD_USER });
    const nosshd = await sshAs(server.adminToken, "ssh-nosshd", ["echo", "hi"]);
    expect(nosshd.code).toBe(255);
    expect(nosshd.stderr).toBe(
      `warren: workspace sshd not reachable: the SSH server of workspace "ssh-nosshd" is not reachable: nothing listens on port ${closedPort} inside the workspace; start sshd there (or set the workspace's sshPort)\n`,
    );
    // A stopped workspace says so, and how to start it.
    await workspaceWithAgent("ssh-stopped", { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER });
    expect((await callApi(server, "WorkspaceService/StopWorkspace", { name: "ssh-stopped" })).status).toBe(200);
    const stopped = await sshAs(server.adminToken, "ssh-stopped", ["echo", "hi"]);
    expect(stopped.code).toBe(255);
    expect(stopped.stderr).toBe('warren: workspace unavailable: workspace "ssh-stopped" is stopped (start it with StartWorkspace or `warren workspace start`)\n');
    // scp and sftp show the same line.
    const scp = await run("sshpass", ["-p", server.adminToken, "scp", ...clientOptions(), ...passwordOptions(), "-P", String(server.sshPort), "ssh-offline@127.0.0.1:/etc/hostname", "/dev/null"]);
    expect(scp.code).not.toBe(0);
    expect(scp.stderr).toContain('warren: workspace unavailable: workspace "ssh-offline" is not connected');
  });

  it("logs in to the workspace's sshd with the workspace key pair the API shows", async () => {
    await workspaceWithAgent("ssh-keyed", { sshPort: sshd.port, sshUser: SSH_KEY_USER });
    const got = await callApi<{ workspace: { sshPublicKey: string; sshUser: string; sshPort: number } }>(server, "WorkspaceService/GetWorkspace", { name: "ssh-keyed" });
    expect(got.body.workspace.sshUser).toBe(SSH_KEY_USER);
    expect(got.body.workspace.sshPort).toBe(sshd.port);
    expect(got.body.workspace.sshPublicKey).toMatch(/^ssh-ed25519 AAAA\S+ warren@ssh-keyed$/);

    // Not trusted yet: the workspace's sshd refuses the user, and the person is told what to do.
    const refused = await sshAs(server.adminToken, "ssh-keyed", ["whoami"]);
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/^warren: cannot log in to the workspace: the SSH server of workspace "ssh-keyed" refused user "warren-ssh-key": .*authorized_keys\n$/);

    sshd.authorize([got.body.workspace.sshPublicKey]);
    const ok = await sshAs(server.adminToken, "ssh-keyed", ["whoami"]);
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toBe(`${SSH_KEY_USER}\n`);
  });

  it("remembers the workspace sshd's host key on first use and refuses a changed one until an admin forgets it", async () => {
    const port = await freePort();
    let pinned = await startSshd({ port });
    try {
      await workspaceWithAgent("ssh-pinned", { sshPort: port, sshUser: SSH_EMPTY_PASSWORD_USER });
      expect((await sshAs(server.adminToken, "ssh-pinned", ["true"])).code).toBe(0);
      const remembered = keygenFingerprint(`${pinned.hostKeyFile}.pub`);
      await server.proc.waitFor((l) => l.msg === "remembered the workspace sshd host key on first use" && l["hostKey"] === remembered, 5000);

      // Same port, new host key: a man in the middle as far as the relay can tell.
      await pinned.stop();
      pinned = await startSshd({ port });
      const changed = await sshAs(server.adminToken, "ssh-pinned", ["echo", "hi"]);
      expect(changed.code).toBe(255);
      expect(changed.stdout).toBe("");
      expect(changed.stderr).toBe(
        `warren: cannot log in to the workspace: the SSH host key of workspace "ssh-pinned" changed (remembered ${remembered}, now ${keygenFingerprint(`${pinned.hostKeyFile}.pub`)}); refusing to connect. If the workspace's sshd got a new key on purpose, its owner or an admin can forget the old one (WorkspaceService/ForgetWorkspaceHostKey)\n`,
      );

      const forgot = await callApi(server, "WorkspaceService/ForgetWorkspaceHostKey", { name: "ssh-pinned" });
      expect(forgot.body).toEqual({ forgotten: true });
      const again = await sshAs(server.adminToken, "ssh-pinned", ["echo", "hi"]);
      expect(again.stdout).toBe("hi\n");
    } finally {
      await pinned.stop();
    }
  });

  it("manages registered keys through UserService: the admin anyone's, a user their own", async () => {
    for (const name of ["carol", "dave"]) expect((await callApi(server, "UserService/CreateUser", { name })).status).toBe(200);
    const k = clientKey("carol");
    const added = await callApi<{ key: { fingerprint: string; user: string; publicKey: string; title: string } }>(server, "UserService/AddSshKey", {
      user: "carol",
      publicKey: k.publicKey,
    });
    expect(added.status).toBe(200);
    expect(added.body.key.fingerprint).toBe(keygenFingerprint(`${k.file}.pub`));
    expect(added.body.key.title).toBe("test@carol");
    expect(added.body.key.publicKey).toBe(k.publicKey.split(" ").slice(0, 2).join(" "));

    // The same key again for carol: 409. For dave it is dave's own registration (see ssh-security.test.ts).
    const dup = await callApi(server, "UserService/AddSshKey", { user: "carol", publicKey: k.publicKey });
    expect(dup.status).toBe(409);
    const bad = await callApi<{ code: string; message: string }>(server, "UserService/AddSshKey", { user: "carol", publicKey: "ssh-ed25519 nope" });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^publicKey: /);
    const privateKey = await callApi<{ message: string }>(server, "UserService/AddSshKey", { user: "carol", publicKey: readFileSync(k.file, "utf8") });
    expect(privateKey.status).toBe(400);
    const nobody = await callApi<{ code: string }>(server, "UserService/AddSshKey", { user: "nobody", publicKey: clientKey("nobody").publicKey });
    expect(nobody.status).toBe(404);
    const reserved = await callApi<{ message: string }>(server, "UserService/CreateUser", { name: "admin" });
    expect(reserved.status).toBe(400);
    expect(reserved.body.message).toBe('name: "admin" is reserved');

    // A user manages their own keys with their access token, and nobody else's.
    const daveToken = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "dave" })).body.token;
    const daveKey = clientKey("dave");
    const own = await callApi<{ key: { user: string } }>(server, "UserService/AddSshKey", { publicKey: daveKey.publicKey }, daveToken);
    expect(own.status).toBe(200);
    expect(own.body.key.user).toBe("dave");
    const others = await callApi<{ code: string }>(server, "UserService/ListSshKeys", { user: "carol" }, daveToken);
    expect(others.status).toBe(403);
    expect((await callApi<{ keys: unknown[] }>(server, "UserService/ListSshKeys", {}, daveToken)).body.keys).toHaveLength(1);

    const list = await callApi<{ keys: Array<{ fingerprint: string }> }>(server, "UserService/ListSshKeys", { user: "carol" });
    expect(list.body.keys.map((x) => x.fingerprint)).toEqual([added.body.key.fingerprint]);
    expect((await callApi(server, "UserService/RemoveSshKey", { user: "dave", fingerprint: added.body.key.fingerprint })).status).toBe(404);
    expect((await callApi(server, "UserService/RemoveSshKey", { user: "carol", fingerprint: added.body.key.fingerprint })).status).toBe(200);
    expect((await callApi(server, "UserService/ListSshKeys", { user: "carol" })).body).toEqual({});
    expect((await callApi(server, "UserService/ListSshKeys", { user: "carol" }, "")).status).toBe(401);
  });

  it("lets a user in with their own key to their own workspace only", async () => {
    expect((await callApi(server, "UserService/CreateUser", { name: "erin" })).status).toBe(200);
    const erinToken = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "erin" })).body.token;
    const erinKey = clientKey("erin");
    expect((await callApi(server, "UserService/AddSshKey", { publicKey: erinKey.publicKey }, erinToken)).status).toBe(200);
    const created = await callApi<{ agentToken: string }>(
      server,
      "WorkspaceService/CreateWorkspace",
      { name: "ssh-erin", ports: [], sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER },
      erinToken,
    );
    expect(created.status).toBe(200);
    const agent = await startAgent(server, created.body.agentToken);
    try {
      const mine = await run("ssh", [...clientOptions(), ...keyOptions(erinKey.file), "-p", String(server.sshPort), "ssh-erin@127.0.0.1", "echo", "mine"]);
      expect(mine.stdout).toBe("mine\n");
      expect(mine.code).toBe(0);
      // The same key on a workspace of the admin's: no.
      const theirs = await run("ssh", [...clientOptions(), ...keyOptions(erinKey.file), "-p", String(server.sshPort), "ssh-open@127.0.0.1", "true"]);
      expect(theirs.code).toBe(255);
      expect(theirs.stderr).toMatch(/Permission denied/);
    } finally {
      await agent.stop();
    }
  });

  it("does not offer Diffie-Hellman group exchange (ssh2's server side lacks it): a client insisting on it fails at once", async () => {
    const started = Date.now();
    // The refusal is logged at INFO; the first LogLevel given wins.
    const r = await run("ssh", ["-o", "LogLevel=INFO", ...clientOptions(), "-o", "BatchMode=yes", "-o", "KexAlgorithms=diffie-hellman-group-exchange-sha256", "-p", String(server.sshPort), "x@127.0.0.1", "true"]);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/no matching key exchange method found/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("keeps its host key across restarts with the same data directory", async () => {
    const before = keyscan(server.sshPort);
    const pub = readFileSync(join(dataDir, "ssh_host_ed25519_key.pub"), "utf8").split(" ").slice(0, 2).join(" ");
    expect(before).toBe(pub);
    // The first server still runs and holds the directory's embedded store: this one keeps its state in memory.
    const again = await startServer({ WARREN_LOG_LEVEL: "info", WARREN_DATA_DIR: dataDir, WARREN_STORE: "memory" });
    try {
      expect(keyscan(again.sshPort)).toBe(before);
      const ready = await again.proc.waitFor((l) => l.msg === "warren server ready");
      expect(ready["sshHostKey"]).toBe(keygenFingerprint(join(dataDir, "ssh_host_ed25519_key.pub")));
    } finally {
      await again.stop();
    }
  });

  it("uses the operator's host key file, and stops with a message naming the setting when it is unusable", async () => {
    const dir = tempDir("warren-hostkey-");
    execFileSync("ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", join(dir, "key")]);
    const own = await startServer({ WARREN_LOG_LEVEL: "info", WARREN_SSH_HOST_KEY: join(dir, "key") });
    try {
      expect(keyscan(own.sshPort, "ecdsa")).toBe(readFileSync(join(dir, "key.pub"), "utf8").split(" ").slice(0, 2).join(" "));
    } finally {
      await own.stop();
    }
    writeFileSync(join(dir, "bad"), "not a key\n");
    requireBuilt();
    const r = spawnSync(process.execPath, [SERVER_BUNDLE], {
      env: cleanEnv({ WARREN_SSH_HOST_KEY: join(dir, "bad"), WARREN_HTTP_ADDR: "127.0.0.1:0", WARREN_AGENT_ADDR: "127.0.0.1:0", WARREN_OBSERVABILITY_ADDR: "127.0.0.1:0", WARREN_SSH_ADDR: "127.0.0.1:0" }),
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^warren-server: WARREN_SSH_HOST_KEY: .*bad is not a usable SSH host key/);

    const badAddr = spawnSync(process.execPath, [SERVER_BUNDLE, "--ssh-addr", "nowhere"], { env: cleanEnv(), encoding: "utf8", timeout: 15_000 });
    expect(badAddr.status).toBe(2);
    expect(badAddr.stderr).toMatch(/^warren-server: invalid --ssh-addr \(WARREN_SSH_ADDR\): "nowhere" is not host:port/);
    const off = await startServer({ WARREN_SSH_ADDR: "off" });
    expect(off.sshPort).toBe(0);
    await off.stop();
  });

  it("disconnects a client that does not log in within the grace time, and rate-limits failed logins", async () => {
    const strict = await startServer({ WARREN_LOG_LEVEL: "info", WARREN_SSH_LOGIN_GRACE_TIME: "1s" });
    try {
      // Grace time: a TCP connection that never speaks is closed.
      const started = Date.now();
      await new Promise<void>((resolve, reject) => {
        const s = net.connect(strict.sshPort, "127.0.0.1");
        s.on("data", () => {});
        s.on("close", () => resolve());
        s.on("error", reject);
      });
      expect(Date.now() - started).toBeGreaterThan(900);
      expect(Date.now() - started).toBeLessThan(5000);

      // 20 failures from one address within a minute, then even the right token is refused.
      const workspace = "ssh-limited";
      await createWorkspace(strict, workspace, [], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER });
      const attempt = (password: string) =>
        run("sshpass", ["-p", password, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(strict.sshPort), `${workspace}@127.0.0.1`, "true"]);
      for (let batch = 0; batch < 4; batch++) await Promise.all(Array.from({ length: 5 }, () => attempt("wrong-token-for-this-test")));
      const blocked = await attempt(strict.adminToken);
      expect(blocked.code).toBe(255);
      expect(blocked.stderr).toMatch(/Permission denied/);
      await strict.proc.waitFor((l) => l.msg === "SSH login refused: too many failed attempts from this address", 5000);
    } finally {
      await strict.stop();
    }
  });
});

/** The host key line (`<type> <base64>`) an SSH server presents, read with ssh-keyscan. */
function keyscan(port: number, type = "ed25519"): string {
  const out = execFileSync("ssh-keyscan", ["-t", type, "-p", String(port), "127.0.0.1"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const line = out.split("\n").find((l) => l && !l.startsWith("#"));
  if (!line) throw new Error(`ssh-keyscan found no ${type} key on port ${port}`);
  return line.split(" ").slice(1, 3).join(" ");
}

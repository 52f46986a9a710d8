import { execFileSync } from "node:child_process";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliEnv, cliHome, runCli } from "./harness/cli.js";
import { ensureTestUsers, run, SSH_EMPTY_PASSWORD_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { callApi, createWorkspace, startAgent, startServer, type AgentHandle, type ServerHandle } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

/** Item 4 of issue 17: ssh, scp and git through `warren ssh --stdio`, with no SSH listener at all. */
describe("warren ssh --stdio and config-ssh (WARREN_SSH_ADDR=off)", () => {
  let server: ServerHandle;
  let sshd: Sshd;
  let agent: AgentHandle;
  let home: string;
  let work: string;
  let token: string;
  const WS = "stdio";

  beforeAll(async () => {
    ensureTestUsers();
    sshd = await startSshd();
    server = await startServer({ WARREN_SSH_ADDR: "off" });
    await callApi(server, "UserService/CreateUser", { name: "erin" });
    token = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "erin" })).body.token;
    const created = await createWorkspace(server, WS, [], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER, owner: "erin" });
    agent = await startAgent(server, created.agentToken);
    home = cliHome();
    work = tempDir("warren-ssh-stdio-");
    chmodSync(work, 0o755);
    expect((await runCli(home, ["login", "--server", `http://127.0.0.1:${server.httpPort}`, "--token", token])).code).toBe(0);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await sshd?.stop();
  });

  /** OpenSSH with the config `warren config-ssh` wrote, and nothing else (no keys, no password). */
  const sshOptions = () => [
    "-F", join(home, ".ssh", "config"),
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", "IdentityAgent=none",
    "-o", "PasswordAuthentication=no",
    "-o", "PubkeyAuthentication=no",
  ];
  const env = () => cliEnv(home);

  it("there is no SSH listener, and config-ssh writes a marked Host block with the ProxyCommand", async () => {
    expect(server.sshPort).toBe(0);
    writeFileSync(join(home, ".ssh-placeholder"), "");
    const wrote = await runCli(home, ["config-ssh"]);
    expect(wrote.stderr).toBe("");
    expect(wrote.stdout).toBe(`Wrote 1 host to ${join(home, ".ssh", "config")}: ssh warren.${WS}\n`);
    const config = readFileSync(join(home, ".ssh", "config"), "utf8");
    expect(config).toContain(`Host warren.${WS}\n  User ${WS}\n  ProxyCommand `);
    expect(config).toContain(`ssh --stdio ${WS}\n`);
    // Replaced, not appended, on the next run.
    await runCli(home, ["config-ssh"]);
    expect(readFileSync(join(home, ".ssh", "config"), "utf8")).toBe(config);
  });

  it("plain ssh warren.NAME runs a command with no password or key asked for", async () => {
    const hi = await run("ssh", [...sshOptions(), `warren.${WS}`, "echo", "hello from the workspace"], { env: env() });
    expect(hi.stderr).toBe("");
    expect(hi.stdout).toBe("hello from the workspace\n");
    expect(hi.code).toBe(0);
    expect((await run("ssh", [...sshOptions(), `warren.${WS}`, "exit 3"], { env: env() })).code).toBe(3);
  });

  it("scp copies a file both ways", async () => {
    const local = join(work, "notes.txt");
    writeFileSync(local, "notes that travel over HTTPS\n");
    const drop = join(work, "drop");
    execFileSync("mkdir", ["-m", "777", drop]);
    const remote = join(drop, "copied.txt");
    const up = await run("scp", [...sshOptions(), local, `warren.${WS}:${remote}`], { env: env() });
    expect(up.stderr).toBe("");
    expect(up.code).toBe(0);
    expect(readFileSync(remote, "utf8")).toBe("notes that travel over HTTPS\n");
    const back = join(home, "back.txt");
    const down = await run("scp", [...sshOptions(), `warren.${WS}:${remote}`, back], { env: env() });
    expect(down.code).toBe(0);
    expect(readFileSync(back, "utf8")).toBe("notes that travel over HTTPS\n");
  });

  it("git clone over SSH", async () => {
    const repo = join(work, "repo.git");
    const seed = join(work, "seed");
    execFileSync("git", ["init", "-q", "--bare", repo]);
    execFileSync("git", ["init", "-q", seed]);
    writeFileSync(join(seed, "README"), "cloned through warren\n");
    const git = (args: string[], cwd: string) => execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd });
    git(["add", "README"], seed);
    git(["commit", "-q", "-m", "first"], seed);
    git(["push", "-q", repo, "HEAD:refs/heads/main"], seed);
    execFileSync("chmod", ["-R", "a+rX", work]);
    const clone = join(home, "clone");
    // The repository belongs to the test's user, the workspace's sshd runs git as another.
    const cloned = await run("git", ["clone", "-q", "-b", "main", "--upload-pack", "git -c safe.directory='*' upload-pack", `warren.${WS}:${repo}`, clone], {
      env: { ...env(), GIT_SSH_COMMAND: `ssh ${sshOptions().join(" ")}` },
    });
    expect(cloned.stderr).toBe("");
    expect(cloned.code).toBe(0);
    expect(readFileSync(join(clone, "README"), "utf8")).toBe("cloned through warren\n");
  });

  it("warren ssh NAME -- CMD runs the command; another user's workspace is refused like a missing one", async () => {
    // OpenSSH reads the real ~/.ssh (from the password database, not $HOME): an `ssh` first on
    // PATH keeps this test's host keys out of it.
    const bin = join(home, "bin");
    execFileSync("mkdir", ["-p", bin]);
    writeFileSync(join(bin, "ssh"), `#!/bin/sh\nexec /usr/bin/ssh -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null "$@"\n`);
    chmodSync(join(bin, "ssh"), 0o755);
    const viaCli = await runCli(home, ["ssh", WS, "--", "echo", "via", "warren", "ssh"], { env: { PATH: `${bin}:${process.env["PATH"] ?? ""}` } });
    expect(viaCli.stdout, viaCli.stderr).toBe("via warren ssh\n");
    expect(viaCli.code).toBe(0);
    await callApi(server, "UserService/CreateUser", { name: "frank" });
    const frank = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "frank" })).body.token;
    const theirs = await runCli(home, ["ssh", "--stdio", WS, "--token", frank]);
    const missing = await runCli(home, ["ssh", "--stdio", "no-such-ws", "--token", frank]);
    expect(theirs.stderr).toBe(`warren: workspace "${WS}" not found\n`);
    expect(missing.stderr).toBe(`warren: workspace "no-such-ws" not found\n`);
  });

  it("config-ssh --remove takes the block out and keeps the rest of the file", async () => {
    const path = join(home, ".ssh", "config");
    writeFileSync(path, `Host mine\n  HostName example.com\n\n${readFileSync(path, "utf8")}`);
    const removed = await runCli(home, ["config-ssh", "--remove"]);
    expect(removed.code).toBe(0);
    expect(readFileSync(path, "utf8")).toBe("Host mine\n  HostName example.com\n\n");
  });
});

import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chownSync, closeSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startApp, type App } from "./harness/apps.js";
import { callApi, createWorkspace, eventually, startAgent, startServer, type AgentHandle, type ServerHandle } from "./harness/warren.js";
import { clientKey, clientOptions, ensureTestUsers, IS_ROOT, keyOptions, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { tempDir } from "./harness/temp-dirs.js";

const MiB = 1024 * 1024;

/**
 * The SSH front door relaying to a real OpenSSH sshd through a real agent, driven by the real
 * OpenSSH clients: ssh (sshpass for password logins), scp and sftp.
 */
describe.skipIf(!IS_ROOT)("SSH front door relay", () => {
  let server: ServerHandle;
  let sshd: Sshd;
  let agent: AgentHandle;
  let app: App;
  let work: string;
  let adminKey: { file: string; publicKey: string };
  const WS = "ssh-relay";

  const ssh = (args: string[], options: { input?: string | Buffer; timeoutMs?: number } = {}) =>
    run("sshpass", ["-p", server.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(server.sshPort), `${WS}@127.0.0.1`, ...args], options);

  beforeAll(async () => {
    ensureTestUsers();
    work = tempDir("warren-ssh-relay-");
    sshd = await startSshd();
    app = await startApp((_req, res) => res.end("hello from the app\n"));
    server = await startServer({ WARREN_LOG_LEVEL: "info", WARREN_STREAM_WAIT_TIMEOUT: "10s" });
    const created = await createWorkspace(server, WS, [app.port], { sshPort: sshd.port, sshUser: SSH_EMPTY_PASSWORD_USER });
    agent = await startAgent(server, created.agentToken, { env: { WARREN_LOG_LEVEL: "info" } });
    adminKey = clientKey("admin");
    const added = await callApi(server, "UserService/AddSshKey", { user: "admin", publicKey: adminKey.publicKey });
    expect(added.status, JSON.stringify(added.body)).toBe(200);
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    await sshd?.stop();
    await app?.close();
  });

  it("runs a command: `ssh ws@server echo hi` prints hi", async () => {
    const r = await ssh(["echo", "hi"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("hi\n");
    expect(r.code).toBe(0);
  });

  it("passes exit codes, stderr and environment variables through", async () => {
    expect((await ssh(["exit 3"])).code).toBe(3);
    const r = await ssh(["-o", "SetEnv=WARREN_GREETING=bonjour", 'echo "$WARREN_GREETING $(whoami)"; echo oops >&2; exit 7']);
    expect(r.stdout).toBe(`bonjour ${SSH_EMPTY_PASSWORD_USER}\n`);
    expect(r.stderr).toBe("oops\n");
    expect(r.code).toBe(7);
  });

  it("relays an exit signal", async () => {
    const r = await ssh(["-v", "kill -TERM $$"]);
    // ssh exits 255 when the remote command died of a signal; -v shows the request it got.
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/rtype exit-signal/);
    expect(r.stderr).not.toMatch(/warren:/);
  });

  it("relays a signal request to the remote command (OpenSSH's client cannot send one; ssh2's can)", async () => {
    const { Client } = await import("ssh2");
    const client = new Client();
    const result = await new Promise<{ out: string; code: number | null }>((resolve, reject) => {
      client
        .on("ready", () => {
          client.exec("trap 'echo got TERM; exit 9' TERM; echo started; sleep 30 & wait", (err, channel) => {
            if (err) return reject(err);
            let out = "";
            let code: number | null = null;
            channel.on("data", (d: Buffer) => {
              out += d.toString();
              if (out === "started\n") channel.signal("TERM");
            });
            channel.on("exit", (c: number | null) => (code = c));
            channel.on("close", () => resolve({ out, code }));
          });
        })
        .on("error", reject)
        .connect({ host: "127.0.0.1", port: server.sshPort, username: WS, password: server.adminToken });
    });
    client.end();
    expect(result).toEqual({ out: "started\ngot TERM\n", code: 9 });
  });

  it("pipes 50 MiB through `cat` byte-identical, stdin EOF included", async () => {
    const file = join(work, "big.bin");
    writeFileSync(file, randomBytes(50 * MiB));
    const expected = createHash("sha256").update(readFileSync(file)).digest("hex");
    const fd = openSync(file, "r");
    const child = spawn(
      "sshpass",
      ["-p", server.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(server.sshPort), `${WS}@127.0.0.1`, "cat"],
      { stdio: [fd, "pipe", "pipe"] },
    );
    closeSync(fd);
    const hash = createHash("sha256");
    let bytes = 0;
    child.stdout!.on("data", (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    let stderr = "";
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(bytes).toBe(50 * MiB);
    expect(hash.digest("hex")).toBe(expected);
    rmSync(file);
  });

  it("gives `ssh -tt` a terminal, and a window change reaches it", async () => {
    // `script` gives ssh a terminal of its own; resizing that terminal from outside sends ssh
    // SIGWINCH, which must reach the remote shell as a window-change.
    const remote = `stty size; trap 'stty size; exit 0' WINCH; while :; do sleep 0.05; done`;
    const sshCommand = ["sshpass", "-p", server.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-tt", "-p", String(server.sshPort), `${WS}@127.0.0.1`, `"${remote}"`]
      .map((a) => (a.startsWith('"') ? a : `'${a}'`))
      .join(" ");
    const child = spawn("script", ["-qfec", `stty rows 11 cols 22; echo TTY $(tty); exec ${sshCommand}`, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      await eventually(() => /11 22/.test(out), 20_000, `initial terminal size in: ${out}`);
      const tty = /TTY (\/dev\/pts\/\d+)/.exec(out)?.[1];
      expect(tty).toBeDefined();
      const resized = await run("stty", ["-F", tty!, "rows", "33", "cols", "77"]);
      expect(resized.code, resized.stderr).toBe(0);
      await eventually(() => /33 77/.test(out), 20_000, `resized terminal size in: ${out}`);
      expect(await exited).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("copies 20 MiB up and down with scp, and lists with sftp", async () => {
    const dir = tempDir("warren-scp-");
    const uid = Number((await run("id", ["-u", SSH_EMPTY_PASSWORD_USER])).stdout.trim());
    chownSync(dir, uid, uid);
    const up = join(work, "up.bin");
    writeFileSync(up, randomBytes(20 * MiB));
    const sum = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
    const scp = (args: string[]) => run("sshpass", ["-p", server.adminToken, "scp", ...clientOptions(), ...passwordOptions(), "-P", String(server.sshPort), ...args]);
    const upload = await scp([up, `${WS}@127.0.0.1:${dir}/copy.bin`]);
    expect(upload.stderr).toBe("");
    expect(upload.code).toBe(0);
    expect(sum(join(dir, "copy.bin"))).toBe(sum(up));
    const down = join(work, "down.bin");
    const download = await scp([`${WS}@127.0.0.1:${dir}/copy.bin`, down]);
    expect(download.code, download.stderr).toBe(0);
    expect(sum(down)).toBe(sum(up));

    writeFileSync(join(dir, "listed.txt"), "x");
    // sftp's batch mode turns password prompts off: log in with the registered key.
    const sftp = await run("sftp", [...clientOptions(), ...keyOptions(adminKey.file), "-P", String(server.sshPort), "-b", "-", `${WS}@127.0.0.1`], {
      input: `ls -1 ${dir}\n`,
    });
    expect(sftp.code, sftp.stderr).toBe(0);
    expect(sftp.stdout).toContain(`${dir}/copy.bin`);
    expect(sftp.stdout).toContain(`${dir}/listed.txt`);
  });

  it("forwards `ssh -L` to an exposed port, and refuses a port the workspace does not expose", async () => {
    const [exposed, hidden] = [await freePort(), await freePort()];
    const child = spawn(
      "sshpass",
      [
        "-p", server.adminToken,
        "ssh", ...clientOptions(), ...passwordOptions(),
        "-N", "-o", "ExitOnForwardFailure=yes",
        "-L", `${exposed}:localhost:${app.port}`,
        "-L", `${hidden}:127.0.0.1:${sshd.port}`,
        "-p", String(server.sshPort), `${WS}@127.0.0.1`,
      ],
      { stdio: "ignore" },
    );
    try {
      let body = "";
      await eventually(async () => {
        const res = await fetch(`http://127.0.0.1:${exposed}/`);
        body = await res.text();
        return true;
      }, 15_000, "the -L forward to answer");
      expect(body).toBe("hello from the app\n");
      // Several requests over fresh forwarded connections.
      for (let i = 0; i < 5; i++) expect(await (await fetch(`http://127.0.0.1:${exposed}/`, { headers: { connection: "close" } })).text()).toBe(body);
      // The sshd port is dialable by the relay only, never by a forward.
      await expect(fetch(`http://127.0.0.1:${hidden}/`)).rejects.toThrow();
      await server.proc.waitFor((l) => l.msg === "refused a forward to a port the workspace does not expose", 5000);
    } finally {
      child.kill("SIGTERM");
    }
  });

  it("forwards `ssh -R` through the workspace's sshd back to the person's side", async () => {
    const remotePort = await freePort();
    const r = await ssh([
      "-o", "ExitOnForwardFailure=yes",
      "-R", `${remotePort}:127.0.0.1:${app.port}`,
      `for i in $(seq 50); do curl -sf http://127.0.0.1:${remotePort}/ && exit 0; sleep 0.1; done; exit 1`,
    ]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("hello from the app\n");
    expect(r.code).toBe(0);
  });

  it("logs in with a registered public key, and a hundred parallel `ssh ... true` all succeed", async () => {
    const one = await run("ssh", [...clientOptions(), ...keyOptions(adminKey.file), "-p", String(server.sshPort), `${WS}@127.0.0.1`, "whoami"]);
    expect(one.stderr).toBe("");
    expect(one.stdout).toBe(`${SSH_EMPTY_PASSWORD_USER}\n`);
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        run("ssh", [...clientOptions(), ...keyOptions(adminKey.file), "-p", String(server.sshPort), `${WS}@127.0.0.1`, "true"], { timeoutMs: 90_000 }),
      ),
    );
    const failed = results.filter((r) => r.code !== 0);
    expect(failed.map((r) => `${r.code}: ${r.stderr}`)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(90_000);
  });

  it("reports the workspace's sshd refusing a subsystem with a message and exit 255", async () => {
    const r = await ssh(["-s", "no-such-subsystem"]);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/^warren: cannot log in to the workspace: the SSH server of the workspace refused the subsystem no-such-subsystem request/);
  });

  it("opens a login shell on a terminal with `ssh -tt` and no command", async () => {
    const r = await run(
      "sshpass",
      ["-p", server.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-tt", "-p", String(server.sshPort), `${WS}@127.0.0.1`],
      // The terminal type travels in the pty request, from the client's TERM.
      { input: 'echo "term=$TERM on $(tty)"; exit 5\n', env: { ...process.env, TERM: "vt220" } },
    );
    expect(r.stdout).toMatch(/term=vt220 on \/dev\/pts\/\d+/);
    expect(r.code).toBe(5);
  });

  it("keeps streaming for an interactive shell without a terminal", async () => {
    const r = await run(
      "sshpass",
      ["-p", server.adminToken, "ssh", ...clientOptions(), ...passwordOptions(), "-T", "-p", String(server.sshPort), `${WS}@127.0.0.1`],
      { input: "echo one\necho two >&2\nexit 4\n" },
    );
    expect(r.stdout).toBe("one\n");
    expect(r.stderr).toBe("two\n");
    expect(r.code).toBe(4);
  });
});

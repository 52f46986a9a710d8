import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Proc } from "./harness/processes.js";
import { createWorkspace, eventually, httpRequest, startServer, workspaceHost, type ServerHandle } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

/**
 * The whole path from a stand-in container: a network namespace joined to the host by a veth
 * pair, whose firewall drops every new inbound connection. Inside it, curl downloads the agent
 * from the server, sha256sum checks it, and the agent starts an app; from the host, requests
 * to the workspace URL reach that app through the tunnel, and nothing else gets in.
 */
describe("agent in an isolated network namespace", () => {
  const id = randomBytes(3).toString("hex");
  const ns = `warren-test-${id}`;
  const hostIf = `wrnh${id}`;
  const nsIf = `wrnn${id}`;
  let subnet = "";
  let hostAddr = "";
  let nsAddr = "";
  let firewall = false;
  let dir = "";
  let server: ServerHandle;
  const procs: Proc[] = [];
  const PATH = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };
  const APP_PORT = 8000;
  /** A listener on every interface of the namespace: only the firewall keeps the host out. */
  const DECOY_PORT = 8001;

  const sh = (args: string[]) => execFileSync(args[0]!, args.slice(1), { stdio: ["ignore", "pipe", "pipe"] }).toString();
  const inNs = (args: string[]) => sh(["ip", "netns", "exec", ns, ...args]);

  function cleanUp(): void {
    // Deleting one end of a veth pair deletes both; the namespace goes with its last process.
    spawnSync("ip", ["link", "del", hostIf], { stdio: "ignore" });
    spawnSync("ip", ["netns", "del", ns], { stdio: "ignore" });
  }

  beforeAll(async () => {
    const added = spawnSync("ip", ["netns", "add", ns], { encoding: "utf8" });
    if (added.error || added.status !== 0) {
      throw new Error(
        `cannot create a network namespace (ip netns add ${ns}): ${added.error?.message ?? added.stderr.trim()}. ` +
          "This test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2; CI runs it as root.",
      );
    }
    process.once("exit", cleanUp);
    // A /30 of our own in 10.213.0.0/16, one no interface here already uses.
    for (let tries = 0; tries < 20 && !subnet; tries++) {
      const candidate = `10.213.${randomInt(0, 256)}.${randomInt(0, 64) * 4}`;
      if (sh(["ip", "-o", "addr", "show", "to", `${candidate}/30`]).trim() === "") subnet = candidate;
    }
    const base = subnet.split(".").map(Number);
    hostAddr = `${base[0]}.${base[1]}.${base[2]}.${base[3]! + 1}`;
    nsAddr = `${base[0]}.${base[1]}.${base[2]}.${base[3]! + 2}`;
    sh(["ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns]);
    sh(["ip", "addr", "add", `${hostAddr}/30`, "dev", hostIf]);
    sh(["ip", "link", "set", hostIf, "up"]);
    sh(["ip", "-n", ns, "addr", "add", `${nsAddr}/30`, "dev", nsIf]);
    sh(["ip", "-n", ns, "link", "set", nsIf, "up"]);
    sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
    // What a container without ingress has: new connections from outside are dropped.
    firewall = spawnSync("nft", ["--version"], { stdio: "ignore" }).status === 0;
    if (firewall) {
      execFileSync("ip", ["netns", "exec", ns, "nft", "-f", "-"], {
        input: `table inet warren_no_ingress {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    ct state new iif != "lo" drop\n  }\n}\n`,
      });
    } else {
      console.warn("nft is not installed: the namespace runs without its firewall (scripts/test.sh installs nftables)");
    }
    dir = tempDir("warren-netns-");
    writeFileSync(join(dir, "index.html"), `app inside namespace ${ns}\n`);
    server = await startServer({ WARREN_HTTP_ADDR: `${hostAddr}:0`, WARREN_AGENT_ADDR: `${hostAddr}:0` });
  });

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await server?.stop();
    cleanUp();
    process.off("exit", cleanUp);
  });

  /** Connects from the host; resolves with how it went within `timeoutMs`. */
  function tryConnect(host: string, port: number, timeoutMs = 1500): Promise<"connected" | "refused" | "timed out" | string> {
    return new Promise((resolve) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        resolve("timed out");
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.destroy();
        resolve("connected");
      });
      socket.once("error", (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve(err.code === "ECONNREFUSED" ? "refused" : (err.code ?? err.message));
      });
    });
  }

  it("downloads and verifies the agent inside the namespace, serves its app to the host, and lets nothing in", async () => {
    const base = `http://${hostAddr}:${server.httpPort}`;
    const ws = await createWorkspace(server, "isolated", [APP_PORT]);

    // 1. Inside the namespace: download with curl and check the published checksum. As is,
    //    not gzipped: agent-download.test.ts covers gzip, and compressing 85 MiB takes seconds
    //    of CPU from the tests running beside this one.
    const script = [
      "set -eu",
      `cd '${dir}'`,
      `curl -fsS -o warren-agent-linux-x64 '${base}/-/agent/linux-x64'`,
      `curl -fsS -o warren-agent-linux-x64.sha256 '${base}/-/agent/linux-x64.sha256'`,
      "sha256sum -c warren-agent-linux-x64.sha256",
      "chmod +x warren-agent-linux-x64",
    ].join("\n");
    const fetched = spawnSync("ip", ["netns", "exec", ns, "sh", "-c", script], { encoding: "utf8" });
    if (fetched.status !== 0) {
      const serverState = server.proc.child.exitCode === null ? "running" : `exited with ${server.proc.child.exitCode}`;
      throw new Error(`download in the namespace failed (${fetched.status}): ${fetched.stderr}\nserver ${serverState}; its output:\n${server.proc.output()}`);
    }
    const download = fetched.stdout;
    expect(download).toBe("warren-agent-linux-x64: OK\n");

    // 2. The agent starts the app (loopback only) and connects out to the server.
    const agent = new Proc(
      "ip",
      [
        "netns",
        "exec",
        ns,
        "env",
        "-i",
        "PATH=/usr/bin:/bin",
        `WARREN_SERVER=http://${hostAddr}:${server.agentPort}`,
        `WARREN_TOKEN=${ws.agentToken}`,
        `${dir}/warren-agent-linux-x64`,
        "run",
        "--",
        "python3",
        "-m",
        "http.server",
        String(APP_PORT),
        "--bind",
        "127.0.0.1",
        "--directory",
        dir,
      ],
      PATH,
      dir,
    );
    procs.push(agent);
    const ready = await agent.waitFor((l) => l["event"] === "ready", 15_000, "agent ready");
    expect(ready["urls"]).toEqual(ws.urls);
    expect(String(ready.msg)).toContain(ws.urls[0]);

    // 3. From the host, the workspace URL reaches the app through the tunnel.
    const get = () =>
      httpRequest({ address: hostAddr, port: server.httpPort, host: workspaceHost("isolated", APP_PORT), path: "/index.html", headers: { "x-warren-token": server.adminToken } });
    await eventually(async () => (await get()).status === 200, 15_000, "the app to answer through the tunnel");
    expect((await get()).body.toString()).toBe(`app inside namespace ${ns}\n`);

    // 4. Nothing on the host connects into the namespace: not to the app, not to the agent
    //    (it listens nowhere), not even to a listener on every interface.
    const listeners = inNs(["ss", "-Hltnp"]);
    expect(listeners).not.toMatch(/warren-agent/);
    expect(await tryConnect(nsAddr, APP_PORT)).not.toBe("connected");
    if (firewall) {
      const decoy = new Proc("ip", ["netns", "exec", ns, "python3", "-m", "http.server", String(DECOY_PORT), "--bind", "0.0.0.0", "--directory", dir], PATH, dir);
      procs.push(decoy);
      // It is up: reachable from inside the namespace...
      await eventually(() => spawnSync("ip", ["netns", "exec", ns, "curl", "-fsS", "-o", "/dev/null", `http://${nsAddr}:${DECOY_PORT}/`]).status === 0, 10_000, "the decoy to listen");
      // ...and not from the host: the firewall drops the connection attempt.
      expect(await tryConnect(nsAddr, DECOY_PORT)).toBe("timed out");
    }
    // While the tunnel, dialed from inside, still carries requests.
    expect((await get()).status).toBe(200);

    // 5. Stopping the agent stops its app; the server hears about it.
    agent.kill("SIGTERM");
    expect((await agent.exited).code).toBe(143);
    await server.proc.waitFor((l) => l["event"] === "workload" && l["workspace"] === "isolated" && l["state"] === "STOPPED", 10_000, "workload report");
  });
});

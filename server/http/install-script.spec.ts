import { spawnSync } from "node:child_process";
import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { installAddresses, installScript } from "./install-script.js";

function request(host: string | undefined, encrypted = false): IncomingMessage {
  return { headers: host === undefined ? {} : { host }, socket: { encrypted } } as unknown as IncomingMessage;
}

describe("installAddresses", () => {
  const defaults = { publicUrl: undefined, publicAgentUrl: undefined, defaultPublicUrl: "http://warren.localhost:8080" };

  it("uses the origin the client reached, for the download and for the agent (the public listener takes agents)", () => {
    expect(installAddresses({ ...defaults, req: request("10.0.0.1:8080") })).toEqual({ publicUrl: "http://10.0.0.1:8080", agentUrl: "http://10.0.0.1:8080" });
    expect(installAddresses({ ...defaults, req: request("ws.example.com", true) })).toEqual({
      publicUrl: "https://ws.example.com",
      agentUrl: "https://ws.example.com",
    });
  });

  it("points the agent at loopback for *.localhost, which not every resolver knows", () => {
    expect(installAddresses({ ...defaults, req: request("warren.localhost:8080") }).agentUrl).toBe("http://127.0.0.1:8080");
  });

  it("prefers configured URLs, and ignores a Host header unfit for a script", () => {
    const configured = { ...defaults, publicUrl: "https://ws.example.com", publicAgentUrl: "https://agents.example.com:443" };
    expect(installAddresses({ ...configured, req: request("evil.example") })).toEqual({ publicUrl: "https://ws.example.com", agentUrl: "https://agents.example.com:443" });
    for (const host of [undefined, "a'b", "$(reboot)", "x y", "a.b/c"]) {
      expect(installAddresses({ ...defaults, req: request(host) }).publicUrl).toBe("http://warren.localhost:8080");
    }
  });
});

describe("installScript", () => {
  it("writes the addresses in as single-quoted words", () => {
    const script = installScript({ version: "1.2.3", addresses: { publicUrl: "http://10.0.0.1:8080", agentUrl: "http://10.0.0.1:8150" } });
    expect(script.startsWith("#!/bin/sh\n")).toBe(true);
    expect(script).toContain("downloads='http://10.0.0.1:8080/-/agent'\n");
    expect(script).toContain("agent_server='http://10.0.0.1:8150'\n");
    expect(script).toContain("warren-agent 1.2.3 ($platform) installed at $target");
  });

  it("picks the binary by uname -m: x86_64 and aarch64 (and their other names), nothing else", () => {
    const script = installScript({ version: "1.2.3", addresses: { publicUrl: "http://10.0.0.1:8080", agentUrl: "http://10.0.0.1:8150" } });
    // The script's own case statement, run by sh with uname's answers given.
    const pick = script.slice(script.indexOf('case "$(uname -s)'), script.indexOf('url="$downloads/$platform"'));
    const run = (system: string, machine: string) =>
      spawnSync("/bin/sh", ["-c", `fail() { echo "fail: $*"; exit 1; }\nuname() { [ "$1" = -s ] && echo ${system} || echo ${machine}; }\n${pick}\necho "$platform"`], { encoding: "utf8" }).stdout;
    expect(run("Linux", "x86_64")).toBe("linux-x64\n");
    expect(run("Linux", "amd64")).toBe("linux-x64\n");
    expect(run("Linux", "aarch64")).toBe("linux-arm64\n");
    expect(run("Linux", "arm64")).toBe("linux-arm64\n");
    expect(run("Linux", "armv7l")).toBe("fail: this server offers linux-x64 and linux-arm64 binaries; this machine is Linux/armv7l\n");
    expect(run("Darwin", "arm64")).toBe("fail: this server offers linux-x64 and linux-arm64 binaries; this machine is Darwin/arm64\n");
  });
});

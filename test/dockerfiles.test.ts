import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import { SERVER_SETTINGS } from "../server/config.js";
import type { SettingSpec } from "../shared/settings.js";
import { AGENT_BINARY, REPO_ROOT } from "./harness/processes.js";
import { startServer } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

/**
 * Docker cannot run here, so the Dockerfiles are checked for what can go wrong without it:
 * that the build stage has every file the build reads, runs only what CI runs, and that the
 * image runs as a non-root user under any user id, with the ports and files the server uses.
 */

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (comments dropped, continuations joined). */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#") && current === "") continue;
    if (line.endsWith("\\")) {
      current += `${line.slice(0, -1).trim()} `;
      continue;
    }
    current += line;
    if (current.trim() !== "") logical.push(current.trim());
    current = "";
  }
  const stages: Stage[] = [];
  for (const line of logical) {
    const [keyword, ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    if (keyword!.toUpperCase() === "FROM") {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: m![1]!, name: m![2], instructions: [] });
      continue;
    }
    stages.at(-1)!.instructions.push({ keyword: keyword!.toUpperCase(), args });
  }
  return stages;
}

/** COPY arguments: flags, sources and destination (JSON array form included). */
function copyArgs(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.startsWith("[") ? (JSON.parse(args) as string[]) : args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith("--"));
  const paths = words.filter((w) => !w.startsWith("--"));
  const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
  return { ...(from ? { from } : {}), sources: paths.slice(0, -1), dest: paths.at(-1)! };
}

/** Whether .dockerignore keeps `path` out of the build context. */
function ignored(path: string): boolean {
  const patterns = readFileSync(join(REPO_ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  return patterns.some((p) => {
    const re = new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*/g, ".*").replace(/\*/g, "[^/]*")}(/|$)`);
    return re.test(path);
  });
}

/** Every file of the repository that the bundles of scripts/build.mjs read (packages excluded). */
async function bundleInputs(): Promise<string[]> {
  const script = readFileSync(join(REPO_ROOT, "scripts", "build.mjs"), "utf8");
  const entries = [...script.matchAll(/entryPoints: \["([^"]+)"\]/g)].map((m) => m[1]!);
  expect(entries.length).toBeGreaterThanOrEqual(4);
  const inputs = new Set<string>();
  for (const entry of entries) {
    const result = await build({
      entryPoints: [join(REPO_ROOT, entry)],
      absWorkingDir: REPO_ROOT,
      bundle: true,
      platform: "node",
      format: "cjs",
      packages: "external",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    for (const input of Object.keys(result.metafile.inputs)) inputs.add(input);
  }
  return [...inputs];
}

const SERVER_CI_COMMAND = "npm ci --no-audit --no-fund";

function checkBuildStage(stage: Stage, inputs: readonly string[]): void {
  const testScript = readFileSync(join(REPO_ROOT, "scripts", "test.sh"), "utf8");
  const copied: string[] = [];
  for (const { keyword, args } of stage.instructions) {
    if (keyword === "COPY") {
      const { from, sources } = copyArgs(args);
      expect(from, "the build stage copies from the context only").toBeUndefined();
      for (const source of sources) {
        expect(existsSync(join(REPO_ROOT, source)), `COPY ${source} exists`).toBe(true);
        expect(ignored(source), `COPY ${source} is not in .dockerignore`).toBe(false);
        copied.push(source.replace(/\/$/, ""));
      }
    }
    if (keyword === "RUN") {
      // Each step is one CI runs: the Debian packages scripts/test.sh installs, and npm ci.
      for (const step of args.split("&&").map((s) => s.trim())) {
        if (step === "apt-get update" || step.startsWith("rm -rf /var/lib/apt/lists")) continue;
        const install = /^apt-get install -y --no-install-recommends (.+)$/.exec(step);
        if (install) {
          for (const pkg of install[1]!.split(/\s+/)) expect(testScript, `test.sh installs ${pkg}`).toMatch(new RegExp(`^need \\S+ ${pkg}$`, "m"));
          continue;
        }
        if (step.startsWith("test -x dist/")) continue;
        expect(step, "a build step CI runs").toBe(SERVER_CI_COMMAND);
        expect(testScript).toContain(SERVER_CI_COMMAND);
      }
    }
  }
  // Everything `npm ci` (prepare: npm run build) reads is in the stage.
  const needed = ["package.json", "package-lock.json", "buf.yaml", "buf.gen.yaml", "proto", "scripts/build.mjs", "scripts/build", ...inputs.filter((i) => !i.startsWith("shared/gen/"))];
  const covered = (path: string) => copied.some((c) => path === c || path.startsWith(`${c}/`));
  expect(needed.filter((n) => !covered(n)), "files the build reads but the build stage lacks").toEqual([]);
  expect(stage.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args).join(" ")).toContain(SERVER_CI_COMMAND);
}

function finalStage(stages: Stage[]): Stage {
  expect(stages.length, "multi-stage").toBeGreaterThanOrEqual(2);
  return stages.at(-1)!;
}

function last(stage: Stage, keyword: string): string | undefined {
  return stage.instructions.filter((i) => i.keyword === keyword).at(-1)?.args;
}

/** Files the final stage copies from the build stage: each is a file `npm run build` makes. */
function checkBuildOutputs(stage: Stage): Map<string, string> {
  const files = new Map<string, string>();
  for (const { keyword, args } of stage.instructions.filter((i) => i.keyword === "COPY")) {
    const { from, sources, dest } = copyArgs(args);
    expect(from, `${keyword} ${args}: the final stage copies build outputs only`).toBe("build");
    for (const source of sources) {
      const m = /^\/src\/(dist\/[^*]+)$/.exec(source);
      expect(m, `${source} is a file under /src/dist`).not.toBeNull();
      expect(existsSync(join(REPO_ROOT, m![1]!)), `npm run build makes ${m![1]}`).toBe(true);
      const target = dest.endsWith("/") ? `${dest}${m![1]!.split("/").pop()}` : dest;
      files.set(target, m![1]!);
    }
  }
  return files;
}

function checkUser(stage: Stage): void {
  const user = last(stage, "USER");
  expect(user, "the final stage sets USER").toBeDefined();
  // A numeric, non-root uid with group 0, so Kubernetes' runAsNonRoot can verify it and any
  // other uid (OpenShift) still gets group 0's access.
  const m = /^(\d+):0$/.exec(user!);
  expect(m, `USER ${user} is uid:0`).not.toBeNull();
  expect(Number(m![1])).toBeGreaterThan(0);
}

/** The HEALTHCHECK's command (exec form), after its options. */
function healthcheckCommand(stage: Stage): string[] {
  const args = last(stage, "HEALTHCHECK");
  expect(args, "the final stage has a HEALTHCHECK").toBeDefined();
  const m = /^((?:--[a-z-]+=\S+\s+)*)CMD\s+(\[.*\])$/.exec(args!);
  expect(m, `HEALTHCHECK ${args} is CMD in exec form`).not.toBeNull();
  return JSON.parse(m![2]!) as string[];
}

/** The node:<major>-... image tag of a stage. */
function nodeMajor(from: string): number {
  const m = /^node:(\d+)-/.exec(from);
  expect(m, `${from} is a node image`).not.toBeNull();
  return Number(m![1]);
}

function entrypointFile(stage: Stage): string {
  const entrypoint = JSON.parse(last(stage, "ENTRYPOINT")!) as string[];
  return entrypoint[0] === "node" ? entrypoint[1]! : entrypoint[0]!;
}

describe("Dockerfile.server", () => {
  const stages = parseDockerfile(readFileSync(join(REPO_ROOT, "Dockerfile.server"), "utf8"));
  const final = finalStage(stages);

  it("builds with exactly what CI runs, from files the build context has", async () => {
    const buildStage = stages.find((s) => s.name === "build");
    expect(buildStage).toBeDefined();
    checkBuildStage(buildStage!, await bundleInputs());
  });

  it("runs the bundle and serves the agent binaries that npm run build makes, as a non-root user", () => {
    const files = checkBuildOutputs(final);
    expect(files.get(entrypointFile(final))).toBe("dist/warren-server.cjs");
    // /-/agent/linux-x64 and /-/agent/linux-arm64 serve the binaries beside the server program, with their manifests.
    expect([...files.values()]).toEqual(
      expect.arrayContaining(["dist/warren-agent-linux-x64", "dist/warren-agent-linux-x64.json", "dist/warren-agent-linux-arm64", "dist/warren-agent-linux-arm64.json"]),
    );
    checkUser(final);
  });

  it("runs on a supported Node.js (24), built on the same major", () => {
    // Node 20 reached end of life on 2026-04-30.
    expect(nodeMajor(final.from)).toBe(24);
    expect(nodeMajor(stages.find((s) => s.name === "build")!.from)).toBe(24);
  });

  it("has a HEALTHCHECK that passes against a serving server and fails once it is gone", async () => {
    const command = healthcheckCommand(final);
    expect(command[0]).toBe("node");
    // The image's environment names the observability address; a running server's real port stands in.
    const server = await startServer();
    const env = { PATH: process.env["PATH"], WARREN_OBSERVABILITY_ADDR: `0.0.0.0:${server.observabilityPort}` };
    try {
      expect(spawnSync(process.execPath, command.slice(1), { env }).status).toBe(0);
    } finally {
      await server.stop();
    }
    expect(spawnSync(process.execPath, command.slice(1), { env }).status).toBe(1);
  });

  it("listens on every interface on the default ports, and exposes them", () => {
    const env = new Map<string, string>();
    for (const args of final.instructions.filter((i) => i.keyword === "ENV").map((i) => i.args)) {
      for (const [, name, value] of args.matchAll(/(\w+)=(\S+)/g)) env.set(name!, value!);
    }
    const specs = Object.values(SERVER_SETTINGS as Record<string, SettingSpec<unknown>>);
    for (const [name, value] of env) {
      const spec = specs.find((s) => s.env === name);
      expect(spec, `${name} is a setting`).toBeDefined();
      expect(() => spec!.parse(value), `${name}=${value}`).not.toThrow();
    }
    const listeners = [SERVER_SETTINGS.httpAddr, SERVER_SETTINGS.agentAddr, SERVER_SETTINGS.observabilityAddr, SERVER_SETTINGS.sshAddr, SERVER_SETTINGS.privateAddr];
    const ports = listeners.map((spec) => {
      const port = (spec.default as { port: number }).port;
      expect(env.get(spec.env), spec.env).toBe(`0.0.0.0:${port}`);
      return port;
    });
    const exposed = last(final, "EXPOSE")!.split(/\s+/).map(Number);
    expect(exposed.sort()).toEqual(ports.sort());
  });

  it("gives group 0 the data directory, so any user id can write the SSH host key there", () => {
    const dataDir = /WARREN_DATA_DIR=(\S+)/.exec(final.instructions.filter((i) => i.keyword === "ENV").map((i) => i.args).join(" "))![1]!;
    const runs = final.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    // The final stage only prepares that directory; run those very commands on a scratch copy.
    for (const step of runs.flatMap((r) => r.split("&&").map((s) => s.trim()))) expect(step).toMatch(/^(mkdir -p|chgrp 0|chmod 0?775) /);
    const scratch = tempDir("warren-image-");
    const target = join(scratch, dataDir);
    execFileSync("sh", ["-c", runs.join(" && ").replaceAll(dataDir, target)]);
    const st = statSync(target);
    expect(st.isDirectory()).toBe(true);
    expect(st.gid).toBe(0);
    expect(st.mode & 0o070).toBe(0o070);
  });
});

describe("Dockerfile.agent", () => {
  const stages = parseDockerfile(readFileSync(join(REPO_ROOT, "Dockerfile.agent"), "utf8"));
  const final = finalStage(stages);

  it("builds with exactly what CI runs, and holds only the single-file agent for the target platform, run as a non-root user", async () => {
    const buildStage = stages.find((s) => s.name === "build");
    expect(buildStage).toBeDefined();
    expect(nodeMajor(buildStage!.from)).toBe(24);
    checkBuildStage(buildStage!, await bundleInputs());
    // The final stage is the per-architecture one docker picks by TARGETARCH.
    expect(final.from).toBe("agent-${TARGETARCH}");
    const perArch = { amd64: "dist/warren-agent-linux-x64", arm64: "dist/warren-agent-linux-arm64" };
    for (const [arch, binary] of Object.entries(perArch)) {
      const stage = stages.find((s) => s.name === `agent-${arch}`);
      expect(stage, `a stage agent-${arch}`).toBeDefined();
      expect(stage!.from).toBe("debian:bookworm-slim");
      expect([...checkBuildOutputs(stage!).entries()]).toEqual([[entrypointFile(final), binary]]);
      expect(stage!.instructions.filter((i) => i.keyword === "RUN")).toEqual([]);
    }
    expect(final.instructions.filter((i) => i.keyword === "RUN" || i.keyword === "COPY")).toEqual([]);
    checkUser(final);
  });

  it("has a HEALTHCHECK the agent binary passes", () => {
    const [program, ...args] = healthcheckCommand(final);
    expect(program).toBe(entrypointFile(final));
    const run = spawnSync(AGENT_BINARY, args, { env: {} });
    expect(run.status).toBe(0);
  });
});

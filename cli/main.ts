import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { parseDuration } from "../shared/settings.js";
import { VERSION } from "../shared/version.js";
import { ApiClient } from "./api-client.js";
import { configPath, readConfig, writeConfig } from "./cli-config.js";
import { formatTable } from "./table.js";

const USAGE = `Usage: warren <command> [flags]

Commands:
  login --server URL [--token TOKEN]     save the server and an access token (asked on stdin when not given)
  workspace create NAME [flags]          create a workspace; prints its agent token once
      --port N            expose port N (private: owner and admins only); repeatable
      --public-port N     expose port N to everyone; repeatable
      --ttl DURATION      terminate it after this long (e.g. 30m, 8h)
      --env NAME=VALUE    environment variable for the workload; repeatable
      --file NAME=PATH    file variable: the workload gets NAME=<path of a copy of PATH>; repeatable
      --owner USER        owner of the workspace (admin only)
  workspace list                         your workspaces (all of them for the admin)
  workspace get NAME
  workspace stop|start|restart|terminate NAME
  workspace expose NAME PORT [--public]  expose a port now (reachable at once; --public: without credentials)
  workspace unexpose NAME PORT           stop exposing a port; its open connections are closed
  workspace ports NAME                   ports listening in the workspace, and which are exposed
  workspace rotate-token NAME            issue a new agent token; agents using the old one are disconnected
  workspace delete NAME

Flags for every command:
  --json              print JSON for scripts instead of tables
  --server URL        server to use (WARREN_URL; default: the one saved by login)
  --token TOKEN       access token to use (WARREN_ACCESS_TOKEN; default: the one saved by login)

Exit status: 0 on success, 1 when the server refused or could not be reached, 2 on bad usage.
The config file is ${"$"}XDG_CONFIG_HOME/warren/config.json (default ~/.config/warren/config.json).
`;

/** A mistake on the command line: exit 2. */
class UsageError extends Error {}

interface WorkspaceJson {
  name: string;
  ports?: Array<{ port: number; public?: boolean }>;
  urls?: string[];
  connected?: boolean;
  createTime?: string;
  desiredState?: string;
  actualState?: string;
  actualStateTime?: string;
  expireTime?: string;
  owner?: string;
  variableNames?: string[];
  detectedPorts?: Array<{ port: number; address?: string; process?: string; exposed?: boolean }>;
}

const OPTIONS = {
  server: { type: "string" },
  token: { type: "string" },
  json: { type: "boolean" },
  port: { type: "string", multiple: true },
  "public-port": { type: "string", multiple: true },
  ttl: { type: "string" },
  env: { type: "string", multiple: true },
  file: { type: "string", multiple: true },
  owner: { type: "string" },
  public: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (see warren --help)`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.version) {
    process.stdout.write(`warren ${VERSION}\n`);
    return;
  }
  const [command, ...rest] = positionals;
  switch (command) {
    case "login":
      return login(values, rest);
    case "workspace":
    case "ws":
      return workspace(values, rest);
    case undefined:
      throw new UsageError("no command (see warren --help)");
    default:
      throw new UsageError(`unknown command "${command}" (see warren --help)`);
  }
}

async function login(values: Values, rest: string[]): Promise<void> {
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const server = normalizeServer(values.server ?? process.env["WARREN_URL"]);
  if (!server) throw new UsageError("login needs --server URL (the server's root, e.g. https://ws.example.com)");
  const token = values.token ?? process.env["WARREN_ACCESS_TOKEN"] ?? (await readTokenFromStdin());
  if (!token) throw new UsageError("no token given (--token, WARREN_ACCESS_TOKEN or stdin)");
  // Checked before it is saved: a typo fails here, not at the next command.
  await new ApiClient({ server, token }).call("WorkspaceService/ListWorkspaces", {});
  const path = configPath();
  writeConfig(path, { server, token });
  if (values.json) print({ server, config: path });
  else process.stdout.write(`Logged in to ${server}; saved to ${path}\n`);
}

async function workspace(values: Values, rest: string[]): Promise<void> {
  const [sub, name, ...extra] = rest;
  const takesPort = sub === "expose" || sub === "unexpose";
  if (extra.length > (takesPort ? 1 : 0)) throw new UsageError(`unexpected argument "${extra[takesPort ? 1 : 0]}"`);
  const client = clientFrom(values);
  const needName = () => {
    if (!name) throw new UsageError(`workspace ${sub} needs a workspace name`);
    return name;
  };
  switch (sub) {
    case "create": {
      const body = createBody(needName(), values);
      const res = await client.call<{ workspace: WorkspaceJson; agentToken: string }>("WorkspaceService/CreateWorkspace", body);
      if (values.json) return print(res);
      process.stdout.write(`${describe(res.workspace)}\n\nAgent token (shown once; keep it secret):\n  ${res.agentToken}\n`);
      process.stdout.write(`Run the agent in the workspace:\n  WARREN_SERVER=<agent address> WARREN_TOKEN=<agent token> warren-agent run -- <command>\n`);
      return;
    }
    case "list":
    case "ls": {
      if (name) throw new UsageError(`unexpected argument "${name}"`);
      const res = await client.call<{ workspaces?: WorkspaceJson[] }>("WorkspaceService/ListWorkspaces", {});
      const list = res.workspaces ?? [];
      if (values.json) return print(list);
      if (list.length === 0) {
        process.stdout.write("No workspaces.\n");
        return;
      }
      const rows = list.map((w) => [
        w.name,
        stateName(w.desiredState),
        stateName(w.actualState),
        w.connected ? "yes" : "no",
        w.owner || "-",
        w.expireTime ? w.expireTime : "-",
        w.urls?.[0] ?? "-",
      ]);
      process.stdout.write(`${formatTable(["NAME", "DESIRED", "ACTUAL", "CONNECTED", "OWNER", "EXPIRES", "URL"], rows)}\n`);
      return;
    }
    case "get": {
      const res = await client.call<{ workspace: WorkspaceJson }>("WorkspaceService/GetWorkspace", { name: needName() });
      if (values.json) return print(res.workspace);
      process.stdout.write(`${describe(res.workspace)}\n`);
      return;
    }
    case "stop":
    case "start":
    case "restart":
    case "terminate": {
      const method = `WorkspaceService/${sub[0]!.toUpperCase()}${sub.slice(1)}Workspace`;
      const res = await client.call<{ workspace: WorkspaceJson }>(method, { name: needName() });
      if (values.json) return print(res.workspace);
      const w = res.workspace;
      process.stdout.write(`workspace ${w.name}: desired ${stateName(w.desiredState)}, actual ${stateName(w.actualState)}\n`);
      return;
    }
    case "expose":
    case "unexpose": {
      const workspaceName = needName();
      if (!extra[0]) throw new UsageError(`workspace ${sub} needs a port: warren workspace ${sub} ${workspaceName} PORT`);
      const port = portNumber(extra[0], "PORT");
      const method = sub === "expose" ? "WorkspaceService/ExposePort" : "WorkspaceService/UnexposePort";
      const body = sub === "expose" ? { name: workspaceName, port, public: values.public ?? false } : { name: workspaceName, port };
      const res = await client.call<{ workspace: WorkspaceJson }>(method, body);
      if (values.json) return print(res.workspace);
      if (sub === "unexpose") {
        process.stdout.write(`port ${port} of ${workspaceName} is no longer exposed; its open connections were closed\n`);
        return;
      }
      const url = res.workspace.urls?.find((u) => new URL(u).hostname.startsWith(`${port}-`));
      process.stdout.write(`port ${port} of ${workspaceName} is exposed${values.public ? " to everyone" : ""}${url ? `: ${url}` : ""}\n`);
      return;
    }
    case "ports": {
      const res = await client.call<{ workspace: WorkspaceJson }>("WorkspaceService/GetWorkspace", { name: needName() });
      const detected = res.workspace.detectedPorts ?? [];
      if (values.json) return print({ ports: res.workspace.ports ?? [], detectedPorts: detected });
      const exposed = new Map((res.workspace.ports ?? []).map((p) => [p.port, p]));
      const ports = [...new Set([...detected.map((d) => d.port), ...exposed.keys()])].sort((a, b) => a - b);
      if (ports.length === 0) {
        process.stdout.write(`Nothing listens in ${res.workspace.name} and no port is exposed.\n`);
        return;
      }
      const rows = ports.map((port) => {
        const seen = detected.filter((d) => d.port === port);
        const p = exposed.get(port);
        return [
          String(port),
          seen.length > 0 ? "yes" : "no",
          seen.map((d) => d.address).join(", ") || "-",
          seen.find((d) => d.process)?.process ?? "-",
          p ? (p.public ? "public" : "private") : "no",
        ];
      });
      process.stdout.write(`${formatTable(["PORT", "LISTENING", "ADDRESS", "PROCESS", "EXPOSED"], rows)}\n`);
      return;
    }
    case "rotate-token": {
      const res = await client.call<{ workspace: WorkspaceJson; agentToken: string }>("WorkspaceService/RotateAgentToken", { name: needName() });
      if (values.json) return print(res);
      process.stdout.write(`New agent token for ${res.workspace.name} (shown once; the old one no longer works):\n  ${res.agentToken}\n`);
      return;
    }
    case "delete":
    case "rm": {
      await client.call("WorkspaceService/DeleteWorkspace", { name: needName() });
      if (values.json) return print({});
      process.stdout.write(`workspace ${name} deleted\n`);
      return;
    }
    case undefined:
      throw new UsageError("workspace needs a sub-command: create, list, get, stop, start, restart, terminate, expose, unexpose, ports, rotate-token, delete");
    default:
      throw new UsageError(`unknown workspace sub-command "${sub}" (see warren --help)`);
  }
}

function clientFrom(values: Values): ApiClient {
  const saved = readConfig(configPath());
  const server = normalizeServer(values.server ?? process.env["WARREN_URL"] ?? saved?.server);
  const token = values.token ?? process.env["WARREN_ACCESS_TOKEN"] ?? saved?.token;
  if (!server || !token) throw new UsageError("not logged in: run `warren login --server URL` first (or pass --server and --token)");
  return new ApiClient({ server, token });
}

function createBody(name: string, values: Values): Record<string, unknown> {
  const ports = [
    ...(values.port ?? []).map((p) => ({ port: portNumber(p, "--port") })),
    ...(values["public-port"] ?? []).map((p) => ({ port: portNumber(p, "--public-port"), public: true })),
  ];
  const variables = [
    ...(values.env ?? []).map((kv) => {
      const [varName, value] = splitAssignment(kv, "--env");
      return { name: varName, value };
    }),
    ...(values.file ?? []).map((kv) => {
      const [varName, path] = splitAssignment(kv, "--file");
      let value: string;
      try {
        value = readFileSync(path, "utf8");
      } catch (err) {
        throw new UsageError(`--file ${varName}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      return { name: varName, value, file: true };
    }),
  ];
  const body: Record<string, unknown> = { name, ports };
  if (variables.length > 0) body["variables"] = variables;
  if (values.ttl) {
    let ms: number;
    try {
      ms = parseDuration(values.ttl);
    } catch (err) {
      throw new UsageError(`--ttl: ${(err as Error).message}`);
    }
    body["ttlSeconds"] = Math.max(1, Math.round(ms / 1000));
  }
  if (values.owner) body["owner"] = values.owner;
  return body;
}

function portNumber(raw: string, flag: string): number {
  if (!/^\d{1,5}$/.test(raw)) throw new UsageError(`${flag}: "${raw}" is not a port number`);
  return Number(raw);
}

function splitAssignment(raw: string, flag: string): [string, string] {
  const eq = raw.indexOf("=");
  if (eq <= 0) throw new UsageError(`${flag}: expected NAME=VALUE, got "${raw.slice(0, 40)}"`);
  return [raw.slice(0, eq), raw.slice(eq + 1)];
}

function normalizeServer(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `https://${raw}`);
  } catch {
    throw new UsageError(`"${raw}" is not a server URL like https://ws.example.com`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`"${raw}": use an http:// or https:// URL`);
  return url.origin;
}

/** WORKSPACE_ACTUAL_STATE_CREATION_REQUESTED -> CreationRequested. */
function stateName(value: string | undefined): string {
  if (!value) return "-";
  const words = value.replace(/^WORKSPACE_(DESIRED|ACTUAL)_STATE_/, "").toLowerCase().split("_");
  return words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("");
}

function describe(w: WorkspaceJson): string {
  const rows: Array<[string, string]> = [
    ["Name", w.name],
    ["Desired state", stateName(w.desiredState)],
    ["Actual state", `${stateName(w.actualState)}${w.actualStateTime ? ` (since ${w.actualStateTime})` : ""}`],
    ["Connected", w.connected ? "yes" : "no"],
    ["Owner", w.owner || "-"],
    ["Created", w.createTime ?? "-"],
    ["Expires", w.expireTime ?? "never"],
    ["Ports", (w.ports ?? []).map((p) => `${p.port}${p.public ? " (public)" : ""}`).join(", ") || "-"],
    ["URLs", (w.urls ?? []).join(" ") || "-"],
    ["Variables", (w.variableNames ?? []).join(", ") || "-"],
  ];
  return rows.map(([k, v]) => `${`${k}:`.padEnd(15)}${v}`).join("\n");
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

async function readTokenFromStdin(): Promise<string | undefined> {
  if (process.stdin.isTTY) process.stderr.write("Access token: ");
  const rl = createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    rl.close();
    return line.trim() || undefined;
  }
  return undefined;
}

// Exit codes are set, not forced, so that stdout is flushed before the process ends.
main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`warren: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
});

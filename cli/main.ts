import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseDuration } from "../shared/settings.js";
import { VERSION } from "../shared/version.js";
import { ApiClient } from "./api-client.js";
import { configPath, readConfig, writeConfig } from "./cli-config.js";
import { formatTable } from "./table.js";
import { parseTcpForward, startPortForward } from "./commands/port-forward.js";
import { openBrowser } from "./commands/open-browser.js";
import { sshConfigBlock, sshInteractive, sshStdio, writeSshConfig } from "./commands/ssh.js";
import { readSecret } from "./commands/read-secret.js";
import { loginThroughBrowser } from "./commands/browser-login.js";
import { hostname } from "node:os";
import { ciSummary, type CiJobJson } from "./ci-workspace.js";
import { enrollmentTokenCommand } from "./commands/enrollment-token.js";
import { relativeTime } from "./relative-time.js";
import { closest } from "./suggest.js";
import { rmSync } from "node:fs";

const USAGE = `Usage: warren <command> [flags]

Commands:
  login --server URL [--token TOKEN]     log in: opens a browser where you sign in and allow the CLI, which then gets
                                         an access token of its own (or takes --token, a token piped on stdin, or one
                                         pasted at the prompt, not echoed); saves the server and the token
      --no-browser        print the URL to open instead of opening a browser
      --name LABEL        label of the token the browser login creates (default: warren login on HOST)
  logout                                 forget the saved token
  whoami                                 the user (or admin) the saved token belongs to
  token create [--name LABEL] [--ttl DURATION]   a new access token of your own (shown once)
  token list                             your access tokens (never the tokens themselves)
  token revoke ID                        revoke one of your access tokens
  enrollment-token create [--name LABEL] [--ttl DURATION] [--max-workspace-ttl DURATION] [--port N]...
                                         a token for CI systems without OIDC (WARREN_ENROLL_TOKEN of
                                         warren-agent ci): it only enrolls short-lived workspaces of yours
  enrollment-token list | revoke ID      your enrollment tokens; revoke one (its running jobs' workspaces stay)
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
  open NAME [PORT]                       open the workspace's URL (first exposed port, or PORT) in a browser
  ssh NAME [-- COMMAND...]               a shell (or COMMAND) in the workspace, through the server's HTTP(S) listener
  ssh --stdio NAME                       carry an SSH connection on stdin/stdout (an ssh ProxyCommand)
  config-ssh [--remove]                  write (or remove) Host warren.NAME entries in ~/.ssh/config, so that
                                         ssh warren.NAME, scp, rsync, git and VS Code work
  port-forward NAME --tcp [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT
                                         forward local TCP ports to exposed ports of the workspace through the
                                         server's HTTP(S) listener; --tcp is repeatable; Ctrl-C stops
  help [COMMAND]                         this text

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
  ci?: CiJobJson;
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
  tcp: { type: "string", multiple: true },
  name: { type: "string" },
  "max-workspace-ttl": { type: "string" },
  stdio: { type: "boolean" },
  "no-browser": { type: "boolean" },
  remove: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(flagProblem(err as Error));
  }
  const { values, positionals } = parsed;
  if (values.help || positionals[0] === "help") {
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
    case "port-forward":
      return portForwardCommand(values, rest);
    case "logout":
      return logout(values, rest);
    case "whoami":
      return whoami(values, rest);
    case "open":
      return openCommand(values, rest);
    case "token":
      return tokenCommand(values, rest);
    case "enrollment-token":
      return enrollmentTokenCommand(
        clientFrom(values),
        { json: values.json, name: values.name, ttl: values.ttl, maxWorkspaceTtl: values["max-workspace-ttl"], ports: values.port },
        rest,
        (message) => new UsageError(message),
      );
    case "ssh":
      return sshCommand(values, rest);
    case "config-ssh":
      return configSsh(values, rest);
    case undefined:
      throw new UsageError("no command (see warren help)");
    default: {
      const guess = closest(command, COMMANDS);
      throw new UsageError(`"${command}" is not a warren command${guess ? `; did you mean "${guess}"?` : ""} (see warren help)`);
    }
  }
}

async function login(values: Values, rest: string[]): Promise<void> {
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const server = normalizeServer(values.server ?? process.env["WARREN_URL"]);
  if (!server) throw new UsageError("login needs --server URL (the server's root, e.g. https://ws.example.com)");
  let token = values.token ?? process.env["WARREN_ACCESS_TOKEN"];
  // A token piped in is taken as is (scripts); an empty pipe or a terminal means the browser.
  if (!token && !process.stdin.isTTY) token = await readSecret("");
  let user: string | undefined;
  if (!token) {
    const made = await tokenFromBrowserOrTerminal(server, values);
    token = made.token;
    user = made.user;
  }
  // Checked before it is saved: a typo fails here, not at the next command.
  const me = await new ApiClient({ server, token }).call<{ user?: string; admin?: boolean }>("UserService/WhoAmI", {});
  user ??= me.admin ? undefined : me.user;
  const path = configPath();
  writeConfig(path, { server, token });
  if (values.json) print({ server, config: path, ...(user ? { user } : { admin: true }) });
  else process.stdout.write(`Logged in to ${server} as ${user ? `user ${user}` : "the admin"}; saved to ${path}\n`);
}

/**
 * The browser login, and on a terminal, at the same time, a prompt for a token pasted by hand
 * (not echoed): whichever answers first.
 */
async function tokenFromBrowserOrTerminal(server: string, values: Values): Promise<{ token: string; user?: string }> {
  const stop = new AbortController();
  let announced!: () => void;
  const urlShown = new Promise<void>((resolve) => (announced = resolve));
  const say = (text: string) => {
    process.stderr.write(text);
    announced();
  };
  const browser = loginThroughBrowser({
    server,
    openBrowser: !values["no-browser"],
    tokenName: values.name ?? `warren login on ${hostname()}`.slice(0, 100),
    say,
    signal: stop.signal,
  });
  if (!process.stdin.isTTY) return browser;
  const typed = urlShown.then(() => readSecret("Waiting for the browser... or paste an access token here (not shown as you type): ", stop.signal)).then((token) => {
    if (stop.signal.aborted) return new Promise<never>(() => {});
    if (!token) throw new UsageError("no token given; run warren login again");
    return { token };
  });
  try {
    return await Promise.race([browser, typed]);
  } finally {
    stop.abort();
    browser.catch(() => {});
  }
}

async function workspace(values: Values, rest: string[]): Promise<void> {
  const [sub, name, ...extra] = rest;
  const SUBS = ["create", "list", "ls", "get", "stop", "start", "restart", "terminate", "expose", "unexpose", "ports", "rotate-token", "delete", "rm"];
  if (sub !== undefined && !SUBS.includes(sub)) {
    const guess = closest(sub, SUBS);
    throw new UsageError(`"${sub}" is not a workspace sub-command${guess ? `; did you mean "${guess}"?` : ""} (see warren help)`);
  }
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
      // CI workspaces (warren-agent ci) get a column saying which job and whether it is held.
      const ci = list.some((w) => w.ci);
      const rows = list.map((w) => [
        w.name,
        stateName(w.desiredState),
        stateName(w.actualState),
        w.connected ? "yes" : "no",
        w.owner || "-",
        w.expireTime ? relativeTime(w.expireTime) : "-",
        ...(ci ? [ciSummary(w.ci)] : []),
        w.urls?.[0] ?? "-",
      ]);
      process.stdout.write(`${formatTable(["NAME", "DESIRED", "ACTUAL", "CONNECTED", "OWNER", "EXPIRES", ...(ci ? ["CI"] : []), "URL"], rows)}\n`);
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
    default: {
      const guess = closest(sub, ["create", "list", "get", "stop", "start", "restart", "terminate", "expose", "unexpose", "ports", "rotate-token", "delete"]);
      throw new UsageError(`"${sub}" is not a workspace sub-command${guess ? `; did you mean "${guess}"?` : ""} (see warren help)`);
    }
  }
}

function credentialsFrom(values: Values): { server: string; token: string } {
  const saved = readConfig(configPath());
  const server = normalizeServer(values.server ?? process.env["WARREN_URL"] ?? saved?.server);
  const token = values.token ?? process.env["WARREN_ACCESS_TOKEN"] ?? saved?.token;
  if (!server || !token) throw new UsageError("not logged in: run `warren login --server URL` first (or pass --server and --token)");
  return { server, token };
}

function clientFrom(values: Values): ApiClient {
  return new ApiClient(credentialsFrom(values));
}

async function portForwardCommand(values: Values, rest: string[]): Promise<void> {
  const [name, ...extra] = rest;
  if (!name) throw new UsageError("port-forward needs a workspace name: warren port-forward NAME --tcp [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT");
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  if (!values.tcp?.length) throw new UsageError(`port-forward needs at least one --tcp [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT (e.g. warren port-forward ${name} --tcp 5432:5432)`);
  const forwards = values.tcp.map((raw) => {
    try {
      return parseTcpForward(raw);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  });
  const credentials = credentialsFrom(values);
  // Told once, up front: a missing workspace or a port that is not exposed.
  const { workspace } = await new ApiClient(credentials).call<{ workspace: WorkspaceJson }>("WorkspaceService/GetWorkspace", { name });
  for (const f of forwards) {
    if (!(workspace.ports ?? []).some((p) => p.port === f.remotePort)) {
      throw new Error(`port ${f.remotePort} is not exposed by workspace "${name}" (expose it with \`warren workspace expose ${name} ${f.remotePort}\`)`);
    }
  }
  const run = startPortForward(credentials, name, forwards, (line) => process.stderr.write(`${line}\n`));
  let bound;
  try {
    bound = await run.listening;
  } catch (err) {
    run.close();
    throw err;
  }
  if (values.json) print({ workspace: name, forwards: bound.map((b) => ({ localAddress: b.address, localPort: b.port, remotePort: b.remotePort })) });
  else for (const b of bound) process.stdout.write(`Forwarding ${b.address.includes(":") ? `[${b.address}]` : b.address}:${b.port} -> ${name}:${b.remotePort}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      run.close();
      resolve();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  // Open connections end with the process.
  process.exit(0);
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
    ["Actual state", `${stateName(w.actualState)}${w.actualStateTime ? ` (since ${relativeTime(w.actualStateTime)})` : ""}`],
    ["Connected", w.connected ? "yes" : "no"],
    ["Owner", w.owner || "-"],
    ["Created", w.createTime ? `${relativeTime(w.createTime)} (${w.createTime})` : "-"],
    ["Expires", w.expireTime ? `${relativeTime(w.expireTime)} (${w.expireTime})` : "never"],
    ["Ports", (w.ports ?? []).map((p) => `${p.port}${p.public ? " (public)" : ""}`).join(", ") || "-"],
    ["URLs", (w.urls ?? []).join(" ") || "-"],
    ["Variables", (w.variableNames ?? []).join(", ") || "-"],
    ...(w.ci ? ([["CI job", `${ciSummary(w.ci)}${w.ci.jobUrl ? ` ${w.ci.jobUrl}` : ""}`]] as Array<[string, string]>) : []),
  ];
  return rows.map(([k, v]) => `${`${k}:`.padEnd(15)}${v}`).join("\n");
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const COMMANDS = ["login", "logout", "whoami", "token", "enrollment-token", "workspace", "open", "port-forward", "ssh", "config-ssh", "help"];

async function sshCommand(values: Values, rest: string[]): Promise<void> {
  const [name, ...command] = rest;
  if (!name) throw new UsageError("ssh needs a workspace name: warren ssh NAME [-- COMMAND...]");
  const credentials = credentialsFrom(values);
  if (values.stdio) {
    if (command.length > 0) throw new UsageError("ssh --stdio takes no command: it carries the SSH connection of the ssh that started it");
    await sshStdio(credentials, name);
    return;
  }
  process.exitCode = await sshInteractive(credentials, name, command);
}

async function configSsh(values: Values, rest: string[]): Promise<void> {
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (values.remove) {
    const path = writeSshConfig(undefined);
    if (values.json) return print({ config: path, hosts: [] });
    process.stdout.write(`Removed the warren hosts from ${path}\n`);
    return;
  }
  const res = await clientFrom(values).call<{ workspaces?: WorkspaceJson[] }>("WorkspaceService/ListWorkspaces", {});
  const names = (res.workspaces ?? []).filter((w) => !/TERMINATED/.test(w.desiredState ?? "")).map((w) => w.name);
  const path = writeSshConfig(sshConfigBlock(names));
  const hosts = names.map((n) => `warren.${n}`);
  if (values.json) return print({ config: path, hosts });
  process.stdout.write(`Wrote ${hosts.length} host${hosts.length === 1 ? "" : "s"} to ${path}${hosts.length > 0 ? `: ssh ${hosts[0]}` : ""}\n`);
}

/** parseArgs' complaint, in our words, with the flag it probably meant. */
function flagProblem(err: Error): string {
  const unknown = /Unknown option '(-{1,2}[^']+)'/.exec(err.message)?.[1];
  if (unknown) {
    const guess = closest(unknown.replace(/^-+/, ""), Object.keys(OPTIONS));
    return `unknown flag ${unknown}${guess ? `; did you mean --${guess}?` : ""} (see warren help)`;
  }
  const missing = /Option '(?:-\w, )?(--[^ ]+) <value>' argument missing/.exec(err.message)?.[1];
  if (missing) return `${missing} needs a value (see warren help)`;
  const notBoolean = /Option '(?:-\w, )?(--[^']+)' does not take an argument/.exec(err.message)?.[1];
  if (notBoolean) return `${notBoolean} takes no value (see warren help)`;
  return `${err.message} (see warren help)`;
}

async function logout(values: Values, rest: string[]): Promise<void> {
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const path = configPath();
  const saved = readConfig(path);
  rmSync(path, { force: true });
  if (values.json) return print({ loggedOut: saved !== undefined, config: path });
  process.stdout.write(saved ? `Logged out of ${saved.server}; removed ${path}\n` : "Not logged in.\n");
}

async function whoami(values: Values, rest: string[]): Promise<void> {
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const credentials = credentialsFrom(values);
  const me = await new ApiClient(credentials).call<{ user?: string; admin?: boolean; tokenId?: string; tokenExpireTime?: string }>("UserService/WhoAmI", {});
  if (values.json) return print({ server: credentials.server, ...me });
  const who = me.admin ? "the admin" : `user ${me.user}`;
  process.stdout.write(`${who} on ${credentials.server}${me.tokenExpireTime ? ` (token expires ${relativeTime(me.tokenExpireTime)})` : ""}\n`);
}

async function openCommand(values: Values, rest: string[]): Promise<void> {
  const [name, portText, ...extra] = rest;
  if (!name) throw new UsageError("open needs a workspace name: warren open NAME [PORT]");
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const { workspace } = await clientFrom(values).call<{ workspace: WorkspaceJson }>("WorkspaceService/GetWorkspace", { name });
  const urls = workspace.urls ?? [];
  let url: string | undefined;
  if (portText) {
    const port = portNumber(portText, "PORT");
    url = urls.find((u) => new URL(u).hostname.startsWith(`${port}-`));
    if (!url) throw new Error(`port ${port} is not exposed by workspace "${name}" (expose it with \`warren workspace expose ${name} ${port}\`)`);
  } else {
    url = urls[0];
    if (!url) throw new Error(`workspace "${name}" exposes no port (expose one with \`warren workspace expose ${name} PORT\`)`);
  }
  const opened = await openBrowser(url);
  if (values.json) return print({ url, opened });
  process.stdout.write(opened ? `Opening ${url}\n` : `Open ${url} in your browser\n`);
}

interface AccessTokenJson {
  id: string;
  name?: string;
  createTime?: string;
  expireTime?: string;
  current?: boolean;
}

async function tokenCommand(values: Values, rest: string[]): Promise<void> {
  const [sub, arg, ...extra] = rest;
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const client = clientFrom(values);
  switch (sub) {
    case "create": {
      if (arg) throw new UsageError(`unexpected argument "${arg}" (a label goes in --name)`);
      const body: Record<string, unknown> = {};
      if (values.name) body["name"] = values.name;
      if (values.ttl) {
        try {
          body["ttlSeconds"] = Math.max(1, Math.round(parseDuration(values.ttl) / 1000));
        } catch (err) {
          throw new UsageError(`--ttl: ${(err as Error).message}`);
        }
      }
      const res = await client.call<{ token: string; id: string; expireTime?: string }>("UserService/CreateAccessToken", body);
      if (values.json) return print(res);
      process.stdout.write(`New access token ${res.id} (shown once; expires ${relativeTime(res.expireTime)}):\n  ${res.token}\n`);
      return;
    }
    case "list":
    case "ls": {
      if (arg) throw new UsageError(`unexpected argument "${arg}"`);
      const res = await client.call<{ tokens?: AccessTokenJson[] }>("UserService/ListAccessTokens", {});
      const tokens = res.tokens ?? [];
      if (values.json) return print(tokens);
      if (tokens.length === 0) {
        process.stdout.write("No access tokens.\n");
        return;
      }
      const rows = tokens.map((t) => [t.id, t.name || "-", relativeTime(t.createTime), relativeTime(t.expireTime), t.current ? "yes" : ""]);
      process.stdout.write(`${formatTable(["ID", "NAME", "CREATED", "EXPIRES", "CURRENT"], rows)}\n`);
      return;
    }
    case "revoke": {
      if (!arg) throw new UsageError("token revoke needs a token id (see warren token list)");
      await client.call("UserService/RevokeAccessToken", { id: arg });
      if (values.json) return print({});
      process.stdout.write(`access token ${arg} revoked\n`);
      return;
    }
    case undefined:
      throw new UsageError("token needs a sub-command: create, list, revoke");
    default: {
      const guess = closest(sub, ["create", "list", "revoke"]);
      throw new UsageError(`"${sub}" is not a token sub-command${guess ? `; did you mean "${guess}"?` : ""} (see warren help)`);
    }
  }
}

// Exit codes are set, not forced, so that stdout is flushed before the process ends.
main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`warren: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
});

/** What the banner shows: where everything is, and what to type next. */
export interface BannerInfo {
  readonly version: string;
  readonly publicUrl: string;
  readonly agentUrl: string;
  readonly metricsUrl: string;
  /** `ssh -p PORT` target host, when the SSH listener is on. */
  readonly ssh?: { readonly host: string; readonly port: number };
  /** Where the admin token is (or the token itself, on the start that generated it). */
  readonly adminToken: string;
  /** The token to show in the login command, when this start generated it. */
  readonly loginToken?: string;
  /** Where users, tokens and workspaces are kept. */
  readonly state: string;
}

/**
 * The short summary printed when stdout is a terminal (a person ran `npm start`); pipes and
 * containers get only the JSON log lines.
 */
export function readyBanner(info: BannerInfo): string {
  const rows: Array<[string, string]> = [
    ["Web, API, login", info.publicUrl],
    ["Agents connect to", info.agentUrl],
    ...(info.ssh ? ([["SSH", `ssh -p ${info.ssh.port} <workspace>@${info.ssh.host}`]] as Array<[string, string]>) : []),
    ["Metrics, health", info.metricsUrl],
    ["Admin token", info.adminToken],
    ["State", info.state],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const token = info.loginToken ?? "<admin token>";
  return [
    "",
    `  Warren ${info.version} is ready`,
    "",
    ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`),
    "",
    "  Next, in another terminal:",
    `    ./bin/warren.js login --server ${info.publicUrl} --token ${token}`,
    "    ./bin/warren.js workspace create demo --port 8000",
    `    WARREN_SERVER=${info.agentUrl} WARREN_TOKEN=<agent token> ./bin/warren-agent.js run -- python3 -m http.server 8000 --bind 127.0.0.1`,
    "",
    "",
  ].join("\n");
}

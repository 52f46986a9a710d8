/** What the banner shows: where everything is, and what to type next. */
export interface BannerInfo {
  readonly version: string;
  readonly publicUrl: string;
  readonly agentUrl: string;
  readonly metricsUrl: string;
  /** `ssh -p PORT` target host, when the SSH listener is on. */
  readonly ssh?: { readonly host: string; readonly port: number };
  /** The admin token when the server generated it for this run (shown once, here and in the log). */
  readonly generatedAdminToken?: string;
  /** Whether Redis keeps the state (otherwise it is gone at exit). */
  readonly persistent: boolean;
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
    ["Admin token", info.generatedAdminToken ? `${info.generatedAdminToken}  (generated for this run; set WARREN_ADMIN_TOKEN to keep one)` : "the one in WARREN_ADMIN_TOKEN"],
    ["State", info.persistent ? "in Redis" : "in memory: gone when the server stops (set WARREN_REDIS_URL to keep it)"],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const token = info.generatedAdminToken ?? "$WARREN_ADMIN_TOKEN";
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

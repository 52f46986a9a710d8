import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

/** What `warren login` saves. */
export interface CliConfig {
  /** Base URL of the Warren server's root domain, e.g. https://ws.example.com. */
  readonly server: string;
  /** An access token (or the admin token). */
  readonly token: string;
}

/** `$XDG_CONFIG_HOME/warren/config.json`, else `~/.config/warren/config.json`. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env["XDG_CONFIG_HOME"] || join(env["HOME"] || homedir(), ".config");
  return join(base, "warren", "config.json");
}

/** The saved config, or undefined when there is none. Throws when the file is unreadable. */
export function readConfig(path: string): CliConfig | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: Partial<CliConfig>;
  try {
    parsed = JSON.parse(text) as Partial<CliConfig>;
  } catch {
    throw new Error(`${path} is not JSON; run \`warren login\` again`);
  }
  if (typeof parsed.server !== "string" || typeof parsed.token !== "string") throw new Error(`${path} lacks server or token; run \`warren login\` again`);
  return { server: parsed.server, token: parsed.token };
}

/** Saves the config readable by its owner only (0600, in a 0700 directory): it holds a token. */
export function writeConfig(path: string, config: CliConfig): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  // writeFileSync keeps the mode of a file that already existed.
  chmodSync(path, 0o600);
}

import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { ErrorCode, WarrenError } from "./errors.js";

/**
 * Every setting of a program is a flag, a WARREN_* environment variable and a config-file key,
 * resolved flag > env > file > default. A bad value or an unknown key stops the program with
 * one line naming the setting.
 */
export interface SettingSpec<T> {
  /** Config-file key (camelCase). */
  readonly key: string;
  /** Command-line flag without the leading dashes (kebab-case). */
  readonly flag: string;
  readonly env: string;
  readonly description: string;
  /** Shown by --help; omitted for secrets. */
  readonly defaultText?: string;
  readonly default?: T;
  /** A flag that takes no value (--flag sets it true). */
  readonly boolean?: boolean;
  /**
   * The value is a list or mapping: the config file may hold it as YAML (passed to parse as
   * JSON text), the flag and the variable as JSON.
   */
  readonly structured?: boolean;
  /** Parses a raw value; throws an Error whose message says what is wrong. */
  readonly parse: (raw: string) => T;
}

type SpecValue<S> = S extends SettingSpec<infer T> ? T : never;
/** Resolved settings: a setting without a default is `T | undefined` by its spec's type. */
export type SettingsOf<Specs extends Record<string, SettingSpec<any>>> = {
  [K in keyof Specs]: SpecValue<Specs[K]>;
};

/** Declares a setting with its value type inferred from parse. */
export function setting<T>(spec: SettingSpec<T>): SettingSpec<T> {
  return spec;
}

export interface ParsedCommandLine {
  readonly values: Map<string, string>;
  /** Arguments that are not flags, in order (sub-commands, and everything after "--"). */
  readonly positionals: string[];
  /** Arguments after a literal "--". */
  readonly rest: string[];
  readonly help: boolean;
  readonly version: boolean;
  readonly configFile: string | undefined;
}

function invalid(message: string): WarrenError {
  return new WarrenError(ErrorCode.InvalidArgument, message);
}

/** Splits argv into flag values and positionals; unknown flags are errors. */
export function parseCommandLine(argv: readonly string[], specs: Record<string, SettingSpec<unknown>>): ParsedCommandLine {
  const byFlag = new Map(Object.values(specs).map((s) => [s.flag, s]));
  const values = new Map<string, string>();
  const positionals: string[] = [];
  let rest: string[] = [];
  let help = false;
  let version = false;
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      rest = argv.slice(i + 1);
      break;
    }
    if (arg === "-h" || arg === "--help") {
      help = true;
      continue;
    }
    if (arg === "--version") {
      version = true;
      continue;
    }
    if (!arg.startsWith("--") || arg.length === 2) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    if (name === "config") {
      const value = inline ?? argv[++i];
      if (value === undefined) throw invalid("--config needs a file path");
      configFile = value;
      continue;
    }
    const spec = byFlag.get(name);
    if (!spec) throw invalid(`unknown flag --${name} (see --help)`);
    if (spec.boolean && inline === undefined) {
      values.set(spec.flag, "true");
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw invalid(`--${name} needs a value`);
    values.set(spec.flag, value);
  }
  return { values, positionals, rest, help, version, configFile };
}

/** Reads a YAML (or JSON) config file into raw string values by key. */
export function readConfigFile(path: string, specs: Record<string, SettingSpec<unknown>>): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw invalid(`config file ${path}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : (err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw invalid(`config file ${path}: ${(err as Error).message.split("\n")[0]}`);
  }
  const out = new Map<string, string>();
  if (doc === null || doc === undefined) return out;
  if (typeof doc !== "object" || Array.isArray(doc)) throw invalid(`config file ${path}: expected a mapping of settings`);
  const byKey = new Map(Object.values(specs).map((s) => [s.key, s]));
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (!byKey.has(key)) throw invalid(`config file ${path}: unknown setting "${key}"`);
    if (byKey.get(key)!.structured && value !== null && typeof value === "object") {
      out.set(key, JSON.stringify(value));
      continue;
    }
    if (value === null || typeof value === "object") throw invalid(`config file ${path}: setting "${key}" must be a scalar`);
    out.set(key, String(value));
  }
  return out;
}

/**
 * Resolves every setting, flag > env > file > default. Throws invalid_argument with a message
 * that names the setting.
 */
export function resolveSettings<Specs extends Record<string, SettingSpec<any>>>(
  specs: Specs,
  sources: { flags: Map<string, string>; env: NodeJS.ProcessEnv; file?: Map<string, string> },
): SettingsOf<Specs> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs)) {
    let raw: string | undefined;
    let origin: string;
    if (sources.flags.has(spec.flag)) {
      raw = sources.flags.get(spec.flag);
      origin = `--${spec.flag}`;
    } else if (sources.env[spec.env] !== undefined && sources.env[spec.env] !== "") {
      raw = sources.env[spec.env];
      origin = spec.env;
    } else if (sources.file?.has(spec.key)) {
      raw = sources.file.get(spec.key);
      origin = `config key ${spec.key}`;
    } else {
      out[name] = spec.default;
      continue;
    }
    try {
      out[name] = spec.parse(raw!);
    } catch (err) {
      throw invalid(`invalid ${origin} (${spec.env}): ${(err as Error).message}`);
    }
  }
  return out as SettingsOf<Specs>;
}

/** The default as --help shows it: its text, its value, or "none". */
export function defaultTextOf(spec: SettingSpec<unknown>): string {
  return spec.defaultText ?? (spec.default === undefined ? "none" : String(spec.default));
}

/** Text for --help: one line per setting with its flag, variable and default. */
export function settingsHelp(specs: Record<string, SettingSpec<unknown>>): string {
  const rows = Object.values(specs).map((s) => {
    const flag = `--${s.flag}${s.boolean ? "" : " <value>"}`;
    return `  ${flag.padEnd(34)} ${s.env.padEnd(30)} ${s.description} (default: ${defaultTextOf(s)})`;
  });
  return rows.join("\n");
}

// --- value parsers ---

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function parsePort(raw: string): number {
  if (!/^\d{1,5}$/.test(raw)) throw new Error(`"${raw}" is not a port number`);
  const port = Number(raw);
  if (port > 65535) throw new Error(`port ${port} is out of range 0-65535`);
  return port;
}

/** host:port, [v6]:port or :port (all interfaces). */
export function parseHostPort(raw: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(raw.trim());
  if (!m) throw new Error(`"${raw}" is not host:port`);
  const host = m[1] ?? m[2] ?? "";
  return { host: host === "" ? "0.0.0.0" : host, port: parsePort(m[3]!) };
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration such as 500ms, 3s, 5m, 24h or 7d; returns milliseconds. */
export function parseDuration(raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(raw.trim());
  if (!m) throw new Error(`"${raw}" is not a duration like 500ms, 3s, 5m or 24h`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export function parseIntegerIn(min: number, max: number): (raw: string) => number {
  return (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`"${raw}" is not an integer`);
    const n = Number(raw);
    if (n < min || n > max) throw new Error(`${n} is out of range ${min}-${max}`);
    return n;
  };
}

export function parseBoolean(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  throw new Error(`"${raw}" is not a boolean (true or false)`);
}

export function parseOneOf<T extends string>(choices: readonly T[]): (raw: string) => T {
  return (raw) => {
    if (!(choices as readonly string[]).includes(raw)) throw new Error(`"${raw}" is not one of ${choices.join(", ")}`);
    return raw as T;
  };
}

export function parseNonEmpty(raw: string): string {
  if (raw.trim() === "") throw new Error("must not be empty");
  return raw;
}

/** A path to a file this process can read (checked at start, so a typo stops it at once). */
export function parseReadableFile(raw: string): string {
  try {
    readFileSync(raw);
  } catch (err) {
    throw new Error(`cannot read ${raw}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return raw;
}

/** A comma-separated list of non-empty names, e.g. groups ("a, b,c" -> ["a", "b", "c"]). */
export function parseCommaList(raw: string): string[] {
  const items = raw.split(",").map((s) => s.trim());
  if (items.some((s) => s === "")) throw new Error(`"${raw}" has an empty item (use names separated by commas)`);
  return items;
}

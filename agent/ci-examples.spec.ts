import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseCiCommandLine } from "./ci-command.js";

const EXAMPLES = join(import.meta.dirname, "..", "examples");

/** Every `./warren-agent ci ...` command in a text, joined across shell line continuations. */
function ciCommands(text: string): string[] {
  return [...text.replace(/\\\n\s*/g, "").matchAll(/\.\/warren-agent (ci [^\n]*)/g)].map((m) => m[1]!);
}

/** Splits a command line like a shell would for these examples (double quotes, no expansions). */
function words(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

describe("the CI templates in examples/", () => {
  const files = readdirSync(EXAMPLES, { recursive: true, encoding: "utf8" }).filter((f) => /\.(ya?ml|sh)$/.test(f));

  it("are valid YAML, and each warren-agent ci command in them is one the agent accepts", () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
    let commands = 0;
    for (const file of files) {
      const text = readFileSync(join(EXAMPLES, file), "utf8");
      // YAML files: the job's script lines as CI runs them (YAML folds continuation lines).
      const scripts = file.endsWith(".sh") ? [text] : strings(parseYaml(text));
      for (const script of scripts) for (const line of ciCommands(script)) commands += checked(file, line);
    }
    expect(commands).toBeGreaterThanOrEqual(5);
  });
});

function strings(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (value && typeof value === "object") return Object.values(value).flatMap(strings);
  return [];
}

function checked(file: string, line: string): number {
  const argv = words(line).slice(1);
  const options = parseCiCommandLine(argv, { WARREN_SERVER: "https://ws.example.com" });
  expect(options, file).not.toBe("help");
  if (options === "help") return 0;
  expect(options.ports.length, `${file}: ${line}`).toBeGreaterThan(0);
  expect(options.command.length, `${file}: ${line}`).toBeGreaterThan(0);
  return 1;
}

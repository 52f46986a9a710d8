import { Writable } from "node:stream";

/** How log lines are written: JSON objects (pipes, containers, log shippers) or lines for people. */
export type LogFormat = "json" | "pretty";
export const LOG_FORMATS: readonly LogFormat[] = ["json", "pretty"];

/** The format when none is set: readable on a terminal, JSON everywhere else. */
export function defaultLogFormat(stream: { isTTY?: boolean } = process.stdout): LogFormat {
  return stream.isTTY ? "pretty" : "json";
}

const LEVEL_STYLE: Record<string, string> = { trace: "TRACE", debug: "DEBUG", info: "INFO ", warn: "WARN ", error: "ERROR", fatal: "FATAL" };
/** Fields every line has, shown in the prefix (time, level) or not at all. */
const HIDDEN = new Set(["level", "time", "pid", "name", "msg"]);

/** One JSON log line as a person reads it: `12:34:56 INFO  message key=value ...`. */
export function prettyLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const time = typeof entry["time"] === "string" ? entry["time"].slice(11, 19) : "";
  const level = LEVEL_STYLE[String(entry["level"])] ?? String(entry["level"]).toUpperCase();
  const fields = Object.entries(entry)
    .filter(([key]) => !HIDDEN.has(key))
    .map(([key, value]) => `${key}=${typeof value === "string" && !/[\s"]/.test(value) ? value : JSON.stringify(value)}`);
  return [time, level, String(entry["msg"] ?? ""), ...fields].filter((p) => p !== "").join(" ");
}

/** A stream pino writes JSON lines into, passing them on to `out` as pretty lines. */
export function prettyStream(out: NodeJS.WritableStream = process.stdout): Writable {
  let pending = "";
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending += chunk.toString("utf8");
      let nl;
      let text = "";
      while ((nl = pending.indexOf("\n")) >= 0) {
        text += `${prettyLine(pending.slice(0, nl))}\n`;
        pending = pending.slice(nl + 1);
      }
      if (text) out.write(text);
      callback();
    },
  });
}

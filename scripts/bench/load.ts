import { runAsync } from "./processes.js";

export interface LoadResult {
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  switch (unit) {
    case "us":
      return n / 1000;
    case "ms":
      return n;
    case "s":
      return n * 1000;
    case "m":
      return n * 60_000;
    default:
      throw new Error(`unknown latency unit ${unit}`);
  }
}

/** Runs wrk against a URL with a Host header and returns throughput and latency percentiles. */
export async function wrk(options: {
  url: string;
  headers?: Record<string, string>;
  connections: number;
  threads?: number;
  durationSeconds: number;
}): Promise<LoadResult> {
  const args = ["--latency", "-t", String(options.threads ?? 2), "-c", String(options.connections), "-d", `${options.durationSeconds}s`];
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push("-H", `${k}: ${v}`);
  args.push(options.url);
  const out = await runAsync("wrk", args, (options.durationSeconds + 60) * 1000);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p50 = /\s50%\s+([\d.]+)(us|ms|s|m)\b/.exec(out);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s|m)\b/.exec(out);
  if (!rps || !p50 || !p99) throw new Error(`could not read wrk output:\n${out}`);
  const errors = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrorCount = socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return {
    requestsPerSecond: Number(rps[1]),
    p50Ms: toMs(p50[1]!, p50[2]!),
    p99Ms: toMs(p99[1]!, p99[2]!),
    errors: (errors ? Number(errors[1]) : 0) + socketErrorCount,
  };
}

/** Downloads `url` with curl into /dev/null; returns MB/s (10^6 bytes). */
export async function curlDownload(url: string, headers: Record<string, string>, expectBytes: number): Promise<number> {
  const args = ["-s", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}"];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  args.push(url);
  const out = (await runAsync("curl", args)).trim().split(" ");
  const size = Number(out[0]);
  if (size !== expectBytes) throw new Error(`download of ${url} returned ${size} bytes, expected ${expectBytes}`);
  return Number(out[1]) / 1e6;
}

/** Uploads `bytes` zero bytes with curl (chunked); returns MB/s. */
export async function curlUpload(url: string, headers: Record<string, string>, bytes: number): Promise<number> {
  const header = Object.entries(headers)
    .map(([k, v]) => `-H '${k}: ${v}'`)
    .join(" ");
  // The app answers with the byte count it received; curl appends its upload speed.
  const script = `head -c ${bytes} /dev/zero | curl -s -T - -w ' %{speed_upload}' ${header} '${url}'`;
  const out = (await runAsync("sh", ["-c", script])).trim().split(" ");
  if (Number(out[0]) !== bytes) throw new Error(`upload to ${url}: the app received ${out[0]} bytes, expected ${bytes}`);
  return Number(out[1]) / 1e6;
}

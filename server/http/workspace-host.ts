import { isIP } from "node:net";
import { isValidWorkspaceName } from "../domain/workspace-name.js";

/**
 * Workspace host names: `{port}-{workspace}.{root}`. The workspace name is a DNS label
 * (domain/workspace-name.ts), so the host is parsed by taking the digits before the first
 * hyphen as the port.
 */
export type HostTarget =
  | { readonly kind: "root" }
  | { readonly kind: "workspace"; readonly workspace: string; readonly port: number }
  | { readonly kind: "invalid"; readonly reason: string };

/** Strips the port of a Host header value ("a.b:8080" -> "a.b", "[::1]:80" -> "::1"). */
export function hostWithoutPort(host: string): string {
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    return end > 0 ? host.slice(1, end) : host;
  }
  const colon = host.lastIndexOf(":");
  return colon >= 0 ? host.slice(0, colon) : host;
}


/**
 * What a Host header points at: the root domain (control API, login, downloads; IP literals
 * count as the root, for health checks and load balancers), a workspace port, or nothing we
 * serve.
 */
export function parseHost(hostHeader: string | undefined, rootDomain: string): HostTarget {
  if (!hostHeader) return { kind: "invalid", reason: "missing Host header" };
  const host = hostWithoutPort(hostHeader.trim().toLowerCase()).replace(/\.$/, "");
  if (host === rootDomain || isIP(host) !== 0) return { kind: "root" };
  const suffix = `.${rootDomain}`;
  if (!host.endsWith(suffix)) return { kind: "invalid", reason: `host "${host}" is not under ${rootDomain}` };
  const label = host.slice(0, -suffix.length);
  const m = /^(\d{1,5})-(.+)$/.exec(label);
  if (!m) return { kind: "invalid", reason: `host "${host}" is not {port}-{workspace}.${rootDomain}` };
  const port = Number(m[1]);
  const workspace = m[2]!;
  if (port < 1 || port > 65535 || m[1]!.startsWith("0")) return { kind: "invalid", reason: `invalid port in host "${host}"` };
  if (!isValidWorkspaceName(workspace)) return { kind: "invalid", reason: `invalid workspace name in host "${host}"` };
  return { kind: "workspace", workspace, port };
}

/** `{scheme}://{port}-{workspace}.{root}[:{listener port}]/` for a base like http://warren.localhost:8080. */
export function workspaceUrl(publicBase: string, rootDomain: string, workspace: string, port: number): string {
  const base = new URL(publicBase);
  base.hostname = `${port}-${workspace}.${rootDomain}`;
  return base.toString();
}

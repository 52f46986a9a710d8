import { parseDuration } from "../../shared/settings.js";
import type { ApiClient } from "../api-client.js";
import { relativeTime } from "../relative-time.js";
import { formatTable } from "../table.js";

interface EnrollmentTokenJson {
  id: string;
  user?: string;
  name?: string;
  createTime?: string;
  expireTime?: string;
  maxWorkspaceTtlSeconds?: number;
  allowedPorts?: number[];
}

export interface EnrollmentTokenFlags {
  readonly json?: boolean;
  readonly name?: string;
  readonly ttl?: string;
  readonly maxWorkspaceTtl?: string;
  readonly ports?: readonly string[];
}

const SUBCOMMANDS = ["create", "list", "revoke"];

/**
 * `warren enrollment-token create|list|revoke`: tokens for CI systems without OIDC ID tokens
 * (`WARREN_ENROLL_TOKEN` of `warren-agent ci`), which can only enroll short-lived workspaces
 * of their user. `usage` makes the error of a bad command line (exit 2).
 */
export async function enrollmentTokenCommand(client: ApiClient, flags: EnrollmentTokenFlags, rest: readonly string[], usage: (message: string) => Error): Promise<void> {
  const [sub, arg, ...extra] = rest;
  if (extra.length > 0) throw usage(`unexpected argument "${extra[0]}"`);
  const print = (value: unknown): void => {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  };
  const seconds = (flag: string, raw: string | undefined) => {
    if (raw === undefined) return undefined;
    try {
      return Math.max(1, Math.round(parseDuration(raw) / 1000));
    } catch (err) {
      throw usage(`--${flag}: ${(err as Error).message}`);
    }
  };
  switch (sub) {
    case "create": {
      if (arg) throw usage(`unexpected argument "${arg}" (a label goes in --name)`);
      const allowedPorts = (flags.ports ?? []).map((p) => {
        if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw usage(`--port: "${p}" is not a port number 1-65535`);
        return Number(p);
      });
      const body = {
        ...(flags.name ? { name: flags.name } : {}),
        ...(flags.ttl ? { ttlSeconds: seconds("ttl", flags.ttl) } : {}),
        ...(flags.maxWorkspaceTtl ? { maxWorkspaceTtlSeconds: seconds("max-workspace-ttl", flags.maxWorkspaceTtl) } : {}),
        ...(allowedPorts.length > 0 ? { allowedPorts } : {}),
      };
      const res = await client.call<{ token: string; enrollmentToken: EnrollmentTokenJson }>("UserService/CreateEnrollmentToken", body);
      if (flags.json) return print(res);
      const t = res.enrollmentToken;
      process.stdout.write(
        `New enrollment token ${t.id} (shown once; expires ${relativeTime(t.expireTime)}; workspaces live at most ${t.maxWorkspaceTtlSeconds ?? 0}s` +
          `${t.allowedPorts?.length ? `, ports ${t.allowedPorts.join(", ")}` : ""}):\n  ${res.token}\n` +
          `Give it to the CI job as WARREN_ENROLL_TOKEN for warren-agent ci.\n`,
      );
      return;
    }
    case "list":
    case "ls": {
      if (arg) throw usage(`unexpected argument "${arg}"`);
      const tokens = (await client.call<{ tokens?: EnrollmentTokenJson[] }>("UserService/ListEnrollmentTokens", {})).tokens ?? [];
      if (flags.json) return print(tokens);
      if (tokens.length === 0) {
        process.stdout.write("No enrollment tokens.\n");
        return;
      }
      const rows = tokens.map((t) => [t.id, t.name || "-", relativeTime(t.createTime), relativeTime(t.expireTime), `${t.maxWorkspaceTtlSeconds ?? 0}s`, t.allowedPorts?.join(",") || "any"]);
      process.stdout.write(`${formatTable(["ID", "NAME", "CREATED", "EXPIRES", "MAX WORKSPACE TTL", "PORTS"], rows)}\n`);
      return;
    }
    case "revoke": {
      if (!arg) throw usage("enrollment-token revoke needs a token id (see warren enrollment-token list)");
      await client.call("UserService/RevokeEnrollmentToken", { id: arg });
      if (flags.json) return print({});
      process.stdout.write(`enrollment token ${arg} revoked (workspaces it enrolled run on until their job or time to live ends)\n`);
      return;
    }
    case undefined:
      throw usage("enrollment-token needs a sub-command: create, list, revoke");
    default:
      throw usage(`"${sub}" is not an enrollment-token sub-command (${SUBCOMMANDS.join(", ")}; see warren help)`);
  }
}

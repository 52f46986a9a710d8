import { relativeTime } from "./relative-time.js";

/** The CI job behind a workspace made by `warren-agent ci`, as the API gives it. */
export interface CiJobJson {
  issuer?: string;
  project?: string;
  job?: string;
  jobUrl?: string;
  holdExpireTime?: string;
  exitCode?: number;
}

/**
 * One cell for `warren workspace list`: project, job and issuer, and the hold of a job whose
 * command failed, e.g. `group/app job 302 (https://gitlab.example.com), held, ends in 9m (exit 5)`.
 */
export function ciSummary(ci: CiJobJson | undefined, now = Date.now()): string {
  if (!ci) return "-";
  const what = [ci.project, ci.job ? `job ${ci.job}` : undefined].filter(Boolean).join(" ") || "job";
  const held = ci.holdExpireTime && Date.parse(ci.holdExpireTime) > now ? `, held, ends ${relativeTime(ci.holdExpireTime)} (exit ${ci.exitCode ?? 0})` : "";
  return `${what} (${ci.issuer ?? "?"})${held}`;
}

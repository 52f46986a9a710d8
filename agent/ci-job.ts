import { randomBytes } from "node:crypto";

/** What the CI system's variables say about the running job. */
export interface CiJobInfo {
  /** The base of the workspace name, e.g. `job-4711` or `test-123456`. */
  readonly nameBase: string;
  readonly project: string;
  readonly job: string;
  readonly jobUrl: string;
}

/** Longest new workspace name (MAX_NEW_WORKSPACE_NAME_CHARS on the server: `{port}-{name}` is one DNS label). */
const MAX_NAME_CHARS = 57;
const SUFFIX_CHARS = 4;

/**
 * The job from the CI system's own variables: GitLab CI, GitHub Actions, then what most other
 * systems set (Buildkite, Jenkins, CircleCI, a plain `CI_JOB_ID`). Nothing found: `ci`.
 */
export function ciJobOf(env: NodeJS.ProcessEnv): CiJobInfo {
  const v = (name: string) => env[name]?.trim() ?? "";
  if (v("GITLAB_CI") && v("CI_JOB_ID")) {
    return { nameBase: `${v("CI_JOB_NAME") || "job"}-${v("CI_JOB_ID")}`, project: v("CI_PROJECT_PATH"), job: v("CI_JOB_ID"), jobUrl: v("CI_JOB_URL") };
  }
  if (v("GITHUB_ACTIONS") && v("GITHUB_RUN_ID")) {
    const attempt = v("GITHUB_RUN_ATTEMPT");
    const repository = v("GITHUB_REPOSITORY");
    const server = v("GITHUB_SERVER_URL") || "https://github.com";
    return {
      nameBase: `${v("GITHUB_JOB") || "job"}-${v("GITHUB_RUN_ID")}`,
      project: repository,
      job: `${v("GITHUB_RUN_ID")}${attempt ? `/${attempt}` : ""}`,
      jobUrl: repository ? `${server}/${repository}/actions/runs/${v("GITHUB_RUN_ID")}` : "",
    };
  }
  if (v("BUILDKITE_JOB_ID")) {
    return { nameBase: `${v("BUILDKITE_PIPELINE_SLUG") || "job"}-${v("BUILDKITE_BUILD_NUMBER")}`, project: v("BUILDKITE_PIPELINE_SLUG"), job: v("BUILDKITE_JOB_ID"), jobUrl: v("BUILDKITE_BUILD_URL") };
  }
  if (v("JENKINS_URL") && v("BUILD_NUMBER")) {
    return { nameBase: `${v("JOB_NAME") || "job"}-${v("BUILD_NUMBER")}`, project: v("JOB_NAME"), job: v("BUILD_NUMBER"), jobUrl: v("BUILD_URL") };
  }
  if (v("CIRCLECI") && v("CIRCLE_BUILD_NUM")) {
    return { nameBase: `${v("CIRCLE_JOB") || "job"}-${v("CIRCLE_BUILD_NUM")}`, project: v("CIRCLE_PROJECT_REPONAME"), job: v("CIRCLE_BUILD_NUM"), jobUrl: v("CIRCLE_BUILD_URL") };
  }
  const job = v("CI_JOB_ID");
  return { nameBase: job ? `job-${job}` : "ci", project: "", job, jobUrl: "" };
}

/**
 * A workspace name from the job made unique: a DNS label of lowercase letters, digits and
 * hyphens, ending in 4 random hex digits so that retried and parallel jobs never collide.
 */
export function uniqueWorkspaceName(base: string, random: () => string = () => randomBytes(2).toString("hex")): string {
  const slug = base
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, MAX_NAME_CHARS - SUFFIX_CHARS - 1)
    .replace(/-+$/, "");
  return `${slug || "ci"}-${random().slice(0, SUFFIX_CHARS)}`;
}

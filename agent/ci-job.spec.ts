import { describe, expect, it } from "vitest";
import { ciJobOf, uniqueWorkspaceName } from "./ci-job.js";

describe("the CI job from its variables", () => {
  it("GitLab, GitHub Actions, and a plain CI_JOB_ID", () => {
    expect(ciJobOf({ GITLAB_CI: "true", CI_JOB_ID: "302", CI_JOB_NAME: "test:unit", CI_PROJECT_PATH: "group/app", CI_JOB_URL: "https://gl/j/302" })).toEqual({
      nameBase: "test:unit-302",
      project: "group/app",
      job: "302",
      jobUrl: "https://gl/j/302",
    });
    expect(ciJobOf({ GITHUB_ACTIONS: "true", GITHUB_RUN_ID: "99", GITHUB_RUN_ATTEMPT: "2", GITHUB_JOB: "build", GITHUB_REPOSITORY: "o/r" })).toEqual({
      nameBase: "build-99",
      project: "o/r",
      job: "99/2",
      jobUrl: "https://github.com/o/r/actions/runs/99",
    });
    expect(ciJobOf({ CI_JOB_ID: "5" }).nameBase).toBe("job-5");
    expect(ciJobOf({}).nameBase).toBe("ci");
  });

  it("names are DNS labels of at most 57 characters with a random suffix", () => {
    expect(uniqueWorkspaceName("Test:Unit-302", () => "abcd")).toBe("test-unit-302-abcd");
    const long = uniqueWorkspaceName(`${"x".repeat(80)}-1`, () => "0f0f");
    expect(long.length).toBeLessThanOrEqual(57);
    expect(long).toMatch(/^x+-0f0f$/);
    expect(uniqueWorkspaceName("---", () => "1234")).toBe("ci-1234");
  });
});

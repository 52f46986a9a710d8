import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./harness/apps.js";
import { gitlabClaims, githubClaims, TestCiIssuer } from "./harness/ci-issuer.js";
import { jobDir, JobProcess, runJob } from "./harness/ci-job.js";
import { AGENT_BUNDLE } from "./harness/processes.js";
import { clientOptions, ensureTestUsers, IS_ROOT, passwordOptions, run, SSH_EMPTY_PASSWORD_USER, SSH_KEY_USER, startSshd, type Sshd } from "./harness/sshd.js";
import { callApi, eventually, httpRequest, ROOT_DOMAIN, startServer, workspaceHost, type ServerHandle } from "./harness/warren.js";
import { tempDir } from "./harness/temp-dirs.js";

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

interface Workspace {
  name: string;
  owner: string;
  urls: string[];
  desiredState: string;
  actualState: string;
  expireTime?: string;
  ci?: { issuer: string; project?: string; job?: string; jobUrl?: string; holdExpireTime?: string; exitCode?: number };
}

/**
 * CI-native workspaces (`warren-agent ci`): a job proves who it is with its CI system's OIDC ID
 * token (a local issuer with its own keys, minting GitLab- and GitHub-shaped tokens) or an
 * enrollment token, gets its own workspace, and takes it with it when its command ends.
 */
describe("CI jobs enroll their own workspaces", () => {
  let gitlab: TestCiIssuer;
  let github: TestCiIssuer;
  let server: ServerHandle;
  let dir: string;
  let alice: string;
  let bob: string;
  const root = () => `http://${ROOT_DOMAIN}:${server.httpPort}`;

  beforeAll(async () => {
    gitlab = await new TestCiIssuer("/gitlab").start();
    github = await new TestCiIssuer("/github").start();
    const config = join(tempDir("warren-ci-config-"), "warren.yaml");
    // The issuers as a YAML list in the config file, as operators write them.
    writeFileSync(
      config,
      [
        "ciIssuers:",
        `  - issuer: ${gitlab.issuer}`,
        '    owner: "{user_login}"',
        "    require:",
        '      project_path: "group/*"',
        '      ref_protected: "true"',
        "    maxTtl: 10m",
        `  - issuer: ${github.issuer}`,
        "    audience: warren-test",
        '    owner: "gh-{actor}"',
        "    createUsers: true",
        "",
      ].join("\n"),
    );
    server = await startServer({ WARREN_SECRET_KEY: "ci-native-test-secret-0123456789abcdef" }, ["--config", config]);
    dir = jobDir();
    for (const name of ["alice", "bob"]) await callApi(server, "UserService/CreateUser", { name });
    alice = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "alice" })).body.token;
    bob = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "bob" })).body.token;
  });

  afterAll(async () => {
    await server?.stop();
    await gitlab?.close();
    await github?.close();
  });

  const get = (url: string, token?: string, path = "/") =>
    httpRequest({ port: server.httpPort, host: new URL(url).host, path, headers: token ? { "x-warren-token": token } : {} });
  const workspace = async (name: string) => (await callApi<{ workspace: Workspace }>(server, "WorkspaceService/GetWorkspace", { name })).body.workspace;
  const openLine = /^warren: workspace (\S+) is open at (\S+) for (\S+); it ends with this job$/m;

  /** The agent bundle as `warren-agent ci` in a job, with the CI variables given. */
  function agentCi(args: string[], env: Record<string, string | undefined>): JobProcess {
    return new JobProcess(process.execPath, [AGENT_BUNDLE, "ci", ...args], { WARREN_SERVER: root(), ...env });
  }

  it("a GitLab job installs the agent with install.sh, opens its app to its owner only, and its workspace goes when the command exits", async () => {
    const appPort = await freePort();
    const idToken = await gitlab.mint(gitlabClaims(), { aud: root() });
    const job = runJob(dir, {
      WARREN_SERVER: root(),
      WARREN_CI_ID_TOKEN: idToken,
      GITLAB_CI: "true",
      CI_JOB_ID: "302",
      CI_JOB_NAME: "test",
      CI_PROJECT_PATH: "group/app",
      CI_JOB_URL: "https://gitlab.example.com/group/app/-/jobs/302",
      APP_PORT: String(appPort),
    });
    const [, name, url, owner] = await job.waitFor(openLine, 45_000);
    expect(name).toMatch(/^test-302-[0-9a-f]{4}$/);
    expect(url).toBe(`http://${workspaceHost(name!, appPort)}:${server.httpPort}/`);
    expect(owner).toBe("alice");
    // The job's log is one line for people, no JSON noise (the agent logs warnings only here).
    expect(job.stdout.trim().split("\n")).toHaveLength(1);

    await eventually(async () => (await get(url!, alice)).body.toString() === "hello from the job\n", 15_000, "the app through Warren");
    expect((await get(url!, bob)).status).toBe(404);
    const ws = await workspace(name!);
    expect(ws.owner).toBe("alice");
    expect(ws.ci).toMatchObject({ issuer: gitlab.issuer, project: "group/app", job: "302", jobUrl: `${gitlab.issuer}/group/app/-/jobs/302` });
    // maxTtl 10m caps the workspace and its agent token.
    expect(Date.parse(ws.expireTime!)).toBeLessThanOrEqual(Date.now() + 10 * 60_000);

    // The command exits with 7: the agent ends the workspace first, then exits with 7.
    expect((await get(url!, alice, "/exit?code=7")).status).toBe(200);
    expect(await job.exited).toBe(7);
    expect(job.stdout).toContain("job: agent exited with 7");
    expect((await get(url!, alice)).status).toBe(404);
    expect((await workspace(name!)).desiredState).toBe("WORKSPACE_DESIRED_STATE_TERMINATED");
    await eventually(async () => (await workspace(name!)).actualState === "WORKSPACE_ACTUAL_STATE_TERMINATED", 5000, "termination complete");
  });

  it("a GitHub Actions job asks for its own ID token, creates its owner, writes the step summary; SIGTERM ends command and workspace", async () => {
    const appPort = await freePort();
    const summary = join(dir, "step-summary.md");
    github.githubClaims = githubClaims();
    const job = agentCi(["--public-port", String(appPort), "--audience", "warren-test", "--", process.execPath, join(dir, "app.cjs")], {
      ACTIONS_ID_TOKEN_REQUEST_URL: github.requestUrl,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: github.requestToken,
      GITHUB_ACTIONS: "true",
      GITHUB_RUN_ID: "5102",
      GITHUB_RUN_ATTEMPT: "1",
      GITHUB_JOB: "Debug",
      GITHUB_REPOSITORY: "octo-org/octo-repo",
      GITHUB_STEP_SUMMARY: summary,
      APP_PORT: String(appPort),
    });
    const [, name, url, owner] = await job.waitFor(openLine);
    expect(name).toMatch(/^debug-5102-[0-9a-f]{4}$/);
    expect(owner).toBe("gh-carol");
    expect(readFileSync(summary, "utf8")).toContain(`- [${url}](${url})`);
    const users = (await callApi<{ users: { name: string }[] }>(server, "UserService/ListUsers", {})).body.users.map((u) => u.name);
    expect(users).toContain("gh-carol");
    // A public port needs no credentials.
    await eventually(async () => (await get(url!)).body.toString() === "hello from the job\n", 15_000, "the public app");
    expect((await workspace(name!)).ci).toMatchObject({ issuer: github.issuer, project: "octo-org/octo-repo", job: "5102/1" });

    job.child.kill("SIGTERM");
    expect(await job.exited).toBe(143);
    expect((await get(url!, server.adminToken)).status).toBe(404);
  });

  it("a job killed with SIGKILL takes its workspace with it: the agent sees its job go and ends it", async () => {
    const appPort = await freePort();
    const token = (await callApi<{ token: string }>(server, "UserService/CreateEnrollmentToken", { user: "alice", maxWorkspaceTtlSeconds: 600 })).body.token;
    // The job's shell runs the agent and waits; the CI system then kills the shell outright.
    const job = new JobProcess("/bin/sh", ["-c", `"$NODE" "$AGENT" ci --port "$APP_PORT" -- "$NODE" "$APP" & wait`], {
      NODE: process.execPath,
      AGENT: AGENT_BUNDLE,
      APP: join(dir, "app.cjs"),
      APP_PORT: String(appPort),
      WARREN_SERVER: root(),
      WARREN_ENROLL_TOKEN: token,
      CI_JOB_ID: "77",
    });
    const [, name, url] = await job.waitFor(openLine);
    expect(name).toMatch(/^job-77-[0-9a-f]{4}$/);
    await eventually(async () => (await get(url!, alice)).status === 200, 15_000, "the app through Warren");
    job.child.kill("SIGKILL");
    await eventually(async () => (await workspace(name!)).actualState === "WORKSPACE_ACTUAL_STATE_TERMINATED", 15_000, "workspace terminated after the job was killed");
    expect((await get(url!, alice)).status).toBe(404);
    // Its app is gone with it: nothing listens on the port any more.
    await eventually(async () => !(await listening(appPort)), 10_000, "app stopped");
  });

  it("an enrollment token enrolls only its user's short-lived workspaces and reaches no other API", async () => {
    const appPort = await freePort();
    const created = await callApi<{ token: string; enrollmentToken: { id: string; maxWorkspaceTtlSeconds: number; allowedPorts: number[] } }>(
      server,
      "UserService/CreateEnrollmentToken",
      { maxWorkspaceTtlSeconds: 300, allowedPorts: [appPort], name: "runner" },
      alice,
    );
    expect(created.status).toBe(200);
    const wen = created.body.token;
    expect(wen).toMatch(/^wen_[0-9a-f]{16}[A-Za-z0-9_-]{43}$/);
    expect(created.body.enrollmentToken).toMatchObject({ maxWorkspaceTtlSeconds: 300, allowedPorts: [appPort] });

    // Every other API, and workspace hosts, refuse it.
    for (const method of ["WorkspaceService/ListWorkspaces", "WorkspaceService/CreateWorkspace", "UserService/WhoAmI", "UserService/CreateEnrollmentToken", "UserService/ListAccessTokens"]) {
      const r = await callApi(server, method, method.endsWith("CreateWorkspace") ? { name: "sneaky", ports: [] } : {}, wen);
      expect([method, r.status]).toEqual([method, 401]);
    }
    expect((await callApi(server, "CiService/FinishWorkspace", {}, wen)).status).toBe(401);
    // Bob can neither see nor revoke alice's tokens.
    expect((await callApi(server, "UserService/ListEnrollmentTokens", { user: "alice" }, bob)).status).toBe(403);
    expect((await callApi(server, "UserService/RevokeEnrollmentToken", { id: created.body.enrollmentToken.id }, bob)).status).toBe(404);

    // A workspace: alice's, its time to live capped by the token.
    const enrolled = await callApi<{ workspace: Workspace; agentToken: string }>(
      server,
      "CiService/EnrollWorkspace",
      { name: "runner-job", ports: [{ port: appPort }], ttlSeconds: 86_400, project: "infra/tools", job: "9" },
      wen,
    );
    expect(enrolled.status).toBe(200);
    expect(enrolled.body.workspace.owner).toBe("alice");
    expect(enrolled.body.workspace.ci).toMatchObject({ issuer: `enrollment token ${created.body.enrollmentToken.id}`, project: "infra/tools", job: "9" });
    expect(Date.parse(enrolled.body.workspace.expireTime!)).toBeLessThanOrEqual(Date.now() + 300_000);
    const host = enrolled.body.workspace.urls[0]!;
    expect((await get(host, wen)).status).not.toBe(200);
    // The agent token ends its own workspace, no other.
    expect((await callApi(server, "CiService/FinishWorkspace", {}, enrolled.body.agentToken)).status).toBe(200);
    expect((await workspace("runner-job")).desiredState).toBe("WORKSPACE_DESIRED_STATE_TERMINATED");

    // A port the token does not allow, then the revoked token: one line, exit 1.
    const badPort = agentCi(["--port", String(appPort + 1), "--", "true"], { WARREN_ENROLL_TOKEN: wen });
    expect(await badPort.exited).toBe(1);
    expect(badPort.stderr).toBe(`warren-agent ci: the server refused the job: port ${appPort + 1}: this enrollment token allows only ports ${appPort}\n`);
    expect((await callApi(server, "UserService/RevokeEnrollmentToken", { token: wen }, alice)).status).toBe(200);
    const revoked = agentCi(["--port", String(appPort), "--", "true"], { WARREN_ENROLL_TOKEN: wen });
    expect(await revoked.exited).toBe(1);
    expect(revoked.stderr).toBe("warren-agent ci: the server refused the job: enrollment token is invalid, expired or revoked\n");
  });

  it.runIf(IS_ROOT)("hold-on-failure keeps a failed job reachable by HTTP and SSH for the hold, or until its owner ends it", async () => {
    ensureTestUsers();
    const sshd: Sshd = await startSshd();
    try {
      const appPort = await freePort();
      const wen = (await callApi<{ token: string }>(server, "UserService/CreateEnrollmentToken", { maxWorkspaceTtlSeconds: 600 }, alice)).body.token;
      // The job's app runs beside the command that fails (a test suite, say).
      const app = new JobProcess(process.execPath, [join(dir, "app.cjs")], { APP_PORT: String(appPort) });
      const flags = ["--port", String(appPort), "--ssh-port", String(sshd.port)];
      // The job's sshd trusts the key the server logs in with: the agent writes it in.
      const sshKey = ["--ssh-user", SSH_KEY_USER, "--authorize-ssh-key", join(sshd.dir, "authorized_keys")];
      const long = agentCi([...flags, ...sshKey, "--hold-on-failure", "10m", "--name", "held-long", "--", "sh", "-c", "exit 5"], { WARREN_ENROLL_TOKEN: wen });
      const short = agentCi([...flags, "--ssh-user", SSH_EMPTY_PASSWORD_USER, "--hold-on-failure", "2s", "--name", "held-short", "--", "sh", "-c", "exit 4"], { WARREN_ENROLL_TOKEN: wen });
      await long.waitFor(new RegExp(`^warren: sh failed with exit code 5; workspace held-long is held for 10m \\(until \\S+\\) at \\S+ and by ssh -p ${server.sshPort} held-long@127\\.0\\.0\\.1; terminate it to end the hold$`, "m"));
      const held = await workspace("held-long");
      expect(held.ci?.exitCode).toBe(5);
      expect(Date.parse(held.ci!.holdExpireTime!)).toBeGreaterThan(Date.now() + 9 * 60_000);
      expect((await get(held.urls[0]!, alice)).body.toString()).toBe("hello from the job\n");
      const ssh = await run("sshpass", ["-p", alice, "ssh", ...clientOptions(), ...passwordOptions(), "-p", String(server.sshPort), "held-long@127.0.0.1", "echo inside the failed job"]);
      expect(ssh.stdout, ssh.stderr).toBe("inside the failed job\n");

      // The short hold passes by itself: the workspace goes, the agent exits with the command's code.
      expect(await short.exited).toBe(4);
      expect((await workspace("held-short")).desiredState).toBe("WORKSPACE_DESIRED_STATE_TERMINATED");

      // The owner ends the long hold early.
      await callApi(server, "WorkspaceService/TerminateWorkspace", { name: "held-long" }, alice);
      expect(await long.exited).toBe(5);
      expect((await get(held.urls[0]!, alice)).status).toBe(404);
      app.child.kill("SIGTERM");
    } finally {
      await sshd.stop();
    }
  });

  it("refuses ID tokens with the wrong audience, an unknown issuer, expired, a bad signature, a rotated-out key or failing claims: one line, exit 1", async () => {
    const aud = root();
    const stranger = await gitlab.unpublishedKey();
    // The issuer rotates its key: tokens signed with the new one are accepted (Warren fetches
    // the keys again), tokens signed with the old one no longer are.
    const { old } = await gitlab.rotate();
    await eventually(
      async () => (await callApi(server, "CiService/EnrollWorkspace", { name: "rotated-ok", ports: [] }, await gitlab.mint(gitlabClaims(), { aud }))).status === 200,
      10_000,
      "a token signed with the new key accepted",
    );
    const cases: [string, string, RegExp][] = [
      ["wrong audience", await gitlab.mint(gitlabClaims(), { aud: "https://elsewhere.example.com" }), /the ID token's audience is "https:\/\/elsewhere.example.com", not "http:\/\/warren.localhost:\d+"/],
      ["unknown issuer", await gitlab.mint(gitlabClaims(), { aud, iss: "https://gitlab.evil.example.com" }), /the ID token's issuer "https:\/\/gitlab.evil.example.com" is not trusted by this server/],
      ["expired", await gitlab.mint(gitlabClaims(), { aud, expiresIn: -120 }), /the ID token expired at \S+Z/],
      ["bad signature", await gitlab.mint(gitlabClaims(), { aud, key: stranger, kid: gitlab.currentKey.kid }), /the ID token's signature does not verify with http:\/\/127.0.0.1:\d+\/gitlab's keys/],
      ["rotated-out key", await gitlab.mint(gitlabClaims(), { aud, key: old }), new RegExp(`signed with a key \\(kid "${old.kid}"\\) that http://127.0.0.1:\\d+/gitlab does not publish`)],
      ["project outside the group", await gitlab.mint(gitlabClaims({ project_path: "other/app" }), { aud }), /claim project_path is "other\/app", which does not match "group\/\*"/],
      ["unprotected ref", await gitlab.mint(gitlabClaims({ ref_protected: "false" }), { aud }), /claim ref_protected is "false", which does not match "true"/],
      ["unknown owner", await gitlab.mint(gitlabClaims({ user_login: "mallory" }), { aud }), /names owner "mallory", who is not a Warren user/],
      ["not a token", "garbage", /not an enrollment token \(wen_\.\.\.\) or an ID token \(JWT\)/],
    ];
    const runs = cases.map(([what, token, reason]) => ({ what, reason, job: agentCi(["--port", "8000", "--", "true"], { WARREN_CI_ID_TOKEN: token }) }));
    for (const { what, reason, job } of runs) {
      expect([what, await job.exited]).toEqual([what, 1]);
      expect(job.stderr, what).toMatch(/^warren-agent ci: the server refused the job: [^\n]+\n$/);
      expect(job.stderr, what).toMatch(reason);
      expect(job.stdout, what).toBe("");
    }
  });
});

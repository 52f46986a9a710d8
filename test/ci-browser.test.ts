import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./harness/apps.js";
import { launchChromium } from "./harness/chromium.js";
import { jobDir, runJob } from "./harness/ci-job.js";
import { cliHome, runCli } from "./harness/cli.js";
import { callApi, ROOT_DOMAIN, startServer, type ServerHandle } from "./harness/warren.js";

/**
 * A person opens what runs inside a CI job: the job (enrolled with an enrollment token) serves
 * an app that talks over a WebSocket; its owner sees the job on the dashboard and in
 * `warren workspace list`, opens the app in headless Chromium, sees the hold after the job's
 * command fails, and ends it from the dashboard.
 */
describe("a CI job's workspace in the browser", () => {
  let server: ServerHandle;
  let chromium: Awaited<ReturnType<typeof launchChromium>>;
  let alice: string;
  const root = () => `http://${ROOT_DOMAIN}:${server.httpPort}`;

  beforeAll(async () => {
    server = await startServer({ WARREN_SECRET_KEY: "ci-browser-test-secret-0123456789abcdef" });
    await callApi(server, "UserService/CreateUser", { name: "alice" });
    alice = (await callApi<{ token: string }>(server, "UserService/CreateAccessToken", { user: "alice" })).body.token;
    chromium = await launchChromium();
  });

  afterAll(async () => {
    await chromium?.close();
    await server?.stop();
  });

  it("opens the job's WebSocket app through Warren, shows the job and its hold, and ends with the owner's terminate", async () => {
    const appPort = await freePort();
    // Alice makes the job's enrollment token with the CLI, as she would for a CI system without OIDC.
    const cli = { env: { WARREN_URL: root(), WARREN_ACCESS_TOKEN: alice } };
    const made = await runCli(cliHome(), ["enrollment-token", "create", "--name", "runner", "--max-workspace-ttl", "30m", "--port", String(appPort)], cli);
    expect(made.stderr).toBe("");
    expect(made.stdout).toMatch(/^New enrollment token [0-9a-f]{16} \(shown once; expires in 29d; workspaces live at most 1800s, ports \d+\):\n  wen_\S+\n/);
    const wen = /(wen_\S+)/.exec(made.stdout)![1]!;
    expect((await runCli(cliHome(), ["enrollment-token", "list"], cli)).stdout).toMatch(/^[0-9a-f]{16}\s+runner\s+just now\s+in 29d\s+1800s\s+\d+$/m);
    const job = runJob(jobDir(), {
      WARREN_SERVER: root(),
      WARREN_ENROLL_TOKEN: wen,
      CI_JOB_ID: "88",
      APP_PORT: String(appPort),
      CI_FLAGS: "--hold-on-failure 10m",
    });
    const [, name, url] = await job.waitFor(/^warren: workspace (\S+) is open at (\S+) for alice/m, 45_000);

    const context = await chromium.context();
    const page = await context.newPage();
    page.on("dialog", (dialog) => void dialog.accept());
    await page.goto(`${root()}/`);
    await page.getByLabel("Access token").fill(alice);
    await Promise.all([page.waitForURL(`${root()}/`), page.getByRole("button", { name: "Log in" }).click()]);
    const card = page.locator(`[data-workspace="${name}"]`);
    await card.locator('[data-actual="Running"]').waitFor();
    await expect(card.locator("[data-ci]").textContent()).resolves.toContain("CI: job 88 (enrollment token");

    // The app's page opens a WebSocket back to the app, through Warren, inside the job.
    const tab = await context.newPage();
    await tab.goto(`${url}ws-page`);
    await tab.getByText("echo: job says ping from the browser").waitFor();

    const listed = await runCli(cliHome(), ["workspace", "list"], cli);
    expect(listed.stdout).toMatch(/^NAME\s+DESIRED\s+ACTUAL\s+CONNECTED\s+OWNER\s+EXPIRES\s+CI\s+URL$/m);
    expect(listed.stdout).toMatch(new RegExp(`^${name}\\s.*\\sjob 88 \\(enrollment token [0-9a-f]{16}\\)\\s+${url}$`, "m"));

    // The command fails: the workspace is held, and says so.
    await tab.goto(`${url}exit?code=3`);
    await job.waitFor(/^warren: node failed with exit code 3; workspace \S+ is held for 10m/m);
    await card.locator("[data-hold]").waitFor();
    await expect(card.locator("[data-hold]").textContent()).resolves.toMatch(/the job's command failed \(exit code 3\); the workspace ends in (9|10) min, or when you terminate it\./);
    const held = await runCli(cliHome(), ["workspace", "list"], cli);
    expect(held.stdout).toMatch(/job 88 \(enrollment token [0-9a-f]{16}\), held, ends in \d+m \(exit 3\)/);

    // The owner has seen enough: terminating ends the hold, and the job, at once.
    await card.getByRole("button", { name: `Terminate ${name}`, exact: true }).click();
    expect(await job.exited).toBe(3);
    await context.close();
  });
});

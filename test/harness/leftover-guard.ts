import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Vitest globalSetup: the run gets a temporary folder of its own (TMPDIR, inherited by the test
 * workers and every server, agent, sshd and browser they start), and the run fails when
 * anything is left in it at the end. A folder of its own, rather than a before/after listing of
 * /tmp, because other runs and programs share /tmp: only this run's leftovers are named.
 *
 * Both projects of vitest.config.ts run this setup (in the same main process, as separate module
 * instances), so the state lives on globalThis: the first setup makes the folder and the last
 * teardown checks it.
 */
interface RunTemp {
  readonly dir: string;
  readonly previousTmpdir: string | undefined;
  users: number;
}

const KEY = Symbol.for("warren.test.run-temp");
const store = globalThis as { [KEY]?: RunTemp };

export function setup(): () => void {
  let run = store[KEY];
  if (!run) {
    const dir = mkdtempSync(join(tmpdir(), "warren-test-run-"));
    // SSH tests log in as other users, who read authorized_keys and write scp targets below it.
    chmodSync(dir, 0o755);
    run = { dir, previousTmpdir: process.env["TMPDIR"], users: 0 };
    store[KEY] = run;
    process.env["TMPDIR"] = dir;
  }
  run.users++;
  const owned = run;
  return () => teardown(owned);
}

function teardown(run: RunTemp): void {
  if (--run.users > 0) return;
  delete store[KEY];
  if (run.previousTmpdir === undefined) delete process.env["TMPDIR"];
  else process.env["TMPDIR"] = run.previousTmpdir;
  const left = readdirSync(run.dir).sort();
  rmSync(run.dir, { recursive: true, force: true });
  if (left.length > 0) {
    throw new Error(
      `the test run left ${left.length} temporary ${left.length === 1 ? "entry" : "entries"} behind (now removed): ${left.join(", ")}. ` +
        "Make temporary directories with tempDir() from test/harness/temp-dirs.ts (removed after each test file), " +
        "or remove them in the test's afterAll after stopping the processes that use them.",
    );
  }
}

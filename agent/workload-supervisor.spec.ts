import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { WorkloadStatusReport } from "./workload-control.js";
import { WorkloadSupervisor } from "./workload-supervisor.js";

const log = pino({ level: "silent" });

function supervise(command: string[], stopTimeoutMs = 2000) {
  const supervisor = new WorkloadSupervisor({ command, environment: () => ({ ...process.env, GREETING: "hi" }), stopTimeoutMs, log });
  const seen: WorkloadStatusReport[] = [];
  supervisor.onStatus((r) => seen.push(r));
  return { supervisor, seen, statuses: () => seen.map((r) => r.status) };
}

describe("workload supervisor", () => {
  it("starts, stops (SIGTERM) and restarts a real process", async () => {
    const { supervisor, statuses } = supervise(["sleep", "30"]);
    await supervisor.start();
    const first = supervisor.pid!;
    expect(() => process.kill(first, 0)).not.toThrow();
    await supervisor.start(); // idempotent
    await supervisor.restart();
    const second = supervisor.pid!;
    expect(second).not.toBe(first);
    expect(() => process.kill(first, 0)).toThrow();
    await supervisor.stop();
    await supervisor.stop(); // idempotent
    expect(() => process.kill(second, 0)).toThrow();
    expect(statuses()).toEqual(["Starting", "Running", "Stopping", "Stopped", "Starting", "Running", "Stopping", "Stopped"]);
  });

  it("kills a process that ignores SIGTERM after the stop timeout", async () => {
    const { supervisor, seen } = supervise(["sh", "-c", "trap '' TERM; sleep 30 & wait"], 300);
    await supervisor.start();
    await new Promise((r) => setTimeout(r, 100)); // let the shell set its trap
    const started = Date.now();
    await supervisor.stop();
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(seen.at(-1)).toMatchObject({ status: "Stopped", message: "was killed by SIGKILL", byItself: false });
  });

  it("reports a process that exits by itself: Failed with its code, or Stopped for 0", async () => {
    const failing = supervise(["sh", "-c", 'test "$GREETING" = hi && exit 3']);
    await failing.supervisor.start();
    await new Promise((r) => setTimeout(r, 300));
    expect(failing.seen.at(-1)).toMatchObject({ status: "Failed", exitCode: 3, byItself: true });
    // Stopping a failed workload settles it as Stopped (what a restart waits for).
    await failing.supervisor.stop();
    expect(failing.seen.at(-1)).toMatchObject({ status: "Stopped", exitCode: 3 });
    const done = supervise(["true"]);
    await done.supervisor.start();
    await new Promise((r) => setTimeout(r, 300));
    expect(done.seen.at(-1)).toMatchObject({ status: "Stopped", exitCode: 0 });
  });

  it("reports Failed with the shell's 127 when the program cannot start", async () => {
    const { supervisor, seen } = supervise(["/nonexistent/program"]);
    await supervisor.start();
    expect(seen.at(-1)).toMatchObject({ status: "Failed", exitCode: 127, message: 'could not start "/nonexistent/program": not found', byItself: true });
  });
});

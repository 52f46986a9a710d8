import { defineConfig } from "vitest/config";

// SSH relay tests start many processes at once (a hundred ssh clients, sshd children): they run
// after everything else, so they never starve the timing-sensitive HTTP tests of CPU.
const SSH_TESTS = "test/ssh-*.test.ts";

export default defineConfig({
  test: {
    // Integration tests start real processes; two at a time fits a 2-core CI machine.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default"],
    // Each file's temporary directories go when it ends; the run fails if any are left over.
    setupFiles: ["test/harness/after-each-file.ts"],
    globalSetup: ["test/harness/leftover-guard.ts"],
    projects: [
      {
        extends: true,
        test: {
          name: "warren",
          include: ["test/**/*.test.ts", "server/**/*.spec.ts", "agent/**/*.spec.ts", "cli/**/*.spec.ts", "shared/**/*.spec.ts"],
          exclude: [SSH_TESTS, "**/node_modules/**"],
          sequence: { groupOrder: 0 },
        },
      },
      { extends: true, test: { name: "ssh", include: [SSH_TESTS], sequence: { groupOrder: 1 } } },
    ],
  },
});

import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "server/**/*.spec.ts", "agent/**/*.spec.ts", "cli/**/*.spec.ts", "shared/**/*.spec.ts"],
    // Integration tests start real processes; two at a time fits a 2-core CI machine.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default"],
  },
});

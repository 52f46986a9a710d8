import { afterAll } from "vitest";
import { stopAllProcesses } from "./processes.js";
import { removeTempDirs } from "./temp-dirs.js";

// A vitest setup file: its afterAll runs after the test file's own hooks ("stack" order), so
// servers, agents and sshds a test left running are stopped before their directories go.
// Vitest ends the worker with SIGTERM, which skips "exit" handlers: this is where files clean up.
afterAll(async () => {
  await stopAllProcesses();
  removeTempDirs();
});

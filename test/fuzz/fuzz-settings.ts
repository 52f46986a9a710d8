/**
 * How many cases each property runs: a handful in CI (seconds), many more from
 * `scripts/fuzz.sh` (FUZZ_RUNS). FUZZ_SEED replays a failure that fast-check reported.
 */
export function fuzzParameters(ciRuns: number): { numRuns: number; seed?: number; endOnFailure: boolean } {
  const runs = Number(process.env["FUZZ_RUNS"] ?? "");
  const seed = Number(process.env["FUZZ_SEED"] ?? "");
  return {
    numRuns: Number.isInteger(runs) && runs > 0 ? runs : ciRuns,
    ...(Number.isInteger(seed) && process.env["FUZZ_SEED"] ? { seed } : {}),
    endOnFailure: true,
  };
}

/** Per-test timeout: long runs get the time they need. */
export function fuzzTimeoutMs(ciMs: number): number {
  return process.env["FUZZ_RUNS"] ? 3_600_000 : ciMs;
}

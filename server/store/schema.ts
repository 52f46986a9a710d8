/**
 * Versions of the embedded store's layout. A server migrates an older data directory forward
 * at start, one step at a time, and refuses a newer one (it would misread it).
 *
 *   0  the data directory of Warren before the embedded store: the SSH host key only
 *   1  {data dir}/store: LMDB, one JSON record per key `<kind>:<id>`, the version under "#schema";
 *      generated secrets in {data dir}/admin-token and {data dir}/secret-key
 */
export const CURRENT_SCHEMA_VERSION = 1;

/** One migration step: from `from` to `from + 1`. */
export interface Migration {
  readonly from: number;
  readonly description: string;
  /** Changes the store (through its own transactions); the caller records the new version after. */
  run(): Promise<void>;
}

/** The steps from `version` to the current one, in order; throws when one is missing. */
export function migrationsFrom(version: number, steps: readonly Migration[]): Migration[] {
  const out: Migration[] = [];
  for (let v = version; v < CURRENT_SCHEMA_VERSION; v++) {
    const step = steps.find((s) => s.from === v);
    if (!step) throw new Error(`no migration from store schema version ${v}`);
    out.push(step);
  }
  return out;
}

import { closeSync, existsSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { VERSION } from "../../shared/version.js";
import { GENERATED_HOST_KEY_FILE } from "./data-dir-files.js";
import { DataDirLock } from "./data-dir-lock.js";
import { EmbeddedStore } from "./embedded-store.js";
import { CURRENT_SCHEMA_VERSION, migrationsFrom, type Migration } from "./schema.js";

export const STORE_DIR = "store";
export const STORE_FILE = "data.mdb";
const LOCK_FILE_NAME = "lock.mdb";
/** More than LMDB's reader table for 126 readers (8272 bytes). */
const LOCK_FILE_BYTES = 16 * 1024;
/** LMDB's magic number, at the start of both meta pages. */
const LMDB_MAGIC = Buffer.from([0xde, 0xc0, 0xef, 0xbe]);

/**
 * The steps from each older layout. 0 -> 1: a data directory from before the embedded store
 * holds the SSH host key only, which stays where it is; the store starts empty beside it.
 */
export const STORE_MIGRATIONS: readonly Migration[] = [{ from: 0, description: "create the embedded store beside the SSH host key", run: async () => {} }];

export interface OpenedEmbeddedStore {
  readonly store: EmbeddedStore;
  /** The schema version the directory had before this start (0: the layout before the store). */
  readonly migratedFrom: number | undefined;
  close(): Promise<void>;
}

/**
 * Opens the one-server store in the data directory for a server: takes the directory's lock,
 * checks the store file, opens it, refuses a newer schema and migrates an older one forward.
 * Throws failed_precondition with one line naming the directory or file when it cannot.
 */
export async function openEmbeddedStore(options: { dataDir: string; log: Logger; migrations?: readonly Migration[] }): Promise<OpenedEmbeddedStore> {
  const { dataDir, log } = options;
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new WarrenError(ErrorCode.FailedPrecondition, `WARREN_DATA_DIR: cannot create the data directory ${dataDir}: ${(err as Error).message}`);
  }
  const lock = await DataDirLock.acquire(dataDir);
  let store: EmbeddedStore | undefined;
  try {
    const hadLayoutBefore = existsSync(join(dataDir, GENERATED_HOST_KEY_FILE));
    store = await openChecked(dataDir, false);
    const version = store.schemaVersion();
    let migratedFrom: number | undefined;
    if (version === undefined) {
      if (!(await store.isEmpty())) throw corrupt(store.path, "it holds records but no schema version");
      // A new store; a directory an earlier Warren wrote (the SSH host key only) is schema 0.
      if (hadLayoutBefore) migratedFrom = 0;
      for (const step of migrationsFrom(0, options.migrations ?? STORE_MIGRATIONS)) await step.run();
      await store.setSchemaVersion(CURRENT_SCHEMA_VERSION);
    } else if (version > CURRENT_SCHEMA_VERSION) {
      throw new WarrenError(
        ErrorCode.FailedPrecondition,
        `the data directory ${dataDir} holds store schema version ${version}, written by a newer warren-server; this one (${VERSION}) reads schema version ${CURRENT_SCHEMA_VERSION} at most: run the newer warren-server`,
      );
    } else if (version < CURRENT_SCHEMA_VERSION) {
      for (const step of migrationsFrom(version, options.migrations ?? STORE_MIGRATIONS)) {
        log.info({ from: step.from, to: step.from + 1, dataDir }, `migrating the store: ${step.description}`);
        await step.run();
        await store.setSchemaVersion(step.from + 1);
      }
      migratedFrom = version;
    }
    if (migratedFrom !== undefined) log.info({ dataDir, from: migratedFrom, to: CURRENT_SCHEMA_VERSION }, "migrated the data directory to the current store schema");
    const opened = store;
    return {
      store: opened,
      migratedFrom,
      close: async () => {
        await opened.close();
        await lock.release();
      },
    };
  } catch (err) {
    await store?.close().catch(() => undefined);
    await lock.release();
    throw err;
  }
}

/** Opens the store of a data directory read-only, beside a running server (backup). */
export async function openEmbeddedStoreForReading(dataDir: string): Promise<EmbeddedStore> {
  if (!existsSync(join(dataDir, STORE_DIR, STORE_FILE))) {
    throw new WarrenError(ErrorCode.NotFound, `no store in the data directory ${dataDir} (WARREN_DATA_DIR): nothing to back up`);
  }
  return await openChecked(dataDir, true);
}

/**
 * Checks the store file before LMDB maps it (LMDB trusts its file: garbage can crash the
 * process instead of failing), opens it, and reads every record once.
 */
async function openChecked(dataDir: string, readOnly: boolean): Promise<EmbeddedStore> {
  const dir = join(dataDir, STORE_DIR);
  const file = join(dir, STORE_FILE);
  if (existsSync(file)) checkHeader(file);
  let store: EmbeddedStore;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!readOnly) preallocateLockFile(join(dir, LOCK_FILE_NAME));
    store = await EmbeddedStore.open({ path: dir, dataDir, readOnly });
  } catch (err) {
    throw corrupt(file, (err as Error).message);
  }
  try {
    store.verify();
  } catch (err) {
    void store.close();
    throw corrupt(file, (err as Error).message);
  }
  return store;
}

/**
 * LMDB maps its lock file (the reader table) and writes it through the map. Created by LMDB
 * it is a sparse file: on a full disk the first touch of a page kills the process (SIGBUS).
 * Written here with real zeros first (LMDB keeps a lock file larger than it needs and
 * initializes it), its pages are allocated before the disk can fill.
 */
function preallocateLockFile(path: string): void {
  if (existsSync(path)) return;
  writeFileSync(path, Buffer.alloc(LOCK_FILE_BYTES), { mode: 0o600, flag: "wx" });
}

function checkHeader(file: string): void {
  const head = Buffer.alloc(64);
  let size: number;
  try {
    size = statSync(file).size;
    const fd = openSync(file, "r");
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new WarrenError(ErrorCode.FailedPrecondition, `cannot read the store ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (head.indexOf(LMDB_MAGIC) < 0 || size < 8192) throw corrupt(file, "not an LMDB store (no valid meta page)");
}

function corrupt(file: string, why: string): WarrenError {
  return new WarrenError(
    ErrorCode.FailedPrecondition,
    `the store ${file} is corrupt or unreadable (${why}): restore a backup into an empty WARREN_DATA_DIR (warren-server restore), or move the file away to start empty`,
  );
}

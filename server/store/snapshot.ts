import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import { VERSION } from "../../shared/version.js";
import { CURRENT_SCHEMA_VERSION } from "./schema.js";

/** The kinds of record a backup carries (login codes live seconds: they are left out). */
export const SnapshotKind = {
  User: "user",
  Token: "token",
  Workspace: "workspace",
  SshKey: "ssh-key",
  SshIdentity: "ssh-identity",
  HostKey: "ssh-host-key",
} as const;
export type SnapshotKind = (typeof SnapshotKind)[keyof typeof SnapshotKind];
const KINDS = new Set<string>(Object.values(SnapshotKind));

/** One record: its kind, its id within the kind (name, token id, fingerprint) and the record as stored. */
export interface SnapshotEntry {
  readonly kind: SnapshotKind;
  readonly id: string;
  readonly record: unknown;
}

/** A store that can be backed up and restored (embedded and Redis). */
export interface SnapshotSource {
  /** Every record, from one consistent point in time. */
  snapshot(): AsyncIterable<SnapshotEntry>;
  isEmpty(): Promise<boolean>;
  /** Removes every record (restore --force). */
  clear(): Promise<void>;
  /** Stores one record as it is. */
  restore(entry: SnapshotEntry): Promise<void>;
}

/** First line of a backup file. */
interface BackupHeader {
  readonly format: "warren-backup";
  readonly formatVersion: 1;
  readonly schemaVersion: number;
  readonly serverVersion: string;
  readonly createdAt: string;
  readonly source: string;
}

const FORMAT = "warren-backup";

/**
 * Writes a backup: a header line, then one JSON line per record. Tokens are in it as the
 * stored hashes and variables as sealed by the server secret: the file holds no secret in
 * the clear, and the restored variables open only with the same WARREN_SECRET_KEY.
 * Resolves with the number of records written.
 */
export async function writeBackup(source: SnapshotSource, out: Writable, options: { source: string; now?: () => number }): Promise<number> {
  const header: BackupHeader = {
    format: FORMAT,
    formatVersion: 1,
    schemaVersion: CURRENT_SCHEMA_VERSION,
    serverVersion: VERSION,
    createdAt: new Date((options.now ?? Date.now)()).toISOString(),
    source: options.source,
  };
  let lines = [JSON.stringify(header)];
  let count = 0;
  for await (const entry of source.snapshot()) {
    lines.push(JSON.stringify(entry));
    count++;
    if (lines.length >= 256) {
      await write(out, lines.join("\n") + "\n");
      lines = [];
    }
  }
  if (lines.length > 0) await write(out, lines.join("\n") + "\n");
  return count;
}

/**
 * Loads a backup into a store. Refuses (failed_precondition) a store that holds records unless
 * `force`, which empties it first. Checks the whole file before it changes anything.
 */
export async function restoreBackup(target: SnapshotSource, input: Readable, options: { force: boolean }): Promise<number> {
  const entries = await readBackup(input);
  if (!(await target.isEmpty())) {
    if (!options.force) {
      throw new WarrenError(ErrorCode.FailedPrecondition, "the store already holds records; restore --force replaces them with the backup's");
    }
    await target.clear();
  }
  for (const entry of entries) await target.restore(entry);
  return entries.length;
}

async function readBackup(input: Readable): Promise<SnapshotEntry[]> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  let header: BackupHeader | undefined;
  const entries: SnapshotEntry[] = [];
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw invalid(`line ${n} is not JSON`);
    }
    if (!header) {
      header = value as BackupHeader;
      if (header?.format !== FORMAT) throw invalid("it does not start with a warren-backup header (was it written by warren-server backup?)");
      if (header.formatVersion !== 1) throw invalid(`its format version ${String(header.formatVersion)} is newer than this server reads (1)`);
      if (typeof header.schemaVersion !== "number" || header.schemaVersion > CURRENT_SCHEMA_VERSION) {
        throw invalid(`it was written with store schema version ${String(header.schemaVersion)}, newer than this server's ${CURRENT_SCHEMA_VERSION}: restore with a newer warren-server`);
      }
      continue;
    }
    const entry = value as Partial<SnapshotEntry>;
    if (!entry || !KINDS.has(String(entry.kind)) || typeof entry.id !== "string" || typeof entry.record !== "object" || entry.record === null) {
      throw invalid(`line ${n} is not a record`);
    }
    entries.push(entry as SnapshotEntry);
  }
  if (!header) throw invalid("it is empty");
  return entries;
}

function invalid(why: string): WarrenError {
  return new WarrenError(ErrorCode.InvalidArgument, `not a usable backup: ${why}`);
}

function write(out: Writable, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write(text, (err) => (err ? reject(err) : resolve()));
  });
}

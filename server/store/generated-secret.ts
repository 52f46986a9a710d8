import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { ErrorCode, WarrenError } from "../../shared/errors.js";

export const ADMIN_TOKEN_FILE = "admin-token";
export const SECRET_KEY_FILE = "secret-key";

export interface GeneratedSecret {
  readonly value: string;
  readonly path: string;
  /** True on the start that generated it (the only one that prints it). */
  readonly generated: boolean;
}

/**
 * A secret the operator did not set: generated once into the data directory (mode 0600) and
 * read from there ever after, so that agents, saved logins and sealed variables survive a
 * restart. Written to a temporary file and hard-linked into place, so that two servers racing
 * on one directory agree on one value. Throws invalid_argument naming WARREN_DATA_DIR when it
 * cannot be read or written.
 */
export function loadOrGenerateSecret(options: { dataDir: string; file: string; generate: () => string; minLength: number }): GeneratedSecret {
  const path = join(options.dataDir, options.file);
  let generated = false;
  if (!existsSync(path)) {
    try {
      mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
      const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
      writeFileSync(tmp, `${options.generate()}\n`, { mode: 0o600, flush: true });
      try {
        linkSync(tmp, path);
        generated = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      } finally {
        unlinkSync(tmp);
      }
    } catch (err) {
      throw new WarrenError(ErrorCode.InvalidArgument, `WARREN_DATA_DIR: cannot write ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  let value: string;
  try {
    value = readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new WarrenError(ErrorCode.InvalidArgument, `WARREN_DATA_DIR: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (value.length < options.minLength) {
    throw new WarrenError(ErrorCode.InvalidArgument, `WARREN_DATA_DIR: ${path} must hold at least ${options.minLength} characters; fix or delete it`);
  }
  return { value, path, generated };
}

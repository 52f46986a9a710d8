import { createHash } from "node:crypto";
import { realpathSync, unlinkSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { ErrorCode, WarrenError } from "../../shared/errors.js";

/** Longest Unix socket path Linux takes (108 bytes with the terminating NUL), with room to spare. */
const MAX_SOCKET_PATH = 100;
export const LOCK_FILE = "server.lock";

/**
 * The data directory's lock: a Unix socket this server listens on. A second server finds it
 * answering and refuses to start; a socket left by a crashed server answers nothing and is
 * replaced. Unlike a PID file it cannot be fooled by a reused PID (a container restarted as
 * PID 1), and the kernel drops it with the process. Paths too long for a socket use the
 * abstract namespace, keyed by the directory's real path.
 */
export class DataDirLock {
  readonly #server: net.Server;
  readonly #path: string;

  private constructor(server: net.Server, path: string) {
    this.#server = server;
    this.#path = path;
  }

  static async acquire(dataDir: string): Promise<DataDirLock> {
    const path = socketPath(dataDir);
    for (let attempt = 0; ; attempt++) {
      try {
        return new DataDirLock(await listen(path), path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || attempt > 0) {
          throw new WarrenError(ErrorCode.FailedPrecondition, `WARREN_DATA_DIR: cannot lock the data directory ${dataDir}: ${(err as Error).message}`);
        }
      }
      if (await answers(path)) {
        throw new WarrenError(
          ErrorCode.FailedPrecondition,
          `another warren-server is using the data directory ${dataDir} (it holds ${path.startsWith("\0") ? "its lock" : path}); stop it, or give this server its own WARREN_DATA_DIR`,
        );
      }
      // Left by a server that died: nobody listens.
      try {
        unlinkSync(path);
      } catch {
        // Gone meanwhile: try again anyway.
      }
    }
  }

  release(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  get path(): string {
    return this.#path;
  }
}

function socketPath(dataDir: string): string {
  const path = join(dataDir, LOCK_FILE);
  if (Buffer.byteLength(path) <= MAX_SOCKET_PATH) return path;
  return `\0warren-data-dir-${createHash("sha256").update(realpathSync(dataDir)).digest("hex").slice(0, 32)}`;
}

function listen(path: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => socket.destroy());
    server.once("error", reject);
    server.listen({ path, exclusive: true }, () => {
      server.off("error", reject);
      server.unref();
      resolve(server);
    });
  });
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ path });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

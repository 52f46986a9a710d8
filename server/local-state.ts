import type { Logger } from "pino";
import { generateSecretKey } from "./auth/secret-keys.js";
import { generateAdminToken } from "./domain/tokens.js";
import { dataDirOf, storeKindOf, type ServerConfig } from "./config.js";
import { openEmbeddedStore } from "./store/embedded-data-dir.js";
import type { EmbeddedStore } from "./store/embedded-store.js";
import { ADMIN_TOKEN_FILE, loadOrGenerateSecret, SECRET_KEY_FILE, type GeneratedSecret } from "./store/generated-secret.js";

/** What a server keeps in its data directory, opened before the server is built. */
export interface LocalState {
  /** The embedded store (WARREN_STORE=embedded, the default without Redis). */
  readonly embeddedStore?: EmbeddedStore;
  /** The admin token when WARREN_ADMIN_TOKEN is unset. */
  readonly adminToken?: GeneratedSecret;
  /** The server secret when WARREN_SECRET_KEY is unset. */
  readonly secretKey?: GeneratedSecret;
  /** Closes the store and releases the data directory. */
  close(): Promise<void>;
}

/**
 * Opens the data directory for a server: the embedded store (locked, checked, migrated) and the
 * secrets the operator did not set, generated there once. Logs what it generated or found.
 */
export async function openLocalState(config: ServerConfig, log: Logger): Promise<LocalState> {
  const dataDir = dataDirOf(config);
  const kind = storeKindOf(config);
  const opened = kind === "embedded" ? await openEmbeddedStore({ dataDir, log: log.child({ component: "store" }) }) : undefined;
  try {
    if (kind === "memory") log.warn("WARREN_STORE=memory: every user, token and workspace is lost when this server stops (meant for tests)");
    if (opened) log.info({ path: opened.store.path }, "embedded store open");
    const adminToken = config.adminToken === undefined ? loadOrGenerateSecret({ dataDir, file: ADMIN_TOKEN_FILE, generate: generateAdminToken, minLength: 16 }) : undefined;
    const secretKey = config.secretKey === undefined ? loadOrGenerateSecret({ dataDir, file: SECRET_KEY_FILE, generate: generateSecretKey, minLength: 32 }) : undefined;
    if (adminToken?.generated) {
      log.warn({ adminToken: adminToken.value, path: adminToken.path }, "generated the admin token (shown this once; kept in the data directory, mode 0600); set WARREN_ADMIN_TOKEN to choose one");
    } else if (adminToken) {
      log.info({ path: adminToken.path }, "admin token: the one generated on the first start, kept in the data directory");
    }
    if (secretKey?.generated) log.info({ path: secretKey.path }, "generated the server secret (WARREN_SECRET_KEY) into the data directory");
    if (secretKey && config.redisUrl) {
      log.warn({ path: secretKey.path }, "WARREN_SECRET_KEY is unset: this server uses the one in its data directory; every server of a cluster needs the same, or variables and browser sessions work on one server only");
    }
    return {
      ...(opened ? { embeddedStore: opened.store } : {}),
      ...(adminToken ? { adminToken } : {}),
      ...(secretKey ? { secretKey } : {}),
      close: async () => {
        await opened?.close();
      },
    };
  } catch (err) {
    await opened?.close();
    throw err;
  }
}

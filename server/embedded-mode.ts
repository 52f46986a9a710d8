import { ErrorCode, WarrenError } from "../shared/errors.js";
import { LocalPresence } from "./cluster/presence.js";
import { storeKindOf } from "./config.js";
import type { ControlStore } from "./domain/store.js";
import { LocalEventBus } from "./events/event-bus.js";
import { MemoryStore } from "./store/memory-store.js";
import type { ServerMode, ServerModeContext } from "./server-mode.js";

/** One server: the data directory's store (or memory, for tests), events and presence in process. */
export function createEmbeddedMode(context: ServerModeContext): ServerMode {
  const store = embeddedStoreOrMemory(context);
  return {
    kind: "embedded",
    store,
    workspaceLookup: store,
    workspaceCache: undefined,
    events: new LocalEventBus(),
    presence: new LocalPresence({ local: context.registry }),
    dialer: context.localDialer,
    cluster: undefined,
    // Nothing here calls back: no Redis, no peers.
    attach: () => undefined,
    start: () => Promise.resolve(undefined),
    stop: () => Promise.resolve(),
  };
}

function embeddedStoreOrMemory(context: ServerModeContext): ControlStore {
  if (context.embeddedStore) return context.embeddedStore;
  if (storeKindOf(context.config) === "memory") return new MemoryStore();
  throw new WarrenError(ErrorCode.Internal, "the embedded store is not open: open the data directory (openLocalState) before building the server");
}

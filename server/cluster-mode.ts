import { readFileSync } from "node:fs";
import { ErrorCode, WarrenError } from "../shared/errors.js";
import { ClusterDialer } from "./cluster/cluster-dialer.js";
import { PrivateClient } from "./cluster/private-client.js";
import { PrivateEndpoint } from "./cluster/private-endpoint.js";
import { RedisConnection } from "./cluster/redis-connection.js";
import { RedisPresence } from "./cluster/redis-presence.js";
import { RedisEventBus } from "./events/redis-event-bus.js";
import { RedisStore } from "./store/redis-store.js";
import { WorkspaceCache } from "./store/workspace-cache.js";
import type { ServerMode, ServerModeContext } from "./server-mode.js";

/**
 * Several servers sharing a Redis: records, events and presence in Redis, and a private API
 * through which a server dials the agents another one holds.
 */
export function createClusterMode(context: ServerModeContext): ServerMode {
  const { config, log, serverId, registry, localDialer, metrics } = context;
  if (!config.redisUrl || !config.clusterSecret) {
    throw new WarrenError(ErrorCode.Internal, "cluster mode needs WARREN_REDIS_URL and WARREN_CLUSTER_SECRET");
  }
  // Told by Redis when it is back, which can only happen after presence exists below.
  let presence: RedisPresence | undefined;
  const redis = new RedisConnection({
    target: config.redisUrl,
    prefix: config.redisPrefix,
    log: log.child({ component: "redis" }),
    onError: (operation) => metrics.redisErrors.inc({ operation }),
    onOperation: (operation, seconds) => metrics.redisOperation(operation, seconds),
    onAvailability: (available) => {
      if (!available) return;
      presence?.refreshNow();
      context.onRedisBack();
    },
  });
  const store = new RedisStore({ redis });
  const events = new RedisEventBus({ redis, serverId, log: log.child({ component: "events" }) });
  presence = new RedisPresence({
    redis,
    serverId,
    address: context.privateAddress,
    held: registry,
    log: log.child({ component: "presence" }),
  });
  const peers = new PrivateClient({
    clusterSecret: config.clusterSecret,
    ...(config.privateTls ? { tls: { serverName: config.rootDomain, ...(config.privateCaFile ? { ca: readFileSync(config.privateCaFile) } : {}) } } : {}),
    serverId,
    log: log.child({ component: "private-client" }),
    // The holder waits for a stream and for the agent's dial; then it answers.
    answerTimeoutMs: config.streamWaitTimeout + config.dialTimeout + 2000,
    // A peer that drains sends GOAWAY once its agents have moved: what rides on its session moves.
    onSessionClosing: context.onPeerSessionClosing,
  });
  const dialer = new ClusterDialer({
    local: localDialer,
    localAgents: registry,
    presence,
    peers,
    log: log.child({ component: "cluster-dialer" }),
    onForward: (outcome) => metrics.forwards.inc({ outcome }),
  });
  const endpoint = new PrivateEndpoint({
    listen: config.privateAddr,
    ...(config.privateTls && context.tls ? { tls: context.tls.options } : {}),
    clusterSecret: config.clusterSecret,
    acceptedSecrets: config.clusterSecretAccepted,
    serverId,
    local: localDialer,
    agents: registry,
    log: log.child({ component: "private-endpoint" }),
    onOutcome: (outcome) => metrics.forwardedDials.inc({ outcome }),
  });
  const cache = new WorkspaceCache({ store });
  events.subscribe((event) => {
    if (event.type !== "token-revoked") cache.invalidate(event.workspace, event.type === "workspace-revoked");
  });
  return {
    kind: "cluster",
    store,
    workspaceLookup: cache,
    workspaceCache: cache,
    events,
    presence,
    dialer,
    cluster: { redis, events, presence, endpoint, peers },
  };
}

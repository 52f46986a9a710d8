import { readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { ErrorCode, WarrenError } from "../shared/errors.js";
import type { HostPort } from "../shared/settings.js";
import { ClusterDialer } from "./cluster/cluster-dialer.js";
import { PrivateClient } from "./cluster/private-client.js";
import { PrivateEndpoint } from "./cluster/private-endpoint.js";
import { RedisConnection } from "./cluster/redis-connection.js";
import { RedisPresence } from "./cluster/redis-presence.js";
import { RedisEventBus } from "./events/redis-event-bus.js";
import { LateBinding } from "./late-binding.js";
import { warnUnlessRedisPersists } from "./store/redis-persistence.js";
import { RedisStore } from "./store/redis-store.js";
import { WorkspaceCache } from "./store/workspace-cache.js";
import type { ServerMode, ServerModeContext, ServerModeHooks } from "./server-mode.js";

/**
 * Several servers sharing a Redis: records, events and presence in Redis, and a private API
 * through which a server dials the agents another one holds.
 */
export function createClusterMode(context: ServerModeContext): ServerMode {
  const { config, log, serverId, registry, localDialer, metrics } = context;
  if (!config.redisUrl || !config.clusterSecret) {
    throw new WarrenError(ErrorCode.Internal, "cluster mode needs WARREN_REDIS_URL and WARREN_CLUSTER_SECRET");
  }
  // Redis and the peers call back into what is built later: presence (below) and the server's
  // authenticator and front doors (attach()). Their first event comes after start.
  const hooks = new LateBinding<ServerModeHooks>("the cluster mode's hooks", "ServerMode.attach()");
  const presenceBinding = new LateBinding<RedisPresence>("Redis presence", "createClusterMode");
  const redis = new RedisConnection({
    target: config.redisUrl,
    prefix: config.redisPrefix,
    log: log.child({ component: "redis" }),
    onError: (operation) => metrics.redisErrors.inc({ operation }),
    onOperation: (operation, seconds) => metrics.redisOperation(operation, seconds),
    onAvailability: (available) => {
      if (!available) return;
      presenceBinding.get().refreshNow();
      hooks.get().onRedisBack();
    },
  });
  const store = new RedisStore({ redis });
  const events = new RedisEventBus({ redis, serverId, log: log.child({ component: "events" }) });
  const presence = new RedisPresence({ redis, serverId, held: registry, log: log.child({ component: "presence" }) });
  presenceBinding.attach(presence);
  const peers = new PrivateClient({
    clusterSecret: config.clusterSecret,
    ...(config.privateTls ? { tls: { serverName: config.rootDomain, ...(config.privateCaFile ? { ca: readFileSync(config.privateCaFile) } : {}) } } : {}),
    serverId,
    log: log.child({ component: "private-client" }),
    // The holder waits for a stream and for the agent's dial; then it answers.
    answerTimeoutMs: config.streamWaitTimeout + config.dialTimeout + 2000,
    // A peer that drains sends GOAWAY once its agents have moved: what rides on its session moves.
    onSessionClosing: (session) => hooks.get().onPeerSessionClosing(session),
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
    attach: (h) => hooks.attach(h),
    async start(waitingForRedis) {
      // A server that never saw the cluster state cannot authenticate anyone: wait for Redis.
      waitingForRedis(true);
      await redis.waitUntilReady();
      waitingForRedis(false);
      await warnUnlessRedisPersists(redis, log.child({ component: "redis" }));
      await events.start();
      const address = await endpoint.listen();
      const advertised = formatHostPort(config.privateAdvertiseAddr ?? advertisedAddress(config.privateAddr, address.port));
      await presence.start(advertised);
      return { address, advertised, redis: redis.description };
    },
    async stop() {
      // Our records go at once, so other servers stop forwarding here before they expire.
      await presence.stop();
      endpoint.close();
      peers.close();
      await redis.close();
    },
  };
}

function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** What other servers dial by default: the listen host, or this machine's first non-loopback IPv4 when it listens on all interfaces. */
function advertisedAddress(listen: HostPort, boundPort: number): HostPort {
  if (listen.host !== "0.0.0.0" && listen.host !== "::") return { host: listen.host, port: boundPort };
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) {
      if (a.family === "IPv4" && !a.internal) return { host: a.address, port: boundPort };
    }
  }
  return { host: "127.0.0.1", port: boundPort };
}

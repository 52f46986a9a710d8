import type { Logger } from "../../shared/logger.js";
import type { RedisClient, RedisConnection } from "../cluster/redis-connection.js";
import type { ClusterEvent, EventBus } from "./event-bus.js";

interface Envelope {
  readonly origin: string;
  readonly event: ClusterEvent;
}

/**
 * Cluster events over Redis pub/sub on one channel, P:events. An event reaches this server's
 * subscribers at once (even when Redis is down) and the other servers' through Redis within
 * milliseconds. Pub/sub does not replay: a server cut off from Redis at that moment misses the
 * event; revocations stay safe because the token and workspace are gone from the store, so a
 * reconnecting agent is refused.
 */
export class RedisEventBus implements EventBus {
  readonly #redis: RedisConnection;
  readonly #serverId: string;
  readonly #log: Logger;
  readonly #channel: string;
  readonly #handlers = new Set<(event: ClusterEvent) => void>();

  constructor(options: { redis: RedisConnection; serverId: string; log: Logger }) {
    this.#redis = options.redis;
    this.#serverId = options.serverId;
    this.#log = options.log;
    this.#channel = options.redis.key("events");
  }

  /** Subscribes; resolves once Redis confirmed it, or after a bounded wait (it goes on retrying). Never rejects. */
  async start(): Promise<void> {
    // Closed with the connection.
    const sub: RedisClient = this.#redis.subscriber();
    sub.on("message", (channel: string, text: string) => {
      if (channel !== this.#channel) return;
      let envelope: Envelope;
      try {
        envelope = JSON.parse(text) as Envelope;
      } catch {
        this.#log.warn("ignored a malformed cluster event");
        return;
      }
      if (envelope.origin === this.#serverId) return;
      this.#deliver(envelope.event);
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      sub.subscribe(this.#channel).catch((err: Error) => this.#log.warn({ err: err.message }, "cluster event subscription failed; retrying")),
      new Promise((resolve) => (timer = setTimeout(resolve, 5000))),
    ]);
    clearTimeout(timer);
  }

  /** Delivers here at once, then publishes; rejects with unavailable when Redis did not take it (other servers were not told). */
  async publish(event: ClusterEvent): Promise<void> {
    this.#deliver(event);
    const envelope: Envelope = { origin: this.#serverId, event };
    await this.#redis.run("publish", (c) => c.publish(this.#channel, JSON.stringify(envelope)));
  }

  subscribe(handler: (event: ClusterEvent) => void): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }

  #deliver(event: ClusterEvent): void {
    for (const handler of [...this.#handlers]) {
      try {
        handler(event);
      } catch (err) {
        this.#log.error({ err: (err as Error).message, event: event.type }, "cluster event handler failed");
      }
    }
  }
}

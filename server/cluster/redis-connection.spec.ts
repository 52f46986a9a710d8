import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { ManualClock } from "../../shared/manual-clock.js";
import { mayTransition, RedisConnection, RedisConnectionState, type RedisClient } from "./redis-connection.js";
import { parseRedisUrl } from "./redis-url.js";

/** An ioredis client without a socket: the spec says when it connects, drops and answers PING. */
class FakeClient extends EventEmitter {
  pingAnswers = true;
  pings = 0;
  quits = 0;
  ping(): Promise<string> {
    this.pings++;
    return this.pingAnswers ? Promise.resolve("PONG") : new Promise(() => {});
  }
  quit(): Promise<string> {
    this.quits++;
    return Promise.resolve("OK");
  }
  disconnect(): void {}
}

function replyError(message: string): Error {
  const err = new Error(message);
  err.name = "ReplyError";
  return err;
}

function connection() {
  const clock = new ManualClock();
  const clients: FakeClient[] = [];
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const availability: boolean[] = [];
  const errors: string[] = [];
  const redis = new RedisConnection({
    target: parseRedisUrl("redis://127.0.0.1:6379"),
    prefix: "warren",
    log,
    clock,
    operationTimeoutMs: 1000,
    onAvailability: (available) => availability.push(available),
    onError: (operation) => errors.push(operation),
    createClient: () => {
      const c = new FakeClient();
      clients.push(c);
      return c as unknown as RedisClient;
    },
  });
  const client = clients[0]!;
  const changes = () => lines.filter((l) => l["msg"] === "Redis connection state").map((l) => [l["from"], l["to"]]);
  return { redis, client, clock, availability, errors, changes, lines };
}

const { Connecting, Ready, Suspect, Reconnecting, Closed } = RedisConnectionState;

describe("RedisConnection state machine (fake client, manual clock)", () => {
  it("allows only the transitions of its table, and nothing out of Closed", () => {
    expect(mayTransition(Connecting, Ready)).toBe(true);
    expect(mayTransition(Connecting, Reconnecting)).toBe(false);
    expect(mayTransition(Connecting, Suspect)).toBe(false);
    expect(mayTransition(Ready, Suspect)).toBe(true);
    expect(mayTransition(Suspect, Ready)).toBe(true);
    expect(mayTransition(Reconnecting, Suspect)).toBe(false);
    for (const to of [Connecting, Ready, Suspect, Reconnecting]) expect(mayTransition(Closed, to)).toBe(false);
  });

  it("fails operations at once until Redis is first ready, then runs them", async () => {
    const { redis, client, availability } = connection();
    expect(redis.state).toBe(Connecting);
    expect(redis.available).toBe(false);
    await expect(redis.run("get", async () => "x")).rejects.toMatchObject({ code: "unavailable", message: "the cluster's Redis is unreachable" });
    client.emit("close"); // a refused first connect does not count as a reconnect
    expect(redis.state).toBe(Connecting);
    const ready = redis.waitUntilReady();
    client.emit("ready");
    await ready;
    expect(redis.state).toBe(Ready);
    expect(availability).toEqual([true]);
    expect(await redis.run("get", async () => "x")).toBe("x");
  });

  it("a failed operation makes it suspect until a PING answers", async () => {
    const { redis, client, clock, availability, errors, changes } = connection();
    client.emit("ready");
    client.pingAnswers = false;
    await expect(redis.run("hgetall", () => Promise.reject(new Error("read ECONNRESET")))).rejects.toMatchObject({
      code: "unavailable",
      message: "the cluster's Redis failed: read ECONNRESET",
    });
    expect(errors).toEqual(["hgetall"]);
    expect(redis.state).toBe(Suspect);
    await expect(redis.run("get", async () => "x")).rejects.toMatchObject({ message: "the cluster's Redis is unreachable" });
    await clock.advance(2000); // unanswered probes
    expect(client.pings).toBeGreaterThan(0);
    expect(redis.state).toBe(Suspect);
    client.pingAnswers = true;
    await clock.advance(500);
    expect(redis.state).toBe(Ready);
    expect(availability).toEqual([true, false, true]);
    const pings = client.pings;
    await clock.advance(5000); // the probe stopped
    expect(client.pings).toBe(pings);
    expect(changes()).toEqual([
      ["connecting", "ready"],
      ["ready", "suspect"],
      ["suspect", "ready"],
    ]);
  });

  it("an operation that outlives its bound counts as a failure", async () => {
    const { redis, client, clock } = connection();
    client.emit("ready");
    const pending = redis.run("slow", () => new Promise(() => {}), 300);
    const outcome = expect(pending).rejects.toMatchObject({ message: "the cluster's Redis failed: Redis did not answer slow within 300 ms" });
    await clock.advance(300);
    await outcome;
    expect(redis.state).toBe(Suspect);
  });

  it("a Redis error reply (the command was wrong, Redis is fine) leaves it ready", async () => {
    const { redis, client } = connection();
    client.emit("ready");
    await expect(redis.run("eval", () => Promise.reject(replyError("ERR syntax")))).rejects.toMatchObject({ code: "unavailable" });
    expect(redis.state).toBe(Ready);
  });

  it("reconnects: unavailable while the client is down, ready again on its own", async () => {
    const { redis, client, availability, changes } = connection();
    client.emit("ready");
    let fail!: (err: Error) => void;
    const inFlight = redis.run("get", () => new Promise((_, reject) => (fail = reject)));
    client.emit("close");
    client.emit("end");
    expect(redis.state).toBe(Reconnecting);
    // A failure that lands while down does not make it suspect: "ready" alone brings it back.
    fail(new Error("Connection is closed."));
    await expect(inFlight).rejects.toMatchObject({ code: "unavailable" });
    expect(redis.state).toBe(Reconnecting);
    client.emit("ready");
    expect(redis.state).toBe(Ready);
    expect(availability).toEqual([true, false, true]);
    expect(changes()).toEqual([
      ["connecting", "ready"],
      ["ready", "reconnecting"],
      ["reconnecting", "ready"],
    ]);
  });

  it("close is final: operations fail with a clear message, client events change nothing, no availability is announced", async () => {
    const { redis, client, availability, lines } = connection();
    client.emit("ready");
    const sub = redis.subscriber() as unknown as FakeClient;
    await redis.close();
    expect(redis.state).toBe(Closed);
    expect(client.quits).toBe(1);
    expect(sub.quits).toBe(1);
    client.emit("ready");
    expect(redis.state).toBe(Closed);
    await expect(redis.run("get", async () => "x")).rejects.toMatchObject({ code: "unavailable", message: "Redis connection closed" });
    expect(availability).toEqual([true]);
    expect(lines.filter((l) => l["msg"] === "Redis is unreachable")).toEqual([]);
  });
});

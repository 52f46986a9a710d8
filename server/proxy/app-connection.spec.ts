import { Duplex } from "node:stream";
import { describe, expect, it } from "vitest";
import { ErrorCode, type WarrenError } from "../../shared/errors.js";
import { createLogger } from "../../shared/logger.js";
import { ManualClock } from "../../shared/manual-clock.js";
import { AppConnection, AppConnectionState, BodyMode, mayTransition, type AppConnectionDeps, type ResponseSink } from "./app-connection.js";
import { UpstreamPool } from "./upstream-pool.js";

const log = createLogger({ name: "app-connection-spec", level: "silent" });
const TARGET = { workspace: "dev", workspaceId: "ws_dev", port: 8080 };
const GET = Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
const POST = Buffer.from("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");

/** An app connection's far end: what was written to it, and answers pushed from it. */
class FakeApp {
  readonly written: Buffer[] = [];
  readonly duplex = new Duplex({
    read() {},
    write: (chunk: Buffer, _encoding, callback) => {
      this.written.push(chunk);
      callback();
    },
  });

  get text(): string {
    return Buffer.concat(this.written).toString("latin1");
  }

  async answer(...chunks: string[]): Promise<void> {
    for (const chunk of chunks) {
      this.duplex.push(Buffer.from(chunk, "latin1"));
      await turn();
    }
  }

  async close(): Promise<void> {
    this.duplex.destroy();
    await turn();
  }
}

/** Lets the stream events of the last push or destroy run (no timer, no sleep). */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Records what reaches the client side. */
class RecordingSink implements ResponseSink {
  readonly interims: number[] = [];
  readonly heads: Array<{ status: number; raw: string; keepAlive: boolean }> = [];
  readonly bodies: string[] = [];
  ended: number | undefined;
  failed: { error: WarrenError; answerable: boolean } | undefined;

  interim(head: { statusCode: number }): boolean {
    this.interims.push(head.statusCode);
    return true;
  }
  head(head: { statusCode: number }, raw: Buffer, keepAlive: boolean): boolean {
    this.heads.push({ status: head.statusCode, raw: raw.toString("latin1"), keepAlive });
    return true;
  }
  body(chunk: Buffer): boolean {
    this.bodies.push(chunk.toString("latin1"));
    return true;
  }
  end(status: number): void {
    this.ended = status;
  }
  fail(error: WarrenError, answerable: boolean): void {
    this.failed = { error, answerable };
  }
}

function deps(apps: FakeApp[], overrides: Partial<Omit<AppConnectionDeps, "clock">> = {}): AppConnectionDeps & { clock: ManualClock; dials: Buffer[][] } {
  const clock = new ManualClock();
  const dials: Buffer[][] = [];
  return {
    dial: async (_target, earlyData) => {
      dials.push([...earlyData]);
      const app = apps.shift();
      if (!app) throw new Error("no app left to dial");
      for (const part of earlyData) app.written.push(part);
      return app.duplex;
    },
    timeoutMs: 1000,
    mode: BodyMode.Raw,
    log,
    clock,
    dials,
    ...overrides,
  };
}

describe("AppConnection (the workspace proxy's one pipeline)", () => {
  it("passes a head that arrives in pieces once whole, the body as framed, and is reusable at the answer's end", async () => {
    const app = new FakeApp();
    const d = deps([app]);
    const sink = new RecordingSink();
    const connection = await AppConnection.open(d, TARGET, GET, { method: "GET", retryable: true, sink }, false);
    connection.endRequest();
    expect(d.dials[0]![0]!.toString()).toBe(GET.toString());
    await app.answer("HTTP/1.1 200 OK\r\nTransfer-", "Encoding: chunked\r\n\r\n2\r\nok\r\n", "0\r\n\r\n");
    expect(sink.heads).toEqual([{ status: 200, raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", keepAlive: true }]);
    expect(sink.bodies.join("")).toBe("2\r\nok\r\n0\r\n\r\n");
    expect(sink.ended).toBe(200);
    expect(connection.state).toBe(AppConnectionState.Idle);
    expect(connection.reusable).toBe(true);
  });

  it("gives node's client side the body without framing, and passes 1xx answers before the final one", async () => {
    const app = new FakeApp();
    const sink = new RecordingSink();
    await AppConnection.open(deps([app], { mode: BodyMode.Decoded }), TARGET, GET, { method: "GET", retryable: true, sink }, false);
    await app.answer("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "2\r\nde\r\n0\r\n\r\n");
    expect(sink.interims).toEqual([103]);
    expect(sink.bodies.join("")).toBe("abcde");
    expect(sink.ended).toBe(200);
  });

  it("answers 504 when the app does not start its answer within the upstream timeout (driven by the clock, no sleep)", async () => {
    const app = new FakeApp();
    const d = deps([app]);
    const sink = new RecordingSink();
    const connection = await AppConnection.open(d, TARGET, GET, { method: "GET", retryable: true, sink }, false);
    await d.clock.advance(999);
    expect(sink.failed).toBeUndefined();
    await d.clock.advance(1);
    expect(sink.failed?.error.code).toBe(ErrorCode.DeadlineExceeded);
    expect(sink.failed?.error.message).toBe('port 8080 of workspace "dev" did not respond within 1000 ms');
    expect(sink.failed?.answerable).toBe(true);
    expect(connection.state).toBe(AppConnectionState.Closed);
    expect(app.duplex.destroyed).toBe(true);
  });

  it("sends an idempotent request again, once, when a kept connection closes under it; the answer comes from the fresh one", async () => {
    const stale = new FakeApp();
    const fresh = new FakeApp();
    const pool = new UpstreamPool({ maxIdlePerTarget: 2, idleTimeoutMs: 60_000, acceptsNewWork: () => true });
    pool.give(TARGET, stale.duplex);
    const d = deps([fresh], { pool });
    const sink = new RecordingSink();
    await AppConnection.open(d, TARGET, GET, { method: "GET", retryable: true, sink }, false);
    expect(stale.text).toBe(GET.toString());
    await stale.close();
    expect(d.dials).toHaveLength(1);
    expect(d.dials[0]![0]!.toString()).toBe(GET.toString());
    await fresh.answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh");
    expect(sink.failed).toBeUndefined();
    expect(sink.bodies.join("")).toBe("fresh");
    pool.close();
  });

  it("never sends a non-idempotent request twice: 502 with the proxy's text when its kept connection closes under it", async () => {
    const stale = new FakeApp();
    const pool = new UpstreamPool({ maxIdlePerTarget: 2, idleTimeoutMs: 60_000, acceptsNewWork: () => true });
    pool.give(TARGET, stale.duplex);
    const d = deps([], { pool });
    const sink = new RecordingSink();
    await AppConnection.open(d, TARGET, POST, { method: "POST", retryable: false, sink }, false);
    await stale.close();
    expect(d.dials).toHaveLength(0);
    expect(sink.failed?.error.code).toBe(ErrorCode.BadGateway);
    expect(sink.failed?.error.message).toBe('connection to port 8080 of workspace "dev" failed');
    expect(sink.failed?.answerable).toBe(true);
    pool.close();
  });

  it("a fresh connection that closes before answering is a 502, not a retry (only kept connections may have been closed by the app as we reused them)", async () => {
    const app = new FakeApp();
    const d = deps([app]);
    const sink = new RecordingSink();
    await AppConnection.open(d, TARGET, GET, { method: "GET", retryable: true, sink }, false);
    await app.close();
    expect(d.dials).toHaveLength(1);
    expect(sink.failed?.error.code).toBe(ErrorCode.BadGateway);
  });

  it("cuts the client (no error answer) when the app dies in the middle of a body", async () => {
    const app = new FakeApp();
    const sink = new RecordingSink();
    await AppConnection.open(deps([app]), TARGET, GET, { method: "GET", retryable: true, sink }, false);
    await app.answer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
    await app.close();
    expect(sink.failed?.answerable).toBe(false);
  });

  it("lets go of a kept connection the app closed between requests: closed, not reusable, nothing reaches a client", async () => {
    const app = new FakeApp();
    const sink = new RecordingSink();
    const connection = await AppConnection.open(deps([app]), TARGET, GET, { method: "GET", retryable: true, sink }, false);
    connection.endRequest();
    await app.answer("HTTP/1.1 204 No Content\r\n\r\n");
    expect(connection.reusable).toBe(true);
    await app.close();
    expect(connection.state).toBe(AppConnectionState.Closed);
    expect(connection.reusable).toBe(false);
    expect(sink.failed).toBeUndefined();
  });

  it("refuses bytes nobody asked for and an answer that breaks HTTP, with a 502 while nothing was passed on", async () => {
    const app = new FakeApp();
    const sink = new RecordingSink();
    await AppConnection.open(deps([app]), TARGET, GET, { method: "GET", retryable: true, sink }, false);
    await app.answer("HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n");
    expect(sink.failed?.error.code).toBe(ErrorCode.BadGateway);
    expect(sink.failed?.error.message).toMatch(/sent a broken HTTP answer/);
    expect(sink.failed?.answerable).toBe(true);
  });

  it("keeps an answer to HEAD without a length alive (llhttp would read it as ending with the connection)", async () => {
    const app = new FakeApp();
    const sink = new RecordingSink();
    const connection = await AppConnection.open(deps([app]), TARGET, Buffer.from("HEAD / HTTP/1.1\r\n\r\n"), { method: "HEAD", retryable: true, sink }, false);
    connection.endRequest();
    await app.answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    expect(sink.ended).toBe(200);
    expect(sink.heads[0]!.keepAlive).toBe(true);
    expect(connection.reusable).toBe(true);
  });

  it("goes back to the pool only at a message boundary; mid-answer it is cut", async () => {
    const pool = new UpstreamPool({ maxIdlePerTarget: 2, idleTimeoutMs: 60_000, acceptsNewWork: () => true });
    const done = new FakeApp();
    const d = deps([done, new FakeApp()], { pool });
    const first = await AppConnection.open(d, TARGET, GET, { method: "GET", retryable: true, sink: new RecordingSink() }, false);
    first.endRequest();
    await done.answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    first.release();
    expect(pool.size).toBe(1);
    const second = await AppConnection.open(d, TARGET, GET, { method: "GET", retryable: true, sink: new RecordingSink() }, false);
    expect(pool.size).toBe(0);
    await done.answer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal");
    second.release();
    expect(done.duplex.destroyed).toBe(true);
    expect(pool.size).toBe(0);
    pool.close();
  });

  it("changes state only along its table", () => {
    expect(mayTransition(AppConnectionState.Idle, AppConnectionState.Awaiting)).toBe(true);
    expect(mayTransition(AppConnectionState.Awaiting, AppConnectionState.Answering)).toBe(true);
    expect(mayTransition(AppConnectionState.Answering, AppConnectionState.Idle)).toBe(true);
    expect(mayTransition(AppConnectionState.Idle, AppConnectionState.Answering)).toBe(false);
    expect(mayTransition(AppConnectionState.Answering, AppConnectionState.Awaiting)).toBe(false);
    expect(mayTransition(AppConnectionState.Closed, AppConnectionState.Idle)).toBe(false);
  });
});

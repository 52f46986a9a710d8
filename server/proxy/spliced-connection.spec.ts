import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startSplicedFrontDoor as startFrontDoor } from "../../test/harness/spliced.js";
import { UpstreamPool } from "./upstream-pool.js";
import { exchange, statuses } from "../../test/harness/raw-http.js";


describe("SplicedConnection (the fast path's HTTP/1.1 framing)", () => {
  let app: http.Server;
  let appPort: number;
  const closers: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    app = http.createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/hinted") {
        res.writeProcessing();
        res.writeEarlyHints({ link: "</a.css>; rel=preload" });
        setTimeout(() => res.end(`final for ${url.searchParams.get("who")}`), Number(url.searchParams.get("delay") ?? "20"));
        return;
      }
      if (url.pathname === "/trickle-head") {
        // The head in pieces, with a cookie for the whole root domain in it.
        const socket = res.socket!;
        const head = "HTTP/1.1 200 OK\r\nSet-Cookie: s=1; Domain=warren.localhost; Path=/\r\nContent-Length: 2\r\n\r\nok";
        let at = 0;
        const timer = setInterval(() => {
          socket.write(head.slice(at, at + 7));
          at += 7;
          if (at >= head.length) clearInterval(timer);
        }, 2);
        return;
      }
      res.end(`answer to ${url.searchParams.get("who") ?? req.url}`);
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    appPort = (app.address() as AddressInfo).port;
  });

  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });

  afterAll(async () => {
    app.closeAllConnections();
    await new Promise<void>((resolve) => app.close(() => resolve()));
  });

  async function frontDoor(options: Parameters<typeof startFrontDoor>[1] = {}) {
    const door = await startFrontDoor(appPort, options);
    closers.push(door.close);
    return door;
  }

  it("passes 102 and 103 through and goes on with the final answer and the next request (a 1xx used to end the request)", async () => {
    const door = await frontDoor();
    const text = await exchange(door.port, "GET /hinted?who=a HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(statuses(text)).toEqual([102, 103, 200, 200]);
    expect(text).toContain("final for a");
    expect(text).toContain("answer to /next");
  });

  it("never pools an app connection that still owes an answer: the next client never gets the answer of one who left after the 103", async () => {
    const pool = new UpstreamPool({ maxIdlePerTarget: 4, idleTimeoutMs: 4000, acceptsNewWork: () => true });
    closers.push(async () => pool.close());
    const door = await frontDoor({ pool });
    for (let i = 0; i < 3; i++) {
      const left = await exchange(door.port, "GET /hinted?who=A&delay=200 HTTP/1.1\r\nHost: x\r\n\r\n", (t) => t.includes("\r\n\r\n"));
      expect(statuses(left)[0]).toBe(102);
      expect(statuses(left).every((status) => status < 200)).toBe(true);
      const next = await exchange(door.port, `GET /plain?who=B${i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(next).toContain(`answer to B${i}`);
      expect(next).not.toContain("final for A");
    }
    // A client that left at a message boundary does leave its app connection for the next one.
    await exchange(door.port, "GET /plain?who=C HTTP/1.1\r\nHost: x\r\n\r\n", (t) => t.includes("answer to C"));
    // The client's close reaches the server a moment later (longer on a loaded machine).
    for (let waited = 0; pool.size === 0 && waited < 3000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    expect(pool.size).toBeGreaterThanOrEqual(1);
  });

  it("rewrites a response head that arrives in pieces: the app's cookie is kept to the host", async () => {
    const door = await frontDoor();
    const text = await exchange(door.port, "GET /trickle-head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(statuses(text)).toEqual([200]);
    expect(text).toContain("\r\nSet-Cookie: s=1; Path=/\r\n");
    expect(text.endsWith("\r\n\r\nok")).toBe(true);
  });

  it("cuts off a client that trickles the head of its second request (slowloris after the first request)", async () => {
    const door = await frontDoor({ headTimeoutMs: 300 });
    const socket = net.connect(door.port, "127.0.0.1");
    let text = "";
    socket.setEncoding("latin1").on("data", (c: string) => (text += c));
    socket.write("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    // One byte of the next head every 100 ms: never idle, never done.
    const head = "GET /second HTTP/1.1\r\nHost: x\r\nX-Slow: ".padEnd(200, "a");
    let at = 0;
    const timer = setInterval(() => {
      if (!socket.destroyed) socket.write(head[at++ % head.length]!);
    }, 100);
    await closed;
    clearInterval(timer);
    expect(statuses(text)).toEqual([200, 408]);
    expect(door.connections.size).toBe(0);
  });

  it("goes on after an answer to HEAD that has no length (found by fuzzing: the connection closed and the next request went unanswered)", async () => {
    const door = await frontDoor();
    const text = await exchange(door.port, "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(statuses(text)).toEqual([200, 200]);
    expect(text).toContain("answer to /b");
    expect(door.appConnections()).toBe(1);
  });

  it("regression: an app that closes its kept connection between requests no longer closes the client's (a request sent at that moment was reset); the next request opens another", async () => {
    // Answers with keep-alive, then closes its side at once.
    let appSideClosed!: () => void;
    const firstClosed = new Promise<void>((resolve) => (appSideClosed = resolve));
    const closing = net.createServer((socket) => {
      socket.once("data", () => socket.end("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye"));
      // Closed both ways: the front door saw the app's end and let go of its side.
      socket.once("close", () => appSideClosed());
    });
    await new Promise<void>((resolve) => closing.listen(0, "127.0.0.1", resolve));
    closers.push(() => new Promise<void>((resolve) => closing.close(() => resolve())));
    const door = await startFrontDoor((closing.address() as AddressInfo).port);
    closers.push(door.close);
    const socket = net.connect(door.port, "127.0.0.1");
    let text = "";
    socket.setEncoding("latin1").on("data", (c: string) => (text += c));
    socket.write("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    await firstClosed;
    socket.end("GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    await new Promise<void>((resolve) => socket.on("close", () => resolve()));
    expect(statuses(text)).toEqual([200, 200]);
    expect(door.appConnections()).toBe(2);
  });

  it("answers each of pipelined requests in order, then 400 for a malformed one in the same write", async () => {
    const door = await frontDoor();
    const text = await exchange(door.port, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n");
    expect(statuses(text)).toEqual([200, 200, 400]);
    expect(text.indexOf("answer to /a")).toBeLessThan(text.indexOf("answer to /b"));
  });
});

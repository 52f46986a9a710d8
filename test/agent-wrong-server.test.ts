import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "./harness/apps.js";
import { startAgent, startServer, type ServerHandle } from "./harness/warren.js";

/** An agent pointed at the wrong port, or at something that is not Warren, says so in its one log line. */
describe("agent pointed at the wrong address", () => {
  let server: ServerHandle;
  let other: App;

  beforeAll(async () => {
    server = await startServer();
    other = await startApp((_req, res) => res.end("some other web server"));
  });

  afterAll(async () => {
    await server?.stop();
    await other?.close();
  });

  const expected = (origin: string) =>
    `${origin} does not answer as a Warren server (no HTTP/2): is WARREN_SERVER the server's public URL (or its agent listener), not another server or port?`;

  it("the server's HTTP port is an agent address too: a bad token there is refused as a bad token", async () => {
    const agent = await startAgent({ agentUrl: `http://127.0.0.1:${server.httpPort}` }, "wat_0123456789abcdef0123456789abcdef", { waitReady: false });
    try {
      const exit = await agent.proc.exited;
      expect(exit.code).not.toBe(0);
      expect(agent.proc.output()).toContain("agent token is invalid, expired or revoked");
    } finally {
      await agent.stop();
    }
  });

  for (const [what, url] of [
    ["the metrics port", () => `http://127.0.0.1:${server.observabilityPort}`],
    ["an HTTP/1 server that is not Warren", () => `http://127.0.0.1:${other.port}`],
  ] as const) {
    it(`names the mistake instead of "control stream closed": ${what}`, async () => {
      const agent = await startAgent({ agentUrl: url() }, "wat_0123456789abcdef0123456789abcdef", { waitReady: false });
      try {
        const line = await agent.proc.waitFor((l) => l.msg === "disconnected; reconnecting", 15_000, "a failed connection");
        expect(line["reason"]).toBe(expected(url()));
      } finally {
        await agent.stop();
      }
    });
  }
});

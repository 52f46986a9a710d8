import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { readFirstBytes, type FirstBytes } from "./h2c-preface.js";

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/** A connected pair: what the client writes, in the pieces given, and the server's verdict and unread bytes. */
async function classify(pieces: string[], timeoutMs = 2000): Promise<{ verdict: FirstBytes; unread: string }> {
  const server = net.createServer();
  servers.push(server);
  const accepted = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  clients.push(client);
  const socket = await accepted;
  const verdict = readFirstBytes(socket, timeoutMs);
  for (const piece of pieces) {
    client.write(piece);
    await new Promise((r) => setTimeout(r, 20));
  }
  const result = await verdict;
  const unread = result === "gone" ? "" : String(socket.read() ?? "");
  socket.destroy();
  return { verdict: result, unread };
}

const servers: net.Server[] = [];
const clients: net.Socket[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
  for (const s of servers.splice(0)) s.close();
});

describe("readFirstBytes", () => {
  it("tells the HTTP/2 preface from HTTP/1.1, and puts back every byte it read", async () => {
    expect(await classify([`${PREFACE}rest`])).toEqual({ verdict: "h2c", unread: `${PREFACE}rest` });
    expect(await classify(["GET / HTTP/1.1\r\nHost: x\r\n\r\n"])).toEqual({ verdict: "http1", unread: "GET / HTTP/1.1\r\nHost: x\r\n\r\n" });
  });

  it("waits for more when the first bytes are only the start of the preface", async () => {
    expect(await classify(["PR", "I * HTTP/2.0\r\n", "\r\nSM\r\n\r\n"])).toEqual({ verdict: "h2c", unread: PREFACE });
    // "PRI" then something else: HTTP/1.x after all (the parser answers it).
    expect(await classify(["PRI", " /x HTTP/1.1\r\n\r\n"])).toEqual({ verdict: "http1", unread: "PRI /x HTTP/1.1\r\n\r\n" });
  });

  it("gives up on a client that says nothing in time", async () => {
    expect((await classify([], 100)).verdict).toBe("gone");
  });
});

import { describe, expect, it } from "vitest";
import { HttpMessageParser, type MessageHead } from "./http-message-parser.js";

function collect(kind: "request" | "response", skip: (h: MessageHead) => boolean = () => false) {
  const events: Array<{ head?: MessageHead; body?: string; complete?: true }> = [];
  const parser = new HttpMessageParser(kind, {
    onHead: (head) => {
      events.push({ head });
      return skip(head);
    },
    onBody: (chunk) => events.push({ body: chunk.toString() }),
    onComplete: () => events.push({ complete: true }),
  });
  return { parser, events };
}

describe("HttpMessageParser (node's llhttp)", () => {
  it("splits pipelined requests with length and chunked bodies, byte by byte too", () => {
    const wire = Buffer.from(
      "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
        "PUT /b?q=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" +
        "GET /c HTTP/1.1\r\nHost: x\r\nX-Many: 1\r\n\r\n",
    );
    for (const step of [wire.length, 1]) {
      const { parser, events } = collect("request");
      for (let i = 0; i < wire.length; i += step) parser.execute(wire.subarray(i, i + step));
      const heads = events.filter((e) => e.head).map((e) => `${e.head!.method} ${e.head!.url}`);
      expect(heads).toEqual(["POST /a", "PUT /b?q=1", "GET /c"]);
      expect(events.filter((e) => e.complete)).toHaveLength(3);
      const bodies = events.map((e) => e.body ?? (e.complete ? "|" : "")).join("");
      expect(bodies).toBe("hello|abcde||");
      expect(events[0]!.head!.rawHeaders).toEqual(["Host", "x", "Content-Length", "5"]);
    }
  });

  it("refuses ambiguous framing (Content-Length with Transfer-Encoding) and garbage", () => {
    const smuggle = collect("request");
    expect(() => smuggle.parser.execute(Buffer.from("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))).toThrowError(/malformed HTTP message/);
    expect(() => collect("request").parser.execute(Buffer.from("\u0000\u0001 nonsense\r\n\r\n"))).toThrowError(/malformed/);
  });

  it("frames responses: no body after HEAD, informational 1xx, close-delimited bodies", () => {
    const head = collect("response", () => true);
    head.parser.execute(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"));
    expect(head.events.filter((e) => e.complete)).toHaveLength(2);
    const info = collect("response");
    info.parser.execute(Buffer.from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    expect(info.events.filter((e) => e.head).map((e) => e.head!.statusCode)).toEqual([100, 200]);
    const close = collect("response");
    close.parser.execute(Buffer.from("HTTP/1.1 200 OK\r\n\r\nstreamed until the end"));
    expect(close.events.some((e) => e.complete)).toBe(false);
    close.parser.finish();
    expect(close.events.at(-1)).toEqual({ complete: true });
  });
});

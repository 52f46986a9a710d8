import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HttpMessageParser, type MessageHead } from "../../server/proxy/http-message-parser.js";
import { chunkFrame, hasRequestBody, headersOf, LAST_CHUNK, responseHeadForClient, serializeRequestHead } from "../../server/proxy/wire.js";
import { fuzzParameters, fuzzTimeoutMs } from "./fuzz-settings.js";

/**
 * The proxy's wire functions against node's own parser (llhttp): what Warren writes to an app
 * reads back as what it meant, and what it rewrites for a client still frames as the app's did.
 */

const token = fc.stringMatching(/^[A-Za-z0-9-]{1,16}$/);
const value = fc.stringMatching(/^[!-~]([ -~]{0,30}[!-~])?$/);
const headers = fc.array(fc.tuple(token.map((t) => `X-${t}`), value), { maxLength: 8 });

function parseAll(kind: "request" | "response", bytes: Buffer, cuts: number[], skipBody = false): { heads: MessageHead[]; body: Buffer; complete: number } {
  const heads: MessageHead[] = [];
  const body: Buffer[] = [];
  let complete = 0;
  const parser = new HttpMessageParser(kind, {
    onHead: (head) => {
      heads.push(head);
      return skipBody;
    },
    onBody: (chunk) => body.push(chunk),
    onComplete: () => complete++,
  });
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length)].sort((a, b) => a - b)) {
    parser.execute(bytes.subarray(at, cut));
    at = cut;
  }
  parser.execute(bytes.subarray(at));
  parser.close();
  return { heads, body: Buffer.concat(body), complete };
}

describe("the proxy's wire, read back by llhttp", () => {
  it("a request head Warren writes reads back as its method, target and headers, in order", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"),
        fc.stringMatching(/^\/[A-Za-z0-9._~%/?=&-]{0,40}$/),
        headers,
        fc.array(fc.nat(400), { maxLength: 4 }),
        (method, target, pairs, cuts) => {
          const flat = pairs.flat();
          const { heads, complete } = parseAll("request", serializeRequestHead(method, target, ["Host", "x", ...flat]), cuts);
          expect(heads).toHaveLength(1);
          expect(heads[0]!.method).toBe(method);
          expect(heads[0]!.url).toBe(target);
          expect(heads[0]!.rawHeaders).toEqual(["Host", "x", ...flat]);
          expect(complete).toBe(1);
        },
      ),
      fuzzParameters(200),
    );
  }, fuzzTimeoutMs(30_000));

  it("a body Warren frames chunked reads back byte for byte, however it is cut", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), fc.array(fc.nat(3000), { maxLength: 6 }), (pieces, cuts) => {
        const head = serializeRequestHead("POST", "/up", ["Host", "x", "Transfer-Encoding", "chunked"]);
        const framed = Buffer.concat([head, ...pieces.flatMap((p) => chunkFrame(Buffer.from(p))), LAST_CHUNK]);
        const { body, complete } = parseAll("request", framed, cuts);
        expect(body).toEqual(Buffer.concat(pieces.map((p) => Buffer.from(p))));
        expect(complete).toBe(1);
        expect(hasRequestBody(headersOf(["Transfer-Encoding", "chunked"]))).toBe(true);
      }),
      fuzzParameters(200),
    );
  }, fuzzTimeoutMs(30_000));

  it("a response head rewritten for a client (cookies kept to the host, Connection: close) frames as the app's did", () => {
    fc.assert(
      fc.property(
        headers,
        fc.array(fc.tuple(fc.constantFrom("a", "sid", "pref"), fc.constantFrom("", "; Domain=example.com", "; domain=.x; Path=/")), { maxLength: 3 }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 200 }),
        (pairs, cookies, close, bodyBytes) => {
          let text = `HTTP/1.1 200 OK\r\nContent-Length: ${bodyBytes.length}\r\n`;
          for (const [name, v] of pairs) text += `${name}: ${v}\r\n`;
          for (const [name, attrs] of cookies) text += `Set-Cookie: ${name}=1${attrs}\r\n`;
          text += "Connection: keep-alive\r\n\r\n";
          const rewritten = responseHeadForClient(Buffer.from(text, "latin1"), close);
          const { heads, body, complete } = parseAll("response", Buffer.concat([rewritten, Buffer.from(bodyBytes)]), []);
          expect(heads).toHaveLength(1);
          expect(heads[0]!.shouldKeepAlive).toBe(!close);
          expect(body).toEqual(Buffer.from(bodyBytes));
          expect(complete).toBe(1);
          const parsed = headersOf(heads[0]!.rawHeaders);
          for (const cookie of ([] as string[]).concat(parsed["set-cookie"] ?? [])) expect(cookie).not.toMatch(/domain/i);
          for (const [name, v] of pairs) {
            expect(heads[0]!.rawHeaders).toContain(name);
            expect(heads[0]!.rawHeaders).toContain(v);
          }
        },
      ),
      fuzzParameters(200),
    );
  }, fuzzTimeoutMs(30_000));
});

import { describe, expect, it } from "vitest";
import type { Principal } from "../domain/principal.js";
import { apiSessionReader } from "./api-session.js";

const alice: Principal = { kind: "user", user: "alice", tokenId: "0123456789abcdef" };
const reader = apiSessionReader({ publicBase: () => "http://warren.localhost:8080", sessionOf: async () => alice });
const headers = (h: Record<string, string>) => new Headers(h);

describe("API calls with the session cookie", () => {
  it("accept the dashboard's own calls", async () => {
    await expect(reader(headers({ cookie: "warren_session=v", "x-warren-csrf": "1", origin: "http://warren.localhost:8080", "sec-fetch-site": "same-origin" }))).resolves.toBe(alice);
  });

  it("leave calls without a session cookie to the bearer token", async () => {
    await expect(reader(headers({ cookie: "app=1" }))).resolves.toBeUndefined();
    await expect(reader(headers({}))).resolves.toBeUndefined();
  });

  it("refuse a cookie without the CSRF header, or from another origin or site", async () => {
    await expect(reader(headers({ cookie: "warren_session=v" }))).rejects.toThrow(/x-warren-csrf: 1/);
    await expect(reader(headers({ cookie: "warren_session=v", "x-warren-csrf": "1", origin: "http://evil.example.com" }))).rejects.toThrow(/Origin http:\/\/evil/);
    await expect(reader(headers({ cookie: "__Host-warren_session=v", "x-warren-csrf": "1", "sec-fetch-site": "same-site" }))).rejects.toThrow(/Sec-Fetch-Site same-site/);
  });

  it("say so when the session has ended", async () => {
    const ended = apiSessionReader({ publicBase: () => "http://warren.localhost:8080", sessionOf: async () => undefined });
    await expect(ended(headers({ cookie: "warren_session=v", "x-warren-csrf": "1" }))).rejects.toThrow(/sign in again/);
  });
});
